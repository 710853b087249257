#!/usr/bin/env bash
# Installs p2pshare: the three programs, their systemd units, man pages and
# shell completions. See docs/service.md.
#
#   contrib/install.sh [--user | --system] [--prefix DIR] [--unit-dir DIR]
#                      [--bin-dir DIR] [--dry-run]
#
#   --user      (default) for this user: PREFIX ~/.local, p2pd.service in
#               ~/.config/systemd/user (the tracker unit is a system unit and
#               is not installed).
#   --system    for the machine (run as root): PREFIX /usr/local, p2pd.service
#               in /etc/systemd/user, tracker@.service in /etc/systemd/system.
#   --prefix    binaries in PREFIX/bin, man pages in PREFIX/share/man/man1,
#               completions in PREFIX/share/{bash-completion,zsh,fish}.
#   --unit-dir  where the units go instead (the user unit directly in it;
#               with --system, user/ and system/ below it).
#   --bin-dir   take tracker, p2pd and p2pctl from DIR instead of building
#               them with `cargo build --release`.
#   --dry-run   print what would be done, change nothing.
#
# Exit status: 0 installed (or would be), 1 a step failed, 2 usage error.
set -euo pipefail

usage() { sed -n '4,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

mode=user prefix="" unit_dir="" bin_dir="" dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --user) mode=user ;;
    --system) mode=system ;;
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --unit-dir) [ $# -ge 2 ] || usage; unit_dir=$2; shift ;;
    --unit-dir=*) unit_dir=${1#*=} ;;
    --bin-dir) [ $# -ge 2 ] || usage; bin_dir=$2; shift ;;
    --bin-dir=*) bin_dir=${1#*=} ;;
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '4,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage ;;
  esac
  shift
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
if [ "$mode" = user ]; then
  : "${HOME:?HOME is not set}"
  prefix=${prefix:-$HOME/.local}
  unit_dir=${unit_dir:-${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user}
  user_units=$unit_dir
  system_units=""
else
  prefix=${prefix:-/usr/local}
  unit_dir=${unit_dir:-/etc/systemd}
  user_units=$unit_dir/user
  system_units=$unit_dir/system
fi
bindir=$prefix/bin
mandir=$prefix/share/man/man1
programs=(tracker p2pd p2pctl)

# Runs a command, or only prints it under --dry-run.
run() {
  if [ $dry_run = 1 ]; then printf 'would run: %s\n' "$*"; else "$@"; fi
}

# Writes the output of a command to a file (or says it would).
run_to() {
  local out=$1; shift
  if [ $dry_run = 1 ]; then printf 'would run: %s > %s\n' "$*" "$out"; return 0; fi
  "$@" >"$out"
}

if [ -z "$bin_dir" ]; then
  command -v cargo >/dev/null || { echo "install.sh: cargo not found; build elsewhere and pass --bin-dir DIR" >&2; exit 1; }
  run cargo build --release --manifest-path "$repo/Cargo.toml" -p tracker -p p2pd -p p2pctl --bins
  bin_dir=$repo/target/release
fi
if [ $dry_run = 0 ]; then
  for p in "${programs[@]}"; do
    [ -x "$bin_dir/$p" ] || { echo "install.sh: $bin_dir/$p is missing" >&2; exit 1; }
  done
fi

run install -d -m 755 "$bindir" "$mandir"
for p in "${programs[@]}"; do
  run install -m 755 "$bin_dir/$p" "$bindir/$p"
done

# A unit with ExecStart pointing at the installed binary.
install_unit() {
  local src=$1 dir=$2 from=$3 to=$4
  run install -d -m 755 "$dir"
  run_to "$dir/$(basename "$src")" sed "s|^ExecStart=$from|ExecStart=$to|" "$src"
  [ $dry_run = 1 ] || chmod 644 "$dir/$(basename "$src")"
}
install_unit "$here/systemd/p2pd.service" "$user_units" '%h/.local/bin/' "$bindir/"
if [ -n "$system_units" ]; then
  install_unit "$here/systemd/tracker@.service" "$system_units" '/usr/local/bin/' "$bindir/"
fi

# Man pages and completions come from the programs themselves (`PROG man
# --dir DIR`, `PROG completions SHELL`); a build without those subcommands
# answers with a usage error (status 2), and that step is skipped.
# True if PROG ARGS succeeds, false on a usage error (2); anything else fails.
has_subcommand() {
  local status=0
  timeout 10 "$bin_dir/$1" "${@:2}" </dev/null >/dev/null 2>&1 || status=$?
  case $status in
    0) return 0 ;;
    2) return 1 ;;
    *) echo "install.sh: \`$1 ${*:2}\` failed (status $status)" >&2; exit 1 ;;
  esac
}
for p in "${programs[@]}"; do
  if [ $dry_run = 1 ]; then
    printf 'would run: %s man --dir %s\n' "$bindir/$p" "$mandir"
  elif has_subcommand "$p" man; then
    "$bin_dir/$p" man --dir "$mandir" </dev/null
  else
    echo "install.sh: skipped the man page of $p: this build has no \`$p man\`" >&2
  fi
  for shell in bash zsh fish; do
    case $shell in
      bash) dir=$prefix/share/bash-completion/completions file=$p ;;
      zsh) dir=$prefix/share/zsh/site-functions file=_$p ;;
      fish) dir=$prefix/share/fish/vendor_completions.d file=$p.fish ;;
    esac
    if [ $dry_run = 1 ]; then
      printf 'would run: %s completions %s > %s\n' "$bindir/$p" "$shell" "$dir/$file"
    elif has_subcommand "$p" completions "$shell"; then
      install -d -m 755 "$dir"
      "$bin_dir/$p" completions "$shell" </dev/null >"$dir/$file"
    else
      echo "install.sh: skipped the $shell completions of $p: this build has no \`$p completions\`" >&2
      break
    fi
  done
done

if [ $dry_run = 1 ]; then exit 0; fi
echo "installed into $prefix; units in $unit_dir"
if [ "$mode" = user ]; then
  cat <<EOF
next:
  put tracker_info.txt in ~/.config/p2pshare/
  systemctl --user daemon-reload
  systemctl --user enable --now p2pd
  systemctl --user status p2pd
EOF
else
  cat <<EOF
next (docs/service.md):
  tracker keygen /etc/p2pshare/cluster.key, and /etc/p2pshare/tracker_info.txt
  systemctl daemon-reload
  systemctl enable --now tracker@1
  systemctl status tracker@1
EOF
fi
