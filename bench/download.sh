#!/usr/bin/env bash
# Benchmark: one p2pd downloads a file held by N seeders (default 4) on
# 127.0.0.1, driven by `p2pctl download_file`. Prints wall time, MB/s, the
# downloader's peak RSS (VmHWM) and CPU seconds, the seeders' CPU seconds, and
# two baselines measured in the same run: `sha1sum` of the file and a plain
# single-stream TCP copy of it over loopback (socat, else python3).
# usage: bench/download.sh [SIZE_MIB] [SEEDERS]   (defaults 1024, 4)
# Every process started here is stopped by PID; every wait is bounded.
set -euo pipefail
size_mib=${1:-1024}
seeders=${2:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --release --bins --manifest-path "$root/Cargo.toml"
bin=$root/target/release
t=$(mktemp -d /tmp/p2pdl.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
            for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$t"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

file=$t/data.bin
echo "making a ${size_mib} MiB random file; $seeders seeders ..."
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$file"
sha=$(sha1sum "$file" | cut -d' ' -f1)

# Baseline 1: sha1sum (page cache warm after the line above).
t0=$(now); sha1sum "$file" >/dev/null; t1=$(now); sha_s=$(echo "$t1 - $t0" | bc -l)

# Baseline 2: one TCP stream over loopback, into a file on the same disk.
port=$(free_port)
if command -v socat >/dev/null; then
  socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "CREATE:$t/tcp.out" & lp=$!
  for _ in $(seq 1 50); do [ -n "$(ss -Htln "sport = :$port")" ] && break; sleep 0.1; done
  t0=$(now); socat -u "FILE:$file" "TCP:127.0.0.1:$port"; wait $lp; t1=$(now)
  tcp_tool=socat
else
  python3 - "$file" "$t/tcp.out" "$port" > "$t/tcp.time" <<'PY'
import socket, sys, threading, time, shutil
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(1)
def recv():
    c, _ = srv.accept()
    with open(dst, "wb") as f:
        while True:
            b = c.recv(1 << 20)
            if not b: break
            f.write(b)
th = threading.Thread(target=recv); th.start()
t0 = time.time(); s = socket.create_connection(("127.0.0.1", port))
with open(src, "rb") as f: s.sendfile(f)
s.close(); th.join(); print(time.time() - t0)
PY
  t0=0; t1=$(cat "$t/tcp.time"); tcp_tool=python3
fi
tcp_s=$(echo "$t1 - $t0" | bc -l)
rm -f "$t/tcp.out"

# The swarm: a tracker, N seeders holding the file, one downloader.
tport=$(free_port)
echo "127.0.0.1:$tport" > "$t/tracker_info.txt"
"$bin/tracker" "$t/tracker_info.txt" 1 --data-dir "$t/tr" </dev/null 2>"$t/tracker.log" & pids+=($!)
start_daemon() { "$bin/p2pd" --home "$t/$1" --listen 127.0.0.1:0 --tracker-info "$t/tracker_info.txt" 2>"$t/$1.log" & pids+=($!); }
ctl() { local h=$1; shift; "$bin/p2pctl" --home "$t/$h" "$@" >/dev/null; }
wait_sock() { for _ in $(seq 1 100); do [ -S "$t/$1/p2pd.sock" ] && return; sleep 0.1; done; echo "no socket for $1"; exit 1; }
for i in $(seq 1 "$seeders"); do start_daemon "s$i"; done
start_daemon dl; dpid=$!
for i in $(seq 1 "$seeders"); do wait_sock "s$i"; done; wait_sock dl
ctl s1 create_user s1 pw; ctl s1 login s1 pw; ctl s1 create_group g
for i in $(seq 2 "$seeders") dl; do
  u=$([ "$i" = dl ] && echo dl || echo "s$i")
  ctl "$u" create_user "$u" pw; ctl "$u" login "$u" pw; ctl "$u" join_group g; ctl s1 accept_request g "$u"
done
echo "seeders hashing the file ..."
ups=(); for i in $(seq 1 "$seeders"); do ctl "s$i" upload_file "$file" g & ups+=($!); done
for p in "${ups[@]}"; do wait "$p"; done
seeder_pids=("${pids[@]:1:$seeders}")
seed_cpu0=0; for p in "${seeder_pids[@]}"; do seed_cpu0=$((seed_cpu0 + $(cpu_ticks "$p"))); done
dl_cpu0=$(cpu_ticks "$dpid")
mkdir "$t/out"
t0=$(now); "$bin/p2pctl" --home "$t/dl" download_file g data.bin "$t/out" >/dev/null; t1=$(now)
dl_s=$(echo "$t1 - $t0" | bc -l)
dl_cpu1=$(cpu_ticks "$dpid")
seed_cpu1=0; for p in "${seeder_pids[@]}"; do seed_cpu1=$((seed_cpu1 + $(cpu_ticks "$p"))); done
rss=$(awk '/VmHWM/ {print $2}' "/proc/$dpid/status")
got=$(sha1sum "$t/out/data.bin" | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "FAIL: downloaded SHA-1 $got != $sha"; exit 1; }
peers=$("$bin/p2pctl" --home "$t/dl" --json show_downloads | python3 -c 'import json,sys; d=json.load(sys.stdin); print(", ".join("%s=%.0fMiB" % (p["user"], p["bytes"]/2**20) for p in d[0]["peers"]))')
hz=$(getconf CLK_TCK)
python3 - <<PY
mib = $size_mib; hz = $hz
sha, tcp, dl = $sha_s, $tcp_s, $dl_s
mb = mib * 1048576 / 1e6
print(f"file: {mib} MiB, {$seeders} seeders, loopback, page cache warm; cores: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)")
print(f"{'sha1sum':<26}{sha:8.3f} s {mb/sha:8.1f} MB/s")
print(f"{'TCP copy ($tcp_tool, 1 stream)':<26}{tcp:8.3f} s {mb/tcp:8.1f} MB/s")
print(f"{'p2pshare download':<26}{dl:8.3f} s {mb/dl:8.1f} MB/s")
print(f"downloader: peak RSS {$rss/1024:.1f} MiB, CPU {($dl_cpu1-$dl_cpu0)/hz:.2f} s; seeders together: CPU {($seed_cpu1-$seed_cpu0)/hz:.2f} s")
print(f"verified bytes per peer: $peers")
print(f"ratios: download/TCP-copy time {dl/tcp:.2f} (throughput {tcp/dl:.2f}), download/sha1sum time {dl/sha:.2f}")
PY
# With RUST_LOG=p2pd=debug: how much of the whole-file hash was left at the end.
grep -h "whole-file hash" "$t/dl.log" 2>/dev/null | sed 's/^.*whole-file hash/whole-file hash/' || true
