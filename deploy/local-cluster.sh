#!/usr/bin/env bash
# Runs a one-NameServer, one-broker Tern cluster on this machine.
#
#   deploy/local-cluster.sh start    build release binaries, start both servers, send and consume
#                                    one message with the `tern` CLI to show the cluster works
#   deploy/local-cluster.sh stop     stop both servers (SIGTERM, then SIGKILL after 20 s)
#   deploy/local-cluster.sh status   show the processes and `tern cluster list`
#
# Both servers run on their embedded defaults except for the addresses: they listen on
# 127.0.0.1 (NameServer 9876, broker 10911) and the broker keeps its store under
# $TERN_HOME/store. Logs and pid files live in $TERN_HOME.
#
# Environment (all optional):
#   TERN_HOME           state directory (default: <repo>/target/local-cluster)
#   TERN_HOST           address both servers listen on (default 127.0.0.1)
#   TERN_NAMESRV_PORT   NameServer port (default 9876)
#   TERN_BROKER_PORT    broker port (default 10911)
#   TERN_BUILD_PROFILE  release (default) or debug: which cargo profile to build and run
#   TERN_SKIP_BUILD     1: do not run cargo, use the binaries already built
#   TERN_NAMESRV_ARGS   extra flags for tern-nameserver (word-split)
#   TERN_BROKER_ARGS    extra flags for tern-broker (word-split), e.g. "--flush-disk-type SYNC_FLUSH"
#   CARGO_TARGET_DIR    honoured as cargo does
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TERN_HOME="${TERN_HOME:-$REPO/target/local-cluster}"
TERN_HOST="${TERN_HOST:-127.0.0.1}"
TERN_NAMESRV_PORT="${TERN_NAMESRV_PORT:-9876}"
TERN_BROKER_PORT="${TERN_BROKER_PORT:-10911}"
TERN_BUILD_PROFILE="${TERN_BUILD_PROFILE:-release}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
BIN="$TARGET_DIR/$TERN_BUILD_PROFILE"
NAMESRV_ADDR="$TERN_HOST:$TERN_NAMESRV_PORT"
BROKER_ADDR="$TERN_HOST:$TERN_BROKER_PORT"
STARTUP_TIMEOUT_S=60

say() { printf '==> %s\n' "$*"; }
fail() {
  printf 'local-cluster: %s\n' "$*" >&2
  exit 1
}

pid_of() { # role -> pid if its pid file names a live process
  local file="$TERN_HOME/$1.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null)" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

build() {
  if [ "${TERN_SKIP_BUILD:-0}" = 1 ]; then
    return
  fi
  command -v cargo >/dev/null 2>&1 ||
    fail "cargo not found: install Rust (https://rustup.rs) or set TERN_SKIP_BUILD=1 with built binaries"
  local profile_flag=()
  case "$TERN_BUILD_PROFILE" in
    release) profile_flag=(--release) ;;
    debug) ;;
    *) fail "TERN_BUILD_PROFILE must be release or debug, not '$TERN_BUILD_PROFILE'" ;;
  esac
  say "building tern-nameserver, tern-broker and tern ($TERN_BUILD_PROFILE)"
  (cd "$REPO" && cargo build "${profile_flag[@]}" --bins \
    -p tern-nameserver -p tern-broker -p tern-cli)
}

# Waits until `role`'s log shows its `listening on` line, or the process died, or time is up.
wait_listening() {
  local role="$1" pid="$2" log="$TERN_HOME/$1.log" i
  for ((i = 0; i < STARTUP_TIMEOUT_S * 10; i++)); do
    if grep -q 'listening on' "$log" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2 || true
      fail "$role exited during start-up; log: $log"
    fi
    sleep 0.1
  done
  tail -n 20 "$log" >&2 || true
  fail "$role printed no 'listening on' line within ${STARTUP_TIMEOUT_S}s; log: $log"
}

