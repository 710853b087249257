#!/usr/bin/env bash
# p2pshare against aria2c and rqbit, and against baselines, on 127.0.0.1.
#
# One random file (1 GiB by default), N seeders holding it (default 4) and one
# downloader; the time is from starting the download to a complete, verified
# file. Contenders:
#   p2pshare  tracker + N p2pd seeders (one user each, one group) + 1 p2pd
#             downloader; times `p2pctl download_file` until it exits 0.
#   aria2c    torrent with 512 KiB pieces, a tiny HTTP tracker (bt_tracker.py),
#             N aria2c seeders, 1 aria2c leecher (process start to exit).
#   rqbit     the same torrent and tracker, rqbit as the leecher; seeders are
#             aria2c or rqbit (--rqbit-seeders, default rqbit: faster here).
#   sha1sum, openssl   `sha1sum FILE`, `openssl dgst -sha1 FILE` (hash only).
#   tcp       one TCP stream over loopback with socat, into a file.
#   barepipe  bench/barepipe: 4 loopback TCP streams, every 512 KiB piece
#             SHA-1-checked and pwritten (the floor for a verified transfer).
# Plus the small-file case (p2pshare, rqbit): a fresh 1 MiB file from ONE
# seeder, --small-runs times (default 20; 0 skips it). rqbit is timed twice:
# one-shot `rqbit download` (process start included) and a running
# `rqbit server` given the torrent over its HTTP API.
# Per-run rows are printed as they come, then a summary (min/median, ratios,
# CPU s/GiB). The CSV goes to --csv, else next to --png, else to a printed
# results dir that is kept.
#
# usage: bench/compare.sh [--size MIB] [--seeders 1,2,4,8] [--runs N]
#          [--small-runs N] [--only p2pshare,aria2c,rqbit,sha1sum,openssl,tcp,barepipe]
#          [--rqbit-seeders aria2c|rqbit] [--png FILE] [--csv FILE] [--bindir DIR]
#   --bindir DIR  p2pshare's tracker, p2pd and p2pctl from DIR instead of this
#                 workspace's build (e.g. an older commit's, to compare before
#                 and after in one session); barepipe is still built here
# Needs: cargo, python3, bc, /usr/bin/time (Debian: time), and per contender
# aria2c (aria2), mktorrent, rqbit (cargo install rqbit), socat, gnuplot
# (gnuplot-nox, only for --png), openssl. Builds the workspace (release).
# Every process started here is stopped by PID on exit; every wait is bounded;
# the temp dir is removed. The CSV stays (its path is printed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

size_mib=1024 seeders_arg=4 runs=3 small_runs=20 only="" png="" csv="" rqbit_seeders=rqbit bindir=""
all="p2pshare,aria2c,rqbit,sha1sum,openssl,tcp,barepipe"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --size) size_mib=${2:?}; shift 2 ;;
    --seeders) seeders_arg=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --small-runs) small_runs=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --rqbit-seeders) rqbit_seeders=${2:?}; shift 2 ;;
    --png) png=${2:?}; shift 2 ;;
    --csv) csv=${2:?}; shift 2 ;;
    --bindir) bindir=${2:?}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
