#!/usr/bin/env bash
# Run p2pshare on this machine: builds the workspace, starts one tracker and
# two daemons (alice's and bob's) on 127.0.0.1 in a temp directory, and walks
# through the commands with p2pctl, printing each before running it.
#
#   ./demo.sh            # everything it starts is stopped on exit
#   KEEP=1 ./demo.sh     # keep the temp directory (homes, logs) afterwards
#
# Exits non-zero if a step that must work fails. Needs cargo and python3.
set -euo pipefail

cd "$(dirname "$0")"
root=$PWD

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is needed (to pick a free port)"

say "building: cargo build --workspace --release --bins"
cargo build --workspace --release --bins
bin=$root/target/release
for p in tracker p2pd p2pctl; do
  [ -x "$bin/$p" ] || die "$bin/$p is missing after the build"
done

# Short path: control sockets live inside it and socket paths are limited.
t=$(mktemp -d /tmp/p2pdemo.XXXXXX)
# The demo runs on its own settings, never the ~/.config/p2pshare of whoever runs it.
export XDG_CONFIG_HOME=$t/config
pids=()
names=()

stop_all() {
  local i pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Bounded: 5 s for a clean stop, then SIGKILL.
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    if kill -0 "$pid" 2>/dev/null; then
      echo "demo: ${names[$i]} (pid $pid) did not stop in 5 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}

cleanup() {
  local rc=$?
  stop_all
  if [ $rc != 0 ]; then
    for log in "$t"/*.log; do
      [ -f "$log" ] || continue
      echo "--- last lines of $log" >&2
      tail -n 15 "$log" >&2 || true
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "demo: kept $t"
  else
    rm -rf "$t"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() { # start NAME CMD...: run in the background, log to $t/NAME.log
  local name=$1; shift
  "$@" </dev/null >"$t/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "127.0.0.1:$port" >"$t/tracker_info.txt"

say "starting a tracker on 127.0.0.1:$port and two daemons (homes $t/alice, $t/bob)"
echo "\$ tracker $t/tracker_info.txt 1 --data-dir $t/tracker-data"
start tracker "$bin/tracker" "$t/tracker_info.txt" 1 --data-dir "$t/tracker-data"
for who in alice bob; do
  echo "\$ p2pd --home $t/$who --listen 127.0.0.1:0 --tracker-info $t/tracker_info.txt"
  start "p2pd-$who" "$bin/p2pd" --home "$t/$who" --listen 127.0.0.1:0 --tracker-info "$t/tracker_info.txt"
done

# Bounded polls: the tracker's port, then both control sockets.
up=0
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
  kill -0 "${pids[0]}" 2>/dev/null || die "the tracker exited (see $t/tracker.log)"
  sleep 0.1
done
[ $up = 1 ] || die "the tracker does not listen on 127.0.0.1:$port after 10 s"
for who in alice bob; do
  for _ in $(seq 1 100); do [ -S "$t/$who/p2pd.sock" ] && break; sleep 0.1; done
  [ -S "$t/$who/p2pd.sock" ] || die "no control socket $t/$who/p2pd.sock after 10 s (see $t/p2pd-$who.log)"
done
echo "all up. Below, 'alice\$' runs p2pctl with P2P_HOME=$t/alice, 'bob\$' with P2P_HOME=$t/bob."

# Relative paths given to p2pctl are relative to where p2pctl runs: here.
cd "$t"

as() { # as WHO ARGS...: print and run p2pctl as WHO; returns its exit status
  local who=$1; shift
  printf '\n%s$ p2pctl %s\n' "$who" "$*"
  P2P_HOME="$t/$who" "$bin/p2pctl" "$@"
}
must() { # must WHO ARGS...: a step that has to work
  as "$@" || die "p2pctl ${*:2} (as $1) exited $?"
}

say "accounts and sessions"
must alice create_user alice alice-pw
must bob create_user bob bob-pw
must alice login alice alice-pw
must bob login bob bob-pw

say "a group: alice creates it, bob asks to join, alice accepts"
must alice create_group movies
must bob join_group movies
must alice list_requests movies
must alice accept_request movies bob
must bob list_groups

say "alice shares a 4 MB file; bob sees it"
mkdir -p files downloads
head -c 4000000 /dev/urandom >files/holiday.bin
sha=$(sha1sum files/holiday.bin | cut -d' ' -f1)
echo "(files/holiday.bin: 4000000 random bytes, SHA-1 $sha)"
must alice upload_file files/holiday.bin movies
must bob list_files movies

say "bob downloads it from alice"
rc=0
printf '\nbob$ p2pctl download_file movies holiday.bin downloads/\n'
# Bounded, in case this build's daemon accepts the download but never ends it.
limit=()
command -v timeout >/dev/null && limit=(timeout 120)
P2P_HOME="$t/bob" "${limit[@]}" "$bin/p2pctl" download_file movies holiday.bin downloads/ || rc=$?
if [ $rc = 0 ]; then
  got=$(sha1sum downloads/holiday.bin 2>/dev/null | cut -d' ' -f1 || true)
  [ "$got" = "$sha" ] || die "downloads/holiday.bin is missing or its SHA-1 is ${got:-none}, want $sha"
  echo "(downloads/holiday.bin has SHA-1 $got: the exact file)"
else
  echo
  [ $rc = 124 ] && echo "NOTE: download_file did not finish within 120 s."
  echo "NOTE: download_file exited $rc. The swarm engine may not be in this build yet;"
  echo "      the demo carries on without the download."
fi
must bob show_downloads

say "state of each daemon"
must alice status
must bob status

say "logging out"
must bob logout
must alice logout
must alice status

say "demo finished: every required step worked"