start_role() { # role program args...
  local role="$1" program="$2"
  shift 2
  [ -x "$program" ] || fail "$program is missing: build it first (or unset TERN_SKIP_BUILD)"
  : >"$TERN_HOME/$role.log"
  # nohup + setsid: the servers outlive this shell and the terminal it runs in.
  nohup setsid "$program" "$@" >>"$TERN_HOME/$role.log" 2>&1 </dev/null &
  local pid=$!
  printf '%s\n' "$pid" >"$TERN_HOME/$role.pid"
  wait_listening "$role" "$pid"
  say "$role running (pid $pid), $(grep -m1 -o 'listening on [^ ]*' "$TERN_HOME/$role.log")"
}

cmd_start() {
  if pid_of nameserver >/dev/null || pid_of broker >/dev/null; then
    say "already running (deploy/local-cluster.sh stop to stop it)"
    cmd_status
    return 0
  fi
  build
  mkdir -p "$TERN_HOME/store"
  # shellcheck disable=SC2086 # the extra-args variables are word-split on purpose
  start_role nameserver "$BIN/tern-nameserver" --listen "$NAMESRV_ADDR" ${TERN_NAMESRV_ARGS:-}
  # shellcheck disable=SC2086
  start_role broker "$BIN/tern-broker" --listen "$BROKER_ADDR" -n "$NAMESRV_ADDR" \
    --store-dir "$TERN_HOME/store" ${TERN_BROKER_ARGS:-}

  local tern="$BIN/tern" i
  export NAMESRV_ADDR
  say "waiting for the broker to register with the NameServer"
  for ((i = 0; i < STARTUP_TIMEOUT_S * 10; i++)); do
    if "$tern" cluster list 2>/dev/null | grep -q "$BROKER_ADDR"; then
      break
    fi
    sleep 0.1
  done
  "$tern" cluster list

  say "sending one message to topic QuickStart"
  local body="Hello, Tern! ($(date -u +%Y-%m-%dT%H:%M:%SZ))" sent queue offset
  sent="$("$tern" send QuickStart "$body" --tag quickstart --keys quickstart)"
  printf '%s\n' "$sent"
  # `tern send` prints `... broker=NAME queue=N offset=N ...`; consume exactly that message.
  broker="$(printf '%s\n' "$sent" | sed -n 's/.*broker=\([^ ]*\).*/\1/p' | head -n1)"
  queue="$(printf '%s\n' "$sent" | sed -n 's/.*queue=\([0-9]*\).*/\1/p' | head -n1)"
  offset="$(printf '%s\n' "$sent" | sed -n 's/.*offset=\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$broker" ] && [ -n "$queue" ] && [ -n "$offset" ] ||
    fail "could not read broker/queue/offset from the send output"
  say "consuming it back"
  "$tern" consume QuickStart --broker "$broker" --queue "$queue" --offset "$offset" --count 1 \
    --timeout-ms 10000
  say "cluster is up: NameServer $NAMESRV_ADDR, broker $BROKER_ADDR"
  say "try: NAMESRV_ADDR=$NAMESRV_ADDR $tern topic list"
  say "stop it with: deploy/local-cluster.sh stop"
}

stop_role() {
  local role="$1" pid i
  if ! pid="$(pid_of "$role")"; then
    rm -f "$TERN_HOME/$role.pid"
    say "$role not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$role (pid $pid) still running after 20 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$TERN_HOME/$role.pid"
  say "$role stopped (pid $pid)"
}

cmd_stop() {
  # The broker first, so it can unregister from the NameServer and flush its store.
  stop_role broker
  stop_role nameserver
}

cmd_status() {
  local role pid up=0
  for role in nameserver broker; do
    if pid="$(pid_of "$role")"; then
      say "$role running (pid $pid, log $TERN_HOME/$role.log)"
      up=$((up + 1))
    else
      say "$role not running"
    fi
  done
  if [ "$up" -gt 0 ] && [ -x "$BIN/tern" ]; then
    NAMESRV_ADDR="$NAMESRV_ADDR" "$BIN/tern" cluster list || true
  fi
  [ "$up" -eq 2 ]
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