isint() { [[ $1 =~ ^[0-9]+$ ]]; }
{ isint "$size_mib" && [ "$size_mib" -ge 1 ]; } || die "--size takes a number of MiB >= 1"
{ isint "$runs" && [ "$runs" -ge 1 ]; } || die "--runs takes a number >= 1"
isint "$small_runs" || die "--small-runs takes a number >= 0"
[[ $seeders_arg =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--seeders takes a list like 1,2,4,8"
# Ascending and unique: seeders are added as the count grows.
read -r -a seeder_counts <<< "$(tr , '\n' <<< "$seeders_arg" | sort -nu | tr '\n' ' ')"
[ "${seeder_counts[0]}" -ge 1 ] || die "--seeders: counts must be >= 1"
case $rqbit_seeders in aria2c|rqbit) ;; *) die "--rqbit-seeders is aria2c or rqbit" ;; esac
want=${only:-$all}
for c in ${want//,/ }; do [[ ,$all, == *,$c,* ]] || die "--only: unknown contender '$c' (known: $all)"; done
on() { [[ ,$want, == *,$1,* ]]; }

# --- tools -------------------------------------------------------------------
need python3 "apt-get install python3"
need bc "apt-get install bc"
need ss "apt-get install iproute2"
[ -x /usr/bin/time ] || die "/usr/bin/time not found; install it with: apt-get install time"
need cargo "https://rustup.rs"
if on aria2c || { on rqbit && [ "$rqbit_seeders" = aria2c ]; }; then need aria2c "apt-get install aria2"; fi
if on aria2c || on rqbit; then need mktorrent "apt-get install mktorrent"; fi
if on rqbit; then
  [ -x "$HOME/.cargo/bin/rqbit" ] && PATH=$PATH:$HOME/.cargo/bin
  need rqbit "cargo install rqbit"
fi
on tcp && need socat "apt-get install socat"
on openssl && need openssl "apt-get install openssl"
on sha1sum && need sha1sum "apt-get install coreutils"
[ -z "$png" ] || need gnuplot "apt-get install gnuplot-nox"

print_machine
echo "file: $size_mib MiB; seeders: ${seeder_counts[*]}; runs: $runs; small-file runs: $small_runs; contenders: $want"

# --- disk, temp dir, build ---------------------------------------------------
base=${TMPDIR:-/tmp}
avail_mib=$(( $(df -Pk "$base" | awk 'NR==2 {print $4}') / 1024 ))
need_mib=$(( size_mib * 2 + 512 ))
[ "$avail_mib" -ge "$need_mib" ] || die "need $need_mib MiB free in $base (the file and one downloaded copy), have $avail_mib MiB"
# The CSV: --csv, else next to the --png, else in a results dir that is kept.
if [ -z "$csv" ] && [ -n "$png" ]; then csv=${png%.png}.csv; fi
[ -n "$csv" ] || csv=$(mktemp -d "$base/p2pcompare-results.XXXXXX")/compare.csv
echo "raw results will be in: $csv"
trap cleanup EXIT INT TERM
t=$(mktemp -d "$base/p2pcmp.XXXXXX")   # short: p2pd control sockets live in it
echo "building (cargo build --release --bins) ..."
cargo build --quiet --release --bins --manifest-path "$root/Cargo.toml"
tools_bin=$root/target/release
p2p_bin=${bindir:-$tools_bin}
for b in tracker p2pd p2pctl; do
  [ -x "$p2p_bin/$b" ] || die "$p2p_bin/$b not found (--bindir)"
done
p2p_bin=$(cd "$p2p_bin" && pwd)
echo "p2pshare binaries: $p2p_bin"

file=$t/data.bin
size=$((size_mib * 1048576))
echo "making the ${size_mib} MiB random file ..."
head -c "$size" /dev/urandom > "$file"
sha=$(sha1sum "$file" | cut -d' ' -f1)   # also warms the page cache
mkdir -p "$t/out"

echo "kind,contender,seeders,run,size_mib,wall_s,mb_s,dl_rss_mib,dl_cpu_s,seeders_cpu_s,seeder_rss_mib,note" > "$csv"
row() { printf '%-17s %7s %4s %8s %8s %10s %8s %13s %14s  %s\n' "$@"; }
echo; row contender seeders run wall_s MB/s dl_rss_MiB dl_cpu_s seeders_cpu_s seeder_rss_MiB note
# record KIND CONTENDER SEEDERS RUN SIZE_MIB WALL DL_RSS_KIB DL_CPU SEED_CPU SEED_RSS_KIB NOTE
# (empty fields: not measured)
record() {
  local kind=$1 c=$2 n=$3 r=$4 mib=$5 w=$6 drss=$7 dcpu=$8 scpu=$9 srss=${10} note=${11:-}
  local mbs drm srm
  mbs=$(awk -v m="$mib" -v w="$w" 'BEGIN {printf "%.1f", m * 1048576 / 1e6 / w}')
  w=$(printf '%.3f' "$w")
  drm=${drss:+$(awk -v k="$drss" 'BEGIN {printf "%.1f", k / 1024}')}
  srm=${srss:+$(awk -v k="$srss" 'BEGIN {printf "%.1f", k / 1024}')}
  [ -z "$dcpu" ] || dcpu=$(printf '%.2f' "$dcpu")
  [ -z "$scpu" ] || scpu=$(printf '%.2f' "$scpu")
  echo "$kind,$c,$n,$r,$mib,$w,$mbs,$drm,$dcpu,$scpu,$srm,${note//,/;}" >> "$csv"
  # small-file runs: only in the CSV and the summary (median/min/max)
  if [ "$kind" = big ]; then row "$c" "$n" "$r" "$w" "$mbs" "${drm:--}" "${dcpu:--}" "${scpu:--}" "${srm:--}" "$note"; else printf .; fi
}
verify() {  # verify FILE WHAT: the downloaded file must be the original
  local got; got=$(sha1sum "$1" | cut -d' ' -f1)
  [ "$got" = "${3:-$sha}" ] || die "$2: downloaded SHA-1 $got != ${3:-$sha}"
}
# timed OUT CMD...: run CMD under /usr/bin/time; OUT gets "user sys maxrss_kib"
timed() { local o=$1; shift; /usr/bin/time -f '%U %S %M' -o "$o" "$@"; }
tfield() { tail -n 1 "$1" | awk -v i="$2" '{print $i}'; }
tcpu() { tail -n 1 "$1" | awk '{print $1 + $2}'; }
settle() { rm -rf "${t:?}/out"; mkdir -p "$t/out"; sync; }

# --- baselines ---------------------------------------------------------------
for tool in sha1sum openssl; do
  on $tool || continue
  for r in $(seq 1 "$runs"); do
    t0=$(now)
    if [ $tool = sha1sum ]; then timed "$t/tm" sha1sum "$file" > "$t/h.out"
    else timed "$t/tm" openssl dgst -sha1 "$file" > "$t/h.out"; fi
    t1=$(now)
    grep -q "$sha" "$t/h.out" || die "$tool printed a wrong hash"
    record big $tool - "$r" "$size_mib" "$(fsub "$t1" "$t0")" "$(tfield "$t/tm" 3)" "$(tcpu "$t/tm")" "" "" "hash only, page cache warm"
  done
done

if on tcp; then
  for r in $(seq 1 "$runs"); do
    port=$(free_port)
    timed "$t/tm" socat -u "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr" "CREATE:$t/out/tcp.bin" & rpid=$!
    pids+=("$rpid")
    wait_for 100 0.1 "socat to listen" port_listening "$port"
    t0=$(now); timed "$t/tms" socat -u "FILE:$file" "TCP:127.0.0.1:$port"
    wait "$rpid"; t1=$(now); stop "$rpid"
    verify "$t/out/tcp.bin" tcp
    record big tcp 1 "$r" "$size_mib" "$(fsub "$t1" "$t0")" "$(tfield "$t/tm" 3)" "$(tcpu "$t/tm")" "$(tcpu "$t/tms")" "$(tfield "$t/tms" 3)" "socat, 1 stream, no hashing"
    settle
  done
fi

if on barepipe; then
  "$tools_bin/barepipe" hashes "$file" "$t/pieces.sha1"     # not timed
  bg "$t/barepipe.log" "$tools_bin/barepipe" serve "$file" "$t/bp.port"; spid=$bgpid
  wait_for 100 0.1 "barepipe serve" test -s "$t/bp.port"
  for r in $(seq 1 "$runs"); do
    c0=$(cpu_ticks "$spid")
    t0=$(now)
    timed "$t/tm" "$tools_bin/barepipe" fetch "127.0.0.1:$(cat "$t/bp.port")" "$size" "$t/pieces.sha1" "$t/out/bp.bin" 4
    t1=$(now); c1=$(cpu_ticks "$spid")
    verify "$t/out/bp.bin" barepipe
    record big barepipe 1 "$r" "$size_mib" "$(fsub "$t1" "$t0")" "$(tfield "$t/tm" 3)" "$(tcpu "$t/tm")" "$(ticks_to_s $((c1 - c0)))" "$(hwm "$spid")" "4 streams, SHA-1 per piece, pwrite"
    settle
  done
  stop "$spid"
fi

# --- p2pshare ----------------------------------------------------------------
if on p2pshare; then
  d=$t/p; p2p_tracker "$d"; trpid=$bgpid
  seeds=(); have=0; dln=0
  for n in "${seeder_counts[@]}"; do
    while [ $have -lt "$n" ]; do
      have=$((have + 1)); u=s$have
      p2p_daemon "$d" $u; seeds+=("$bgpid")
      ctlq "$d" $u create_user $u pw; ctlq "$d" $u login $u pw
      if [ $have = 1 ]; then ctlq "$d" $u create_group g
      else ctlq "$d" $u join_group g; ctlq "$d" s1 accept_request g $u; fi
      echo "p2pshare: seeder $u hashing the file (upload_file) ..."
      ctlq "$d" $u upload_file "$file" g
    done
    for r in $(seq 1 "$runs"); do
      dln=$((dln + 1)); u=d$dln
      p2p_daemon "$d" $u; dpid=$bgpid
      ctlq "$d" $u create_user $u pw; ctlq "$d" $u login $u pw
      ctlq "$d" $u join_group g; ctlq "$d" s1 accept_request g $u
      wait_for 300 0.1 "$n p2pshare seeders online" p2p_online "$d" $u g data.bin "$n"
      s0=$(cpu_ticks_sum "${seeds[@]}"); c0=$(cpu_ticks "$dpid")
      t0=$(now)
      p2pctl_ "$d" $u download_file g data.bin "$t/out/" >/dev/null || die "p2pshare: download_file failed (see $u.log)"
      t1=$(now)
      s1=$(cpu_ticks_sum "${seeds[@]}"); c1=$(cpu_ticks "$dpid")
      drss=$(hwm "$dpid"); srss=$(hwm_max "${seeds[@]}")
      verify "$t/out/data.bin" p2pshare
      peers=$(p2pctl_ "$d" $u --json show_downloads | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join("%s=%.0fM" % (p["user"], p["bytes"]/2**20) for p in d[0]["peers"]))')
      record big p2pshare "$n" "$r" "$size_mib" "$(fsub "$t1" "$t0")" "$drss" "$(ticks_to_s $((c1 - c0)))" "$(ticks_to_s $((s1 - s0)))" "$srss" "from: $peers"
      ctlq "$d" $u stop_share g data.bin || true
      stop "$dpid"; settle
    done
  done
  stop "${seeds[@]}" "$trpid"
fi

# --- BitTorrent: aria2c and rqbit ----------------------------------------------
a2_common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --disable-ipv6=true --summary-interval=0 --console-log-level=warn --check-integrity=false)
rq_common=(-v warn --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd)
bt_get() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "http://127.0.0.1:$btport/$1"; }
bt_seeds_ge() { local s; s=$(bt_get "seeds?info=${2:-}" | cut -d' ' -f1) && [ "$s" -ge "$1" ]; }
# info hash (hex) of a torrent made by mktorrent: `info` is its last key
infohash() { python3 -c 'import hashlib,sys; d=open(sys.argv[1],"rb").read(); print(hashlib.sha1(d[d.rindex(b"4:infod")+6:-1]).hexdigest())' "$1"; }
bt_tracker() {
  bg "$t/bt-tracker.log" python3 "$here/bt_tracker.py" "$t/bt.port"
  wait_for 100 0.1 "the BitTorrent tracker" test -s "$t/bt.port"
  btport=$(cat "$t/bt.port")
}
# start_seeder KIND DIR TORRENT: a seeder of the file (hard link in DIR); sets $bgpid
start_seeder() {
  local kind=$1 dir=$2 tor=$3 port; port=$(free_port)
  if [ "$kind" = aria2c ]; then
    bg "$dir.log" aria2c "${a2_common[@]}" --seed-ratio=0.0 --bt-seed-unverified=true \
      --listen-port="$port" --dir="$dir" --file-allocation=none "$tor"
  else
    bg "$dir.log" rqbit "${rq_common[@]}" --listen-port "$port" download --disable-http-api --overwrite -o "$dir" "$tor"
  fi
}
# leech KIND DIR TORRENT: download to DIR, timed; exits when complete
leech() {
  local kind=$1 dir=$2 tor=$3 port; port=$(free_port); lport=$port
  if [ "$kind" = aria2c ]; then
    rm -f "$t/a2done"
    timed "$t/tm" aria2c "${a2_common[@]}" --seed-time=0 --listen-port="$port" --dir="$dir" \
      --file-allocation=falloc --on-bt-download-complete="$t/a2done.sh" "$tor" >"$t/leech.log" 2>&1
  else
    timed "$t/tm" rqbit "${rq_common[@]}" --listen-port "$port" download --disable-http-api --exit-on-finish \
      -o "$dir" "$tor" >"$t/leech.log" 2>&1
  fi
}

