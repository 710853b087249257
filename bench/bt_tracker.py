#!/usr/bin/env python3
"""A minimal BitTorrent HTTP tracker for bench/compare.sh, 127.0.0.1 only.

usage: bt_tracker.py PORT_FILE
  GET /announce  -> bencoded {interval, min interval, peers (compact, 6 bytes
                    per peer)}: every peer seen for that info_hash except the
                    one asking (matched by its announced port).
  GET /seeds[?info=HEX] -> number of peers whose last announce had left=0,
                    and the total, as "SEEDS PEERS" (for readiness checks), for
                    the torrent with that info hash (hex), else for all
  GET /forget?port=P -> forgets the peer listening on port P (a leecher gone)
  GET /reset     -> forgets everything (between benchmark set-ups)
The port it listens on is written to PORT_FILE. Stops on SIGTERM.
"""
import signal
import socket
import struct
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

torrents = {}  # info_hash -> {port: left}
INTERVAL = 5


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k.encode()) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


class Handler(BaseHTTPRequestHandler):
    def reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = {}
        for part in query.split("&"):
            k, _, v = part.partition("=")
            q[k] = urllib.parse.unquote_to_bytes(v)
        if path == "/reset":
            torrents.clear()
            return self.reply(b"ok\n")
        if path == "/forget":
            for t in torrents.values():
                t.pop(int(q.get("port", b"0") or 0), None)
            return self.reply(b"ok\n")
        if path == "/seeds":
            want = bytes.fromhex(q["info"].decode()) if "info" in q else None
            peers = [left for h, t in torrents.items() if want in (None, h) for left in t.values()]
            return self.reply(b"%d %d\n" % (sum(1 for x in peers if x == 0), len(peers)))
        if path != "/announce" or "info_hash" not in q or "port" not in q:
            return self.reply(bencode({"failure reason": b"bad request"}))
        port = int(q["port"])
        peers = torrents.setdefault(q["info_hash"], {})
        if q.get("event") == b"stopped":
            peers.pop(port, None)
        else:
            peers[port] = int(q.get("left", b"1") or 1)
        others = b"".join(socket.inet_aton("127.0.0.1") + struct.pack(">H", p) for p in peers if p != port)
        self.reply(bencode({"interval": INTERVAL, "min interval": INTERVAL, "peers": others}))

    def log_message(self, *args):
        pass


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write("%d\n" % srv.server_address[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    main()
