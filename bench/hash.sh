#!/usr/bin/env bash
# Hashing speed: `p2pctl upload_file` (one streaming pass: whole-file SHA-1 +
# one SHA-1 per 512 KiB piece, then registering with the tracker) against
# `openssl dgst -sha1` and `sha1sum` of the same file, in the same run,
# --runs times each (default 3), page cache warm. Prints every run, min/median
# and the ratio upload_file throughput / openssl throughput.
# usage: bench/hash.sh [SIZE_MIB] [--runs N]   (default 1024 MiB, 3 runs)
# One tracker and one p2pd on 127.0.0.1; each run uploads a new hard link
# (fresh name, same bytes). Everything started is stopped by PID on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

size_mib=1024 runs=3
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) size_mib=$1; shift ;;
  esac
done
{ [[ $size_mib =~ ^[0-9]+$ ]] && [ "$size_mib" -ge 1 ]; } || die "SIZE_MIB is a number of MiB >= 1"
{ [[ $runs =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ]; } || die "--runs takes a number >= 1"
need python3 "apt-get install python3"
need bc "apt-get install bc"
need ss "apt-get install iproute2"
need openssl "apt-get install openssl"
need sha1sum "apt-get install coreutils"
need cargo "https://rustup.rs"

print_machine
base=${TMPDIR:-/tmp}
avail_mib=$(( $(df -Pk "$base" | awk 'NR==2 {print $4}') / 1024 ))
[ "$avail_mib" -ge $((size_mib + 256)) ] || die "need $((size_mib + 256)) MiB free in $base, have $avail_mib MiB"
trap cleanup EXIT INT TERM
t=$(mktemp -d "$base/p2phash.XXXXXX")
echo "building (cargo build --release --bins) ..."
cargo build --quiet --release --bins --manifest-path "$root/Cargo.toml"
p2p_bin=$root/target/release

mkdir "$t/f"; file=$t/f/data.bin
echo "making a ${size_mib} MiB random file ..."
head -c $((size_mib * 1048576)) /dev/urandom > "$file"
sha=$(sha1sum "$file" | cut -d' ' -f1)   # warms the page cache

d=$t/p; p2p_tracker "$d"; p2p_daemon "$d" a; dpid=$bgpid
ctlq "$d" a create_user bench pw; ctlq "$d" a login bench pw; ctlq "$d" a create_group g

res=$t/res.txt; : > "$res"
printf '%-20s %4s %8s %9s\n' tool run wall_s MiB/s
for r in $(seq 1 "$runs"); do
  ln "$file" "$t/f/data$r.bin"
  t0=$(now); out=$(openssl dgst -sha1 "$file"); t1=$(now)
  [[ $out == *"$sha"* ]] || die "openssl printed a wrong hash"
  echo "openssl $(fsub "$t1" "$t0")" >> "$res"
  t0=$(now); out=$(sha1sum "$file"); t1=$(now)
  [[ $out == "$sha"* ]] || die "sha1sum printed a wrong hash"
  echo "sha1sum $(fsub "$t1" "$t0")" >> "$res"
  t0=$(now); ctlq "$d" a upload_file "$t/f/data$r.bin" g; t1=$(now)
  echo "upload_file $(fsub "$t1" "$t0")" >> "$res"
  got=$(p2pctl_ "$d" a --json list_files g | python3 -c 'import json,sys; print([x["sha1"] for x in json.load(sys.stdin) if x["name"]==sys.argv[1]][0])' "data$r.bin")
  [ "$got" = "$sha" ] || die "upload_file registered SHA-1 $got != $sha"
  tail -n 3 "$res" | while read -r tool s; do
    printf '%-20s %4s %8.3f %9.1f\n' "$tool" "$r" "$s" "$(echo "$size_mib / $s" | bc -l)"
  done
done
rss=$(hwm "$dpid")

python3 - "$res" "$size_mib" "$rss" <<'PY'
import statistics, sys
res, mib, rss = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
by = {}
for line in open(res):
    tool, s = line.split()
    by.setdefault(tool, []).append(float(s))
print(f"\nsummary ({mib:.0f} MiB, page cache warm, {len(by['openssl'])} runs each)")
print(f"{'tool':<20} {'min_s':>8} {'median_s':>9} {'best_MiB/s':>11} {'med_MiB/s':>10}")
for tool in ("openssl", "sha1sum", "upload_file"):
    w = by[tool]
    print(f"{tool:<20} {min(w):8.3f} {statistics.median(w):9.3f} {mib/min(w):11.1f} {mib/statistics.median(w):10.1f}")
for other in ("openssl", "sha1sum"):
    print(f"upload_file throughput / {other} throughput: best {min(by[other]) / min(by['upload_file']):.2f}, "
          f"median {statistics.median(by[other]) / statistics.median(by['upload_file']):.2f}")
print(f"p2pd peak RSS (VmHWM) after the uploads: {rss / 1024:.1f} MiB")
PY