if on aria2c || on rqbit; then
  bt_tracker
  # aria2c runs this once every piece is in and verified (before its last
  # announce and shutdown, which take it another ~1 s on its 1 s timer).
  printf '#!/bin/sh\ndate +%%s.%%N >> "%s"\n' "$t/a2done" > "$t/a2done.sh"; chmod +x "$t/a2done.sh"
  echo "making the torrent (mktorrent -l 19) ..."
  mktorrent -l 19 -a "http://127.0.0.1:$btport/announce" -o "$t/data.torrent" "$file" >/dev/null
  kinds=()
  if on aria2c || { on rqbit && [ "$rqbit_seeders" = aria2c ]; }; then kinds+=(aria2c); fi
  if on rqbit && [ "$rqbit_seeders" = rqbit ]; then kinds+=(rqbit); fi
  for kind in "${kinds[@]}"; do
    # the contenders that leech from seeders of this kind
    leechers=()
    [ "$kind" = aria2c ] && on aria2c && leechers+=(aria2c)
    on rqbit && [ "$rqbit_seeders" = "$kind" ] && leechers+=(rqbit)
    bt_get reset >/dev/null; seeds=(); have=0
    for n in "${seeder_counts[@]}"; do
      while [ $have -lt "$n" ]; do
        have=$((have + 1)); mkdir -p "$t/bt/$kind$have"; ln "$file" "$t/bt/$kind$have/data.bin"
        start_seeder "$kind" "$t/bt/$kind$have" "$t/data.torrent"; seeds+=("$bgpid")
      done
      echo "$kind seeders: waiting until the tracker has $n of them as seeds ..."
      wait_for 1200 0.1 "$n $kind seeders to announce" bt_seeds_ge "$n" "$(infohash "$t/data.torrent")"
      for c in "${leechers[@]}"; do
        for r in $(seq 1 "$runs"); do
          s0=$(cpu_ticks_sum "${seeds[@]}")
          t0=$(now)
          leech "$c" "$t/out" "$t/data.torrent" || { tail -n 5 "$t/leech.log" >&2; die "$c leecher failed"; }
          t1=$(now)
          s1=$(cpu_ticks_sum "${seeds[@]}"); srss=$(hwm_max "${seeds[@]}")
          verify "$t/out/data.bin" "$c"
          note="seeders: $kind"
          if [ "$c" = aria2c ]; then
            [ -s "$t/a2done" ] || die "aria2c did not run its download-complete hook"
            note="$note; complete at hook; exit +$(printf '%.2f' "$(fsub "$t1" "$(head -n 1 "$t/a2done")")") s"
            t1=$(head -n 1 "$t/a2done")
          fi
          bt_get "forget?port=$lport" >/dev/null
          record big "$c" "$n" "$r" "$size_mib" "$(fsub "$t1" "$t0")" "$(tfield "$t/tm" 3)" "$(tcpu "$t/tm")" "$(ticks_to_s $((s1 - s0)))" "$srss" "$note"
          settle
        done
      done
    done
    stop "${seeds[@]}"
  done
