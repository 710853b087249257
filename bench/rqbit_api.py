#!/usr/bin/env python3
"""Add a torrent to a running `rqbit server` through its HTTP API, for
bench/compare.sh's small-file runs with daemons that are already up.

usage: rqbit_api.py API_URL TORRENT OUT_DIR [--wait]
  POSTs TORRENT to API_URL/torrents (output_folder=OUT_DIR, overwrite=true:
  an existing file there is checked and seeded). With --wait, polls
  /torrents/ID/stats/v1 every millisecond until `finished`, up to 60 s, and
  prints the seconds from just before the POST to the first poll that saw it
  finished. Exit 1 on error or timeout.
"""
import json
import sys
import time
import urllib.parse
import urllib.request


def main():
    api, torrent, out = sys.argv[1:4]
    wait = "--wait" in sys.argv[4:]
    body = open(torrent, "rb").read()
    q = urllib.parse.urlencode({"overwrite": "true", "output_folder": out, "is_url": "false"})
    t0 = time.monotonic()
    req = urllib.request.Request(f"{api}/torrents?{q}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        tid = json.load(r)["id"]
    if not wait:
        return 0
    while time.monotonic() - t0 < 60:
        with urllib.request.urlopen(f"{api}/torrents/{tid}/stats/v1", timeout=30) as r:
            st = json.load(r)
        if st.get("error"):
            sys.exit(f"rqbit: {st['error']}")
        if st.get("finished"):
            print(f"{time.monotonic() - t0:.6f}")
            return 0
        time.sleep(0.001)
    sys.exit("rqbit: not finished after 60 s")


if __name__ == "__main__":
    sys.exit(main())
