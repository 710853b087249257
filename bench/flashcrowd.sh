#!/usr/bin/env bash
# Flash crowd: one seeder, N downloaders started together, every peer's upload
# capped; how close the crowd finishes to the fluid bound, for p2pshare and
# rqbit in the same run, on 127.0.0.1.
#
# A fresh random file of F MiB (made once, reused), one seeder holding it and
# N downloaders that all start fetching it at t0. Every participant (the
# seeder and each downloader) uploads at most R bytes/s; downloads are not
# capped. With upload as the only bottleneck, the fluid bound (Kumar & Ross,
# "Peer-assisted file distribution: the minimum distribution time", 2006) on
# the time until all N hold the file is
#     T* = max(F/R, N*F / ((N+1)*R))
# (the seeder has to send every byte once; the crowd has N*F bytes to receive
# and N+1 uploaders of R each to send them). N/(N+1) < 1, so T* = F/R: an ideal
# swarm finishes everyone in the time the seeder needs to send one copy, the
# seeder uploads exactly 1 copy and the downloaders N-1 copies between them.
# Per (tool, N, run) it prints and records:
#   T_s        t0 to the last downloader's completion (each polled every 0.1 s)
#   Tstar_s    the bound T*;  T/T*  1.0 is ideal
#   seed_cp    bytes the seeder uploaded during the run / F (1.0 is ideal)
#   dl_cp      bytes all downloaders uploaded during the run / F (N-1 is ideal)
#   seed_util  seeder bytes / (T*R): the share of its cap the seeder used over
#              T (above 1.00 means the cap was exceeded)
#   first_s    t0 to the first completion;  spread_s  t0 to the last start
# Contenders:
#   p2pshare  one tracker, N+1 p2pd with --max-upload-rate R, users u0..uN in
#             one group (u0 owns it and accepts the others); u0 shares the
#             file; `p2pctl download_file --detach` for u1..uN in a tight loop;
#             completion from `p2pctl --json show_downloads`, uploaded bytes
#             from `p2pctl --json status` (`uploaded`, after - before).
#   rqbit     bench/bt_tracker.py (announce interval 5 s), a torrent with
#             512 KiB pieces (mktorrent -l 19), N+1 `rqbit server` with
#             --ratelimit-upload R (bytes/s); the seeder gets the torrent over
#             the file (checked, then seeded), the leechers get it over their
#             HTTP APIs (curl POST, tight loop) and keep running, so they seed
#             to each other after they finish; completion (`finished`) and
#             uploaded bytes (`live.snapshot.uploaded_bytes`) from each
#             server's /torrents/ID/stats/v1.
# Every downloaded copy's SHA-1 is checked against the original. Daemons,
# servers and trackers are fresh for every (tool, N, run).
#
# usage: bench/flashcrowd.sh [--n 4,12,24] [--size MIB] [--rate 16M] [--runs K]
#          [--only p2pshare,rqbit] [--bindir DIR] [--before DIR] [--timeout-factor X]
#          [--csv FILE] [--png FILE] [--logs DIR]
#   --rate      bytes/s with optional K, M, G (powers of 1024), default 16M
#   --size      F in MiB, default 256;  --runs  runs per N, default 1
#   --bindir    where tracker, p2pd, p2pctl are [default: target/release of
#               this repo; build them with cargo build --release --bins]
#   --before DIR  also run p2pshare from DIR (an older build's tracker, p2pd,
#               p2pctl) as the contender "before", interleaved with the others
#   --timeout-factor X   a run fails after X*T* seconds of polling (default 20)
#   --csv FILE  the rows as CSV;  --png FILE  a gnuplot chart: T/T* and
#               seeder copies against N, one line per tool
#   --logs DIR  keep every daemon's and tracker's log there, per (tool, N, run)
#               (with RUST_LOG=p2pd=debug in the environment: who fetched
#               what from whom)
# Needs: python3, bc, curl, ss (iproute2); for rqbit: rqbit (cargo install
# rqbit), mktorrent; gnuplot (gnuplot-nox) for --png. Disk: about (N+2)*F.
# Every process started here is stopped by PID on exit; every wait is bounded;
# the temp dir is removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