fi

# --- small files: a fresh 1 MiB file from one seeder --------------------------
if [ "$small_runs" -gt 0 ] && on p2pshare; then
  echo "p2pshare small files: $small_runs x a fresh 1 MiB file from 1 seeder ..."
  d=$t/q; p2p_tracker "$d"; trpid=$bgpid
  p2p_daemon "$d" a; apid=$bgpid; p2p_daemon "$d" b; bpid=$bgpid
  ctlq "$d" a create_user a pw; ctlq "$d" a login a pw; ctlq "$d" a create_group gs
  ctlq "$d" b create_user b pw; ctlq "$d" b login b pw; ctlq "$d" b join_group gs; ctlq "$d" a accept_request gs b
  mkdir -p "$d/files"
  for r in $(seq 1 "$small_runs"); do
    f=$d/files/s$r.bin; head -c 1048576 /dev/urandom > "$f"; fsha=$(sha1sum "$f" | cut -d' ' -f1)
    ctlq "$d" a upload_file "$f" gs
    wait_for 100 0.1 "the small file online" p2p_online "$d" b gs "s$r.bin" 1
    t0=$(now)
    p2pctl_ "$d" b download_file gs "s$r.bin" "$t/out/" >/dev/null || die "p2pshare: small download_file failed"
    t1=$(now)
    verify "$t/out/s$r.bin" "p2pshare small" "$fsha"
    record small p2pshare 1 "$r" 1 "$(fsub "$t1" "$t0")" "" "" "" "" "p2pctl download_file, daemons running"
  done
  stop "$bpid" "$apid" "$trpid"; echo
  settle
