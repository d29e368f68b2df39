# Shared helpers for the local-stack services (sourced, not run).
# Every service keeps its state under $STACK_DIR/<service>/, its log in $STACK_DIR/log/<service>*.log
# and the pid of each process it started in $STACK_DIR/run/<name>.pid, so `down` stops exactly those.
STACK_DIR=${HPCCI_STACK_DIR:-/var/lib/hpcci-stack}
STACK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034  # used by the service plugins
REPO_ROOT=$(cd "$STACK_SRC/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive

say()  { printf 'local-stack: %s\n' "$*" >&2; }
warn() { printf 'local-stack: warning: %s\n' "$*" >&2; }
die()  { local rc=$1; shift; printf 'local-stack: error: %s\n' "$*" >&2; exit "$rc"; }

stack_init() {
  [ "$(id -u)" = 0 ] || die 2 "the local stack needs root (it installs packages and starts daemons); run it as root"
  mkdir -p "$STACK_DIR/run" "$STACK_DIR/log"
}

# apt_update_once: `apt-get update`, once per run of local-stack.
_apt_updated=""
apt_update_once() {
  [ -n "$_apt_updated" ] && return 0
  apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$STACK_DIR/log/apt.log" 2>&1 || die 3 "apt-get update failed: see $STACK_DIR/log/apt.log"
  _apt_updated=1
}

# apt_install PKG...: install the Debian packages that are not installed yet.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]}"
  apt_update_once
  # Packages like memcached, docker.io, mariadb-server and munge start their own daemons on install unless
  # policy-rc.d forbids it; ours must be the only ones. Forbid it for the install when the machine does not.
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# hpcci local-stack: no service starts during apt-get install\nexit 101\n' >"$policy"
    chmod 755 "$policy"; made_policy=1
  fi
  local rc=0
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >>"$STACK_DIR/log/apt.log" 2>&1 || rc=$?
  [ -n "$made_policy" ] && rm -f "$policy"
  [ "$rc" -eq 0 ] || die 3 "apt-get install ${missing[*]} failed: see $STACK_DIR/log/apt.log"
}

# _pid_start PID: the process's start time (clock ticks since boot; survives exec, changes when a pid is reused).
_pid_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# pid_alive NAME: the process recorded in run/NAME.pid is running, and is still the one start_bg started
# (run/NAME.start): a stale pid reused by another process does not count, so `down` never kills a stranger.
pid_alive() {
  local f="$STACK_DIR/run/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  # no start time: not started by start_bg (or left over from a killed session): never trust a bare pid
  [ -s "$STACK_DIR/run/$1.start" ] || return 1
  [ "$(_pid_start "$pid")" = "$(cat "$STACK_DIR/run/$1.start")" ]
}

# start_bg NAME LOGFILE CMD...: start CMD in the background (own session) and record its pid and start time.
# The daemon runs in / : it must not keep the caller's folder (a checkout that may be deleted; slurmd passes its
# cwd on to every job step, which then fails with "Unable to get current working directory").
start_bg() {
  local name=$1 logf=$2; shift 2
  ( cd / && exec setsid "$@" >>"$logf" 2>&1 < /dev/null ) &
  echo $! >"$STACK_DIR/run/$name.pid"
  _pid_start $! >"$STACK_DIR/run/$name.start"
}

# stop_pid NAME: stop the recorded process (TERM, then KILL after 10 s) and forget it.
stop_pid() {
  local f="$STACK_DIR/run/$1.pid" pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if pid_alive "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f" "$STACK_DIR/run/$1.start"
}

# wait_for DESCRIPTION SECONDS CMD...: poll CMD until it succeeds, or fail naming DESCRIPTION.
# With WAIT_PIDS="name1 name2" set (run/<name>.pid), fail at once when one of those processes has died.
wait_for() {
  local what=$1 secs=$2 n; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    for n in ${WAIT_PIDS:-}; do pid_alive "$n" || die 4 "$what: $n exited (see $STACK_DIR/log/)"; done
    sleep 0.1
  done
  die 4 "$what did not come up within ${secs}s"
}

# random_secret [LEN]: a random alphanumeric string (default 32 characters).
# (no `tr </dev/urandom | head`: tr dies of SIGPIPE, which pipefail + set -e turn into a silent exit)
random_secret() {
  local s
  s=$(head -c 1024 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
  printf '%s' "${s:0:${1:-32}}"
}

# creds_file FILE KEY=VALUE...: write a KEY=VALUE file with mode 600 unless it exists (first up only).
creds_file() {
  local f=$1; shift
  [ -s "$f" ] && return 0
  mkdir -p "$(dirname "$f")"
  ( umask 077; printf '%s\n' "$@" >"$f.new" ) && mv "$f.new" "$f"
}

# creds_get FILE KEY: the value of KEY in a creds_file.
creds_get() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n 1; }

# http_code URL [CURL-ARGS...]: the HTTP status of a GET (000 when nothing answers).
http_code() { local u=$1; shift; curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" "$u" 2>/dev/null || true; }