n_arg="4,12,24" size_mib=256 rate=16M runs=1 only="" bindir="" csv="" png="" tfactor=20 logs="" before=""
all="p2pshare,rqbit"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --n) n_arg=${2:?}; shift 2 ;;
    --size) size_mib=${2:?}; shift 2 ;;
    --rate) rate=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --bindir) bindir=${2:?}; shift 2 ;;
    --before) before=${2:?}; shift 2 ;;
    --timeout-factor) tfactor=${2:?}; shift 2 ;;
    --csv) csv=${2:?}; shift 2 ;;
    --png) png=${2:?}; shift 2 ;;
    --logs) logs=${2:?}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
isint() { [[ $1 =~ ^[0-9]+$ ]]; }
[ -z "$logs" ] || { mkdir -p "$logs" && logs=$(cd "$logs" && pwd); } || die "--logs: cannot make $logs"
# keep_logs DIR NAME: the run's logs into --logs DIR/NAME, if asked
keep_logs() { [ -z "$logs" ] || { mkdir -p "$logs/$2" && find "$1" -maxdepth 1 -name '*.log' -exec cp {} "$logs/$2/" \; ; }; }
# a failed run's logs are kept too: the dir and name of the run going on
run_dir="" run_name=""
die() { [ -z "$run_dir" ] || keep_logs "$run_dir" "$run_name"; echo "error: $*" >&2; exit 1; }
{ isint "$size_mib" && [ "$size_mib" -ge 1 ]; } || die "--size takes a number of MiB >= 1"
{ isint "$runs" && [ "$runs" -ge 1 ]; } || die "--runs takes a number >= 1"
[[ $n_arg =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--n takes a list like 4,12,24"
read -r -a ns <<< "$(tr , '\n' <<< "$n_arg" | sort -nu | tr '\n' ' ')"
[ "${ns[0]}" -ge 1 ] || die "--n: counts must be >= 1"
{ [[ $tfactor =~ ^[0-9]+(\.[0-9]+)?$ ]] && [ "$(echo "$tfactor > 0" | bc)" = 1 ]; } || die "--timeout-factor takes a number > 0"
# R in bytes/s: digits with an optional K, M or G (powers of 1024, as p2pd reads it)
[[ $rate =~ ^([0-9]+)([KMG]?)$ ]] || die "--rate takes bytes/s with an optional K, M or G suffix, like 16M"
case ${BASH_REMATCH[2]} in
  K) rate_bps=$((BASH_REMATCH[1] * 1024)) ;;
  M) rate_bps=$((BASH_REMATCH[1] * 1048576)) ;;
  G) rate_bps=$((BASH_REMATCH[1] * 1073741824)) ;;
  *) rate_bps=${BASH_REMATCH[1]} ;;