fi
if [ "$small_runs" -gt 0 ] && on rqbit; then
  # The seeder is a running `rqbit server` (each new torrent added through its
  # HTTP API; an aria2c seeder answers on its 1 s timer and would dominate).
  # Two leechers: `rqbit download --exit-on-finish` started per file (the
  # time includes process start, session set-up, the first tracker announce,
  # connecting, downloading, exit) and a running `rqbit server` given the
  # torrent through its HTTP API (POST to the first 1 ms poll that sees it
  # finished), the closer analogue of p2pctl talking to a running p2pd.
  echo "rqbit small files: $small_runs x a fresh 1 MiB torrent from 1 rqbit seeder ..."
  [ -n "${btport:-}" ] || bt_tracker
  rq_server() {  # rq_server NAME: starts `rqbit server`; sets $bgpid and $api
    local port ap; port=$(free_port); ap=$(free_port); mkdir -p "$t/$1"
    bg "$t/$1.log" rqbit "${rq_common[@]}" --listen-port "$port" --http-api-listen-addr "127.0.0.1:$ap" \
      server start "$t/$1" --disable-persistence
    api=http://127.0.0.1:$ap
    wait_for 300 0.1 "rqbit server $1 to answer" port_listening "$ap"
  }
  rq_server rqs; rqspid=$bgpid; seed_api=$api
  rq_server rql; rqlpid=$bgpid; leech_api=$api
  mkdir -p "$t/out2"
  for r in $(seq 1 "$small_runs"); do
    sd=$t/bs/$r; mkdir -p "$sd"
    head -c 1048576 /dev/urandom > "$sd/s$r.bin"; fsha=$(sha1sum "$sd/s$r.bin" | cut -d' ' -f1)
    mktorrent -l 19 -a "http://127.0.0.1:$btport/announce" -o "$sd.torrent" "$sd/s$r.bin" >/dev/null
    python3 "$here/rqbit_api.py" "$seed_api" "$sd.torrent" "$sd" || die "could not add the torrent to the rqbit seeder"
    wait_for 300 0.1 "the small-file seeder to announce" bt_seeds_ge 1 "$(infohash "$sd.torrent")"
    t0=$(now)
    leech rqbit "$t/out" "$sd.torrent" || { tail -n 5 "$t/leech.log" >&2; die "rqbit small leecher failed"; }
    t1=$(now)
    verify "$t/out/s$r.bin" "rqbit small" "$fsha"
    bt_get "forget?port=$lport" >/dev/null
    record small rqbit 1 "$r" 1 "$(fsub "$t1" "$t0")" "$(tfield "$t/tm" 3)" "$(tcpu "$t/tm")" "" "" "process start+session+announce+download+exit"
    w=$(python3 "$here/rqbit_api.py" "$leech_api" "$sd.torrent" "$t/out2" --wait) || die "rqbit server leecher failed"
    verify "$t/out2/s$r.bin" "rqbit server small" "$fsha"
    record small rqbit-daemon 1 "$r" 1 "$w" "" "" "" "" "HTTP API add + poll; server running"
  done
  stop "$rqlpid" "$rqspid"; echo
  settle
fi

# --- summary, chart ------------------------------------------------------------
echo
python3 "$here/compare_report.py" "$csv" "$png" "$rqbit_seeders"
echo "raw results (CSV): $csv"
