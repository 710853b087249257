#!/usr/bin/env bash
# Benchmark: `p2pctl upload_file` (one streaming pass: whole-file SHA-1 + 512 KiB
# piece SHA-1s) against `sha1sum` and `openssl dgst -sha1` of the same file, in
# the same run; plus the daemon's peak RSS (VmHWM) during the upload.
# usage: bench/upload.sh [SIZE_MIB]   (default 1024). Builds release binaries.
# Everything runs on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
size_mib=${1:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --quiet --release --bins --manifest-path "$root/Cargo.toml"
bin=$root/target/release
t=$(mktemp -d /tmp/p2pbench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
            for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$t"; }
trap cleanup EXIT

file=$t/data.bin
echo "making a ${size_mib} MiB random file ..."
head -c $((size_mib * 1024 * 1024)) /dev/urandom > "$file"
# Warm the page cache so every contender reads from memory.
cat "$file" > /dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "127.0.0.1:$port" > "$t/tracker_info.txt"
"$bin/tracker" "$t/tracker_info.txt" 1 --data-dir "$t/tr" </dev/null 2>"$t/tracker.log" & pids+=($!)
"$bin/p2pd" --home "$t/a" --listen 127.0.0.1:0 --tracker-info "$t/tracker_info.txt" 2>"$t/p2pd.log" & pids+=($!)
dpid=$!
for _ in $(seq 1 100); do [ -S "$t/a/p2pd.sock" ] && break; sleep 0.1; done
ctl() { "$bin/p2pctl" --home "$t/a" "$@" >/dev/null; }
ctl create_user bench pw; ctl login bench pw; ctl create_group g

now() { date +%s.%N; }
t0=$(now); sha1sum "$file" >/dev/null; t1=$(now)
openssl dgst -sha1 "$file" >/dev/null; t2=$(now)
rss_before=$(awk '/VmHWM/ {print $2}' /proc/$dpid/status)
ctl upload_file "$file" g; t3=$(now)
rss_peak=$(awk '/VmHWM/ {print $2}' /proc/$dpid/status)

python3 - "$size_mib" "$t0" "$t1" "$t2" "$t3" "$rss_before" "$rss_peak" <<'PY'
import sys
mib = float(sys.argv[1]); t0, t1, t2, t3 = map(float, sys.argv[2:6])
before, peak = int(sys.argv[6]), int(sys.argv[7])
sha, ossl, up = t1 - t0, t2 - t1, t3 - t2
print(f"file: {mib:.0f} MiB (page cache warm)")
print(f"{'sha1sum':<22}{sha:8.3f} s {mib/sha:9.1f} MiB/s")
print(f"{'openssl dgst -sha1':<22}{ossl:8.3f} s {mib/ossl:9.1f} MiB/s")
print(f"{'p2pctl upload_file':<22}{up:8.3f} s {mib/up:9.1f} MiB/s")
print(f"upload_file / sha1sum time ratio: {up/sha:.2f}  (throughput ratio {sha/up:.2f})")
print(f"upload_file / openssl time ratio: {up/ossl:.2f}  (throughput ratio {ossl/up:.2f})")
print(f"p2pd peak RSS (VmHWM): {peak/1024:.1f} MiB (before upload: {before/1024:.1f} MiB)")
PY
