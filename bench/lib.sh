# Helpers shared by bench/compare.sh and bench/hash.sh (sourced, not run).
# Every process started through `bg` is recorded and stopped by PID on exit;
# every wait is bounded.
# shellcheck shell=bash

pids=()        # processes to stop on exit
t=""           # the temp dir, removed on exit

die() { echo "error: $*" >&2; exit 1; }
now() { date +%s.%N; }
# fsub A B -> A - B (floating point)
fsub() { echo "$1 - $2" | bc -l; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# need TOOL HINT: exit with a clear message if TOOL is not on PATH.
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: $2"; }

print_machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
       "$(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
       "sha_ni: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no); $(date -u +%FT%TZ)"
}

# bg LOG CMD...: start CMD in the background, stdout+stderr to LOG; sets $bgpid.
bg() { local log=$1; shift; "$@" </dev/null >"$log" 2>&1 & bgpid=$!; pids+=("$bgpid"); }

alive() { local s; s=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }

# stop PID...: SIGTERM, up to 5 s for a clean exit, then SIGKILL; reaps them
# and forgets them.
stop() {
  local p q keep=()
  [ $# -gt 0 ] || return 0
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    q=0; for p in "$@"; do alive "$p" && q=1; done
    [ $q = 0 ] && break; sleep 0.1
  done
  for p in "$@"; do alive "$p" && kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  for q in "${pids[@]}"; do
    for p in "$@"; do [ "$p" = "$q" ] && continue 2; done
    keep+=("$q")
  done
  pids=("${keep[@]}")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "${pids[@]}"
  if [ -n "$t" ] && [ -d "$t" ]; then
    if [ $rc != 0 ]; then
      for log in "$t"/*.log "$t"/*/*.log; do
        [ -s "$log" ] || continue
        echo "--- last lines of ${log#"$t"/}" >&2; tail -n 5 "$log" >&2
      done
    fi
    rm -rf "$t"
  fi
  exit $rc
}

# CPU seconds (user+sys, all threads) a live process has used, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
cpu_ticks_sum() { local s=0 p; for p in "$@"; do s=$((s + $(cpu_ticks "$p"))); done; echo $s; }
# Peak RSS (VmHWM) of a live process in KiB; max over several.
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
hwm_max() { local m=0 p v; for p in "$@"; do v=$(hwm "$p"); [ "$v" -gt "$m" ] && m=$v; done; echo "$m"; }
hz=$(getconf CLK_TCK)
ticks_to_s() { echo "$1 / $hz" | bc -l; }

# wait_for TRIES SLEEP DESCRIPTION CMD...: retry CMD until it succeeds, bounded.
wait_for() {
  local n=$1 s=$2 what=$3; shift 3
  for _ in $(seq 1 "$n"); do "$@" && return 0; sleep "$s"; done
  die "timed out waiting for $what"
}

# p2pshare: tracker + daemons. Homes must be short paths (socket path limit).
p2p_bin=""
p2p_tracker() {  # p2p_tracker DIR -> starts a tracker whose info file is DIR/ti.txt
  local d=$1 port; mkdir -p "$d"; port=$(free_port)
  echo "127.0.0.1:$port" > "$d/ti.txt"
  bg "$d/tracker.log" "$p2p_bin/tracker" "$d/ti.txt" 1 --data-dir "$d/tr"
  wait_for 100 0.1 "the p2pshare tracker to listen" port_listening "$port"
}
port_listening() { [ -n "$(ss -Htln "sport = :$1")" ]; }
p2p_daemon() {   # p2p_daemon DIR NAME -> starts p2pd with home DIR/NAME; sets $bgpid
  local d=$1 n=$2
  bg "$d/$n.log" "$p2p_bin/p2pd" --home "$d/$n" --listen 127.0.0.1:0 --tracker-info "$d/ti.txt"
  wait_for 100 0.1 "the socket of p2pd $n" test -S "$d/$n/p2pd.sock"
}
p2pctl_() { local d=$1 n=$2; shift 2; "$p2p_bin/p2pctl" --home "$d/$n" "$@"; }
ctlq() { p2pctl_ "$@" >/dev/null; }
# p2p_online DIR NAME GROUP FILE N: true once NAME sees FILE with >= N online holders
p2p_online() {
  local o; o=$(p2pctl_ "$1" "$2" --json list_files "$3" 2>/dev/null) || return 1
  python3 -c 'import json,sys; f=[x for x in json.loads(sys.argv[1]) if x["name"]==sys.argv[2]]; sys.exit(0 if f and f[0]["online"] >= int(sys.argv[3]) else 1)' "$o" "$4" "$5"
}