esac
[ "$rate_bps" -ge 1024 ] || die "--rate: at least 1K"
want=${only:-$all}
for c in ${want//,/ }; do [[ ,$all, == *,$c,* ]] || die "--only: unknown tool '$c' (known: $all)"; done
[ -z "$before" ] || want="$want,before"
on() { [[ ,$want, == *,$1,* ]]; }

# --- tools -------------------------------------------------------------------
need python3 "apt-get install python3"
need bc "apt-get install bc"
need ss "apt-get install iproute2"
need sha1sum "apt-get install coreutils"
if on p2pshare; then
  p2p_bin=${bindir:-$root/target/release}
  for b in tracker p2pd p2pctl; do
    [ -x "$p2p_bin/$b" ] || die "$p2p_bin/$b not found; build with: cargo build --release --bins (or give --bindir DIR)"
  done
  p2p_bin=$(cd "$p2p_bin" && pwd); new_bin=$p2p_bin
fi
if on before; then
  for b in tracker p2pd p2pctl; do [ -x "$before/$b" ] || die "--before: $before/$b not found"; done
  before_bin=$(cd "$before" && pwd)
fi
if on rqbit; then
  [ -x "$HOME/.cargo/bin/rqbit" ] && PATH=$PATH:$HOME/.cargo/bin
  need rqbit "cargo install rqbit"
  need mktorrent "apt-get install mktorrent"
  need curl "apt-get install curl"
fi
[ -z "$png" ] || need gnuplot "apt-get install gnuplot-nox"

size=$((size_mib * 1048576))
# T* = max(F/R, N*F/((N+1)*R)), seconds
tstar() { echo "a = $size / $rate_bps; b = $1 * $size / (($1 + 1) * $rate_bps); if (a > b) a else b" | bc -l; }
print_machine
echo "file: $size_mib MiB; upload cap R: $rate ($rate_bps B/s) on every peer; N: ${ns[*]}; runs: $runs;" \
     "tools: $want; T* = $(printf '%.1f' "$(tstar "${ns[0]}")") s; timeout: ${tfactor} x T*"
[ -z "${p2p_bin:-}" ] || echo "p2pshare binaries: $p2p_bin ($("$p2p_bin/p2pd" --version 2>/dev/null || echo '?'))"
[ -z "$before" ] || echo "before binaries: $before_bin"
! on rqbit || echo "rqbit: $(command -v rqbit) ($(rqbit --version 2>/dev/null || echo '?'))"

# --- disk, temp dir, the file ------------------------------------------------
base=${TMPDIR:-/tmp}
avail_mib=$(( $(df -Pk "$base" | awk 'NR==2 {print $4}') / 1024 ))
need_mib=$(( size_mib * (${ns[-1]} + 2) + 512 ))
[ "$avail_mib" -ge "$need_mib" ] || die "need $need_mib MiB free in $base (the file and N copies), have $avail_mib MiB"
trap cleanup EXIT INT TERM
t=$(mktemp -d "$base/p2pfc.XXXXXX")   # short: p2pd control sockets live in it
file=$t/data.bin
echo "making the ${size_mib} MiB random file ..."
head -c "$size" /dev/urandom > "$file"
sha=$(sha1sum "$file" | cut -d' ' -f1)   # also warms the page cache
if [ -n "$csv" ]; then
  echo "tool,n,run,size_mib,rate_bps,t_s,tstar_s,ratio,seeder_copies,dl_copies,first_s,spread_s,seed_util" > "$csv"
fi

row() { printf '%-9s %4s %4s %7s %6s %8s %8s %6s %8s %7s %8s %9s %10s\n' "$@"; }
echo; row tool N run F_MiB R T_s Tstar_s T/T* seed_cp dl_cp first_s spread_s seed_util
rows=()   # for the chart: "tool n ratio seeder_copies"
# record TOOL N RUN T FIRST SPREAD SEEDER_BYTES DL_BYTES (bytes empty: not measured)
record() {
  local tool=$1 n=$2 r=$3 tt=$4 first=$5 spread=$6 sb=$7 db=$8 ts ratio scp dcp util
  ts=$(tstar "$n")
  ratio=$(printf '%.2f' "$(echo "$tt / $ts" | bc -l)")
  scp=n/a; [ -z "$sb" ] || scp=$(printf '%.2f' "$(echo "$sb / $size" | bc -l)")
  util=n/a; [ -z "$sb" ] || util=$(printf '%.2f' "$(echo "$sb / ($tt * $rate_bps)" | bc -l)")
  dcp=n/a; [ -z "$db" ] || dcp=$(printf '%.2f' "$(echo "$db / $size" | bc -l)")
  tt=$(printf '%.2f' "$tt"); ts=$(printf '%.2f' "$ts")
  first=$(printf '%.2f' "$first"); spread=$(printf '%.2f' "$spread")
  row "$tool" "$n" "$r" "$size_mib" "$rate" "$tt" "$ts" "$ratio" "$scp" "$dcp" "$first" "$spread" "$util"
  [ -z "$csv" ] || echo "$tool,$n,$r,$size_mib,$rate_bps,$tt,$ts,$ratio,${scp/n\/a/},${dcp/n\/a/},$first,$spread,${util/n\/a/}" >> "$csv"
  rows+=("$tool $n $ratio ${scp/n\/a/NaN}")
}
verify() {  # verify FILE WHAT: the downloaded file must be the original
  local got; got=$(sha1sum "$1" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || die "$2: downloaded SHA-1 $got != $sha"
}
# The polling loop's bounds: at most timeout/0.1 rounds, and timeout seconds.
timeout_s() { printf '%.0f' "$(echo "$tfactor * $(tstar "$1") + 1" | bc -l)"; }
# wait_all N WHAT DONE: polls `DONE i` for each downloader i in 1..N not done
# yet, every 0.1 s for at most timeout_s N seconds, until each has returned 0
# once (DONE dies on a failed download); sets first and last, the times of
# the first and the last completion.
wait_all() {
  local n=$1 what=$2 done_fn=$3 tmo start left=$1 i at=()
  tmo=$(timeout_s "$n"); start=$SECONDS; first="" last=""
  for _ in $(seq 1 $((tmo * 10))); do
    for i in $(seq 1 "$n"); do
      [ -z "${at[i]:-}" ] || continue
      "$done_fn" "$i" || continue
      at[i]=$(now); left=$((left - 1)); [ -n "$first" ] || first=${at[i]}; last=${at[i]}
    done
    [ "$left" = 0 ] && break
    [ $((SECONDS - start)) -le "$tmo" ] || break
    sleep 0.1
  done
  [ "$left" = 0 ] || die "$what: $left of $n not finished after $tmo s"
}

# --- p2pshare ------------------------------------------------------------------
# p2p_uploaded DIR USER: piece bytes USER's daemon has served since it started
p2p_uploaded() {
  local o; o=$(p2pctl_ "$1" "$2" --json status) || die "p2pctl status failed for $2"
  [[ $o =~ \"uploaded\":([0-9]+) ]] || die "no 'uploaded' in $2's status: $o"
  echo "${BASH_REMATCH[1]}"
}
# p2p_done I: whether u$I's download is complete (dies if it failed); runs
# inside p2p_crowd (its $d and $tool)
p2p_done() {
  local o
  o=$(p2pctl_ "$d" "u$1" --json show_downloads) || die "p2pctl show_downloads failed for u$1"
  [[ $o =~ \"state\":\"([a-z]+)\" ]] || die "u$1: no download state in: $o"
  case ${BASH_REMATCH[1]} in
    complete) return 0 ;;
    failed) die "$tool: u$1's download failed: $o" ;;
  esac
  return 1
}
p2p_crowd() {  # p2p_crowd TOOL BINDIR N RUN
  local tool=$1 n=$3 r=$4 d i trpid dpids=() t0 t1 tl first last o
  local s0 s1 b0=0 b1=0 x
  p2p_bin=$2   # lib.sh's helpers start what is there
  d=$t/$tool$n.$r
  run_dir=$d run_name=$tool-n$n-r$r
  p2p_tracker "$d"; trpid=$bgpid
  # every daemon capped at R (lib.sh's p2p_daemon takes no extra flags)
  for i in $(seq 0 "$n"); do
    bg "$d/u$i.log" "$p2p_bin/p2pd" --home "$d/u$i" --listen 127.0.0.1:0 --tracker-info "$d/ti.txt" --max-upload-rate "$rate"
    dpids+=("$bgpid")
  done
  for i in $(seq 0 "$n"); do wait_for 100 0.1 "the socket of p2pd u$i" test -S "$d/u$i/p2pd.sock"; done
  for i in $(seq 0 "$n"); do ctlq "$d" "u$i" create_user "u$i" pw; ctlq "$d" "u$i" login "u$i" pw; done
  ctlq "$d" u0 create_group g
  for i in $(seq 1 "$n"); do ctlq "$d" "u$i" join_group g; done
  o=$(p2pctl_ "$d" u0 --json list_requests g)
  [ "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$o")" = "$n" ] || die "$tool: u0 sees $o as join requests, not $n users"
  for i in $(seq 1 "$n"); do ctlq "$d" u0 accept_request g "u$i"; done
  echo "$tool N=$n run $r: u0 hashing and sharing the file ..." >&2
  ctlq "$d" u0 upload_file "$file" g
  for i in $(seq 1 "$n"); do
    wait_for 300 0.1 "u$i to see the file online" p2p_online "$d" "u$i" g data.bin 1
    mkdir -p "$d/o$i"
  done
  s0=$(p2p_uploaded "$d" u0)
  for i in $(seq 1 "$n"); do x=$(p2p_uploaded "$d" "u$i"); b0=$((b0 + x)); done
  sync

  t0=$(now)
  for i in $(seq 1 "$n"); do
    p2pctl_ "$d" "u$i" download_file --detach g data.bin "$d/o$i/" >/dev/null || die "$tool: u$i download_file --detach failed (see u$i.log)"
  done
  tl=$(now)
  wait_all "$n" "$tool N=$n: downloads" p2p_done
  t1=$last
  s1=$(p2p_uploaded "$d" u0)
  for i in $(seq 1 "$n"); do x=$(p2p_uploaded "$d" "u$i"); b1=$((b1 + x)); done
  for i in $(seq 1 "$n"); do verify "$d/o$i/data.bin" "$tool u$i"; done
  stop "${dpids[@]}" "$trpid"
  record "$tool" "$n" "$r" "$(fsub "$t1" "$t0")" "$(fsub "$first" "$t0")" "$(fsub "$tl" "$t0")" $((s1 - s0)) $((b1 - b0))
  keep_logs "$run_dir" "$run_name"; run_dir=""
  rm -rf "$d"
}

# --- rqbit ---------------------------------------------------------------------
rq_common=(-v warn --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd
  --listen-ip 127.0.0.1 --ratelimit-upload "$rate_bps")
bt_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "http://127.0.0.1:$btport/$1"; }
bt_seeds_ge() { local s; s=$(bt_get "seeds?info=${2:-}" | cut -d' ' -f1) && [ "$s" -ge "$1" ]; }
# info hash (hex) of a torrent made by mktorrent: `info` is its last key
infohash() { python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha1(d[d.rindex(b"4:infod")+6:-1]).hexdigest())' "$1"; }
rq_server() {  # rq_server DIR NAME: starts `rqbit server` capped at R; sets $bgpid and $api
  local port ap; port=$(free_port); ap=$(free_port); mkdir -p "$1/$2"
  # --announce-port: with --listen-ip set and no --announce-port, rqbit 9.1
  # announces no usable port (every peer lands on one tracker entry).
  bg "$1/$2.log" rqbit "${rq_common[@]}" --listen-port "$port" --announce-port "$port" \
    --http-api-listen-addr "127.0.0.1:$ap" \
    server start "$1/$2" --disable-persistence
  api=http://127.0.0.1:$ap
}
# rq_add API DIR: give the torrent to a server, output in DIR; prints the torrent id
rq_add() {
  local o
  o=$(curl -sS --max-time 30 -X POST --data-binary @"$tor" "$1/torrents?overwrite=true&is_url=false&output_folder=$2") || return 1
  [[ $o =~ \"id\":([0-9]+) ]] || { echo "rqbit: unexpected answer to the POST: $o" >&2; return 1; }
  echo "${BASH_REMATCH[1]}"
}
rq_stats() { curl -sS --max-time 5 "$1/torrents/$2/stats/v1"; }
# rq_uploaded API ID: bytes the torrent has uploaded (live stats)
rq_uploaded() {
  local o; o=$(rq_stats "$1" "$2") || die "rqbit: no stats from $1"
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); l=s.get("live") or {}; print((l.get("snapshot") or {}).get("uploaded_bytes", ""))' "$o"
}
# rq_done I: whether leecher l$I has finished (dies on its error); runs
# inside rq_crowd (its lapi and lid)
rq_done() {
  local o
  o=$(rq_stats "${lapi[$1]}" "${lid[$1]}") || die "rqbit: no stats from leecher l$1"
  [[ $o =~ \"error\":\"([^\"]*)\" ]] && die "rqbit leecher l$1: ${BASH_REMATCH[1]}"
  [[ $o =~ \"finished\":true ]]
}
rq_crowd() {  # rq_crowd N RUN
  local n=$1 r=$2 d i spid sapi sid lpids=() lapi=() lid=() t0 t1 tl first last
  local s0 s1 b0=0 b1=0 x
  d=$t/r$n.$r
  bt_get reset >/dev/null
  mkdir -p "$d/seed"; ln "$file" "$d/seed/data.bin"
  rq_server "$d" s; spid=$bgpid; sapi=$api
  for i in $(seq 1 "$n"); do rq_server "$d" "l$i"; lpids+=("$bgpid"); lapi[i]=$api; done
  wait_for 300 0.1 "rqbit seeder's API" port_listening "${sapi##*:}"
  for i in $(seq 1 "$n"); do wait_for 300 0.1 "rqbit leecher l$i's API" port_listening "${lapi[i]##*:}"; mkdir -p "$d/o$i"; done
  echo "rqbit N=$n run $r: the seeder checking the file ..." >&2
  sid=$(rq_add "$sapi" "$d/seed") || die "could not give the torrent to the rqbit seeder"
  wait_for 1200 0.1 "the rqbit seeder to announce as a seed" bt_seeds_ge 1 "$ih"
  s0=$(rq_uploaded "$sapi" "$sid"); s0=${s0:-0}
  sync

  t0=$(now)
  for i in $(seq 1 "$n"); do
    lid[i]=$(rq_add "${lapi[i]}" "$d/o$i") || die "could not give the torrent to rqbit leecher l$i"
  done
  tl=$(now)
  wait_all "$n" "rqbit N=$n: leechers" rq_done
  t1=$last
  s1=$(rq_uploaded "$sapi" "$sid")
  for i in $(seq 1 "$n"); do
    x=$(rq_uploaded "${lapi[i]}" "${lid[i]}")
    if [ -z "$x" ]; then b1=""; break; fi
    b1=$((b1 + x))
  done
  for i in $(seq 1 "$n"); do verify "$d/o$i/data.bin" "rqbit l$i"; done
  stop "${lpids[@]}" "$spid"
  record rqbit "$n" "$r" "$(fsub "$t1" "$t0")" "$(fsub "$first" "$t0")" "$(fsub "$tl" "$t0")" \
    "${s1:+$((s1 - s0))}" "${b1:+$((b1 - b0))}"
  rm -rf "$d"
}

if on rqbit; then
  bg "$t/bt-tracker.log" python3 "$here/bt_tracker.py" "$t/bt.port"
  wait_for 100 0.1 "the BitTorrent tracker" test -s "$t/bt.port"
  btport=$(cat "$t/bt.port")
  tor=$t/data.torrent
  mktorrent -l 19 -a "http://127.0.0.1:$btport/announce" -o "$tor" "$file" >/dev/null
  ih=$(infohash "$tor")
fi
for n in "${ns[@]}"; do
  for r in $(seq 1 "$runs"); do
    if on p2pshare; then p2p_crowd p2pshare "$new_bin" "$n" "$r"; fi
    if on before; then p2p_crowd before "$before_bin" "$n" "$r"; fi
    if on rqbit; then rq_crowd "$n" "$r"; fi
  done
done

# --- chart ---------------------------------------------------------------------
if [ -n "$png" ]; then
  for tool in ${want//,/ }; do
    for x in "${rows[@]}"; do [[ $x == "$tool "* ]] && echo "${x#* }"; done > "$t/$tool.dat"
    # the line: the mean over runs per N (every run is a point)
    awk '{ r[$1] += $2; c[$1] += $3; k[$1]++ } END { for (n in k) print n, r[n] / k[n], c[n] / k[n] }' \
      "$t/$tool.dat" | sort -n > "$t/$tool.mean"
  done
  # plot_column COL IDEAL: one gnuplot `plot` of column COL, a line and points per tool
  plot_column() {
    local col=$1 sep="" k=0 tool
    printf 'plot '
    for tool in ${want//,/ }; do
      k=$((k + 1))
      printf "%s'%s' using 1:%d with lines lw 2 lc %d title '%s', '%s' using 1:%d with points pt 7 lc %d notitle" \
        "$sep" "$t/$tool.mean" "$col" "$k" "$tool" "$t/$tool.dat" "$col" "$k"; sep=", "
    done
    echo ", 1 with lines dt 2 lc rgb 'gray' title '$2'"
  }
  {
    echo "set terminal pngcairo size 1200,480 font ',10'; set output '$png'"
    echo "set multiplot layout 1,2 title 'flash crowd: 1 seeder, N downloaders, F = $size_mib MiB, every upload capped at $rate/s'"
    echo "set xlabel 'N (downloaders)'; set grid; set key top left; set logscale y; set yrange [0.8:*]; set xrange [$((ns[0] - 1)):$((ns[-1] + 1))]"
    echo "set ylabel 'T / T*  (T* = F/R = $(printf '%.1f' "$(tstar 1)") s; 1 is ideal)'"
    plot_column 2 bound
    echo "set ylabel 'seeder uploaded copies (1 is ideal)'"
    plot_column 3 ideal
    echo "unset multiplot"
  } > "$t/chart.gp"
  gnuplot "$t/chart.gp" || die "gnuplot failed"
  echo "chart: $png"
fi
[ -z "$csv" ] || echo "CSV: $csv"
