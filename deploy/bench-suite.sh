#!/usr/bin/env bash
# Runs every `tern bench` scenario of docs/BENCHMARKS.md three times against fresh local
# clusters and prints the medians, so the figures there can be reproduced in one command.
#
#   deploy/bench-suite.sh [OUT_DIR]     (default OUT_DIR: <repo>/target/bench-suite)
#
# It starts its own cluster with deploy/local-cluster.sh (release binaries, built unless
# TERN_SKIP_BUILD=1) on ports 29876/30911 under $TERN_HOME (default /tmp/tern-bench-suite),
# warms it up with 20,000 sends, then runs: produce (200,000 msgs, 256 in flight), latency
# (20,000, one in flight), consume (200,000-message backlog), e2e (5,000 msgs/s for 10 s);
# then restarts the broker with SYNC_FLUSH and runs produce (100,000). Each run's JSON report
# is kept in OUT_DIR, with the broker's and the client's CPU time of each produce run.
# Run it on an otherwise idle machine; it takes about two minutes.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/target/bench-suite}"
export TERN_HOME="${TERN_HOME:-/tmp/tern-bench-suite}"
export TERN_NAMESRV_PORT="${TERN_NAMESRV_PORT:-29876}"
export TERN_BROKER_PORT="${TERN_BROKER_PORT:-30911}"
export NAMESRV_ADDR="127.0.0.1:$TERN_NAMESRV_PORT"
TERN="${CARGO_TARGET_DIR:-$REPO/target}/release/tern"
CLUSTER="$REPO/deploy/local-cluster.sh"
RUNS=3

mkdir -p "$OUT"
if [ "${TERN_SKIP_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && cargo build --release -p tern-nameserver -p tern-broker -p tern-cli)
fi
export TERN_SKIP_BUILD=1

restart() { # extra broker flags
  "$CLUSTER" stop >/dev/null 2>&1 || true
  rm -rf "$TERN_HOME"
  TERN_BROKER_ARGS="${1:-}" "$CLUSTER" start >/dev/null
  "$TERN" bench produce -t Warm --count 20000 >/dev/null 2>&1
}
broker_cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$TERN_HOME/broker.pid")/stat"; }
trap '"$CLUSTER" stop >/dev/null 2>&1 || true' EXIT

restart
for i in $(seq "$RUNS"); do
  before=$(broker_cpu_ticks)
  /usr/bin/time -f "%U %S" -o "$OUT/produce-$i.client-cpu" \
    "$TERN" bench produce --count 200000 --json >"$OUT/produce-$i.json"
  echo $(($(broker_cpu_ticks) - before)) >"$OUT/produce-$i.broker-ticks"
done
for i in $(seq "$RUNS"); do "$TERN" bench latency --count 20000 --json >"$OUT/latency-$i.json"; done
for i in $(seq "$RUNS"); do
  "$TERN" bench consume -t "ConsumeSuite$i" --fill 200000 --json >"$OUT/consume-$i.json"
done
for i in $(seq "$RUNS"); do
  "$TERN" bench e2e -t "E2eSuite$i" --rate 5000 --duration-secs 10 --json >"$OUT/e2e-$i.json"
done
restart "--flush-disk-type SYNC_FLUSH"
for i in $(seq "$RUNS"); do
  "$TERN" bench produce -t SyncSuite --count 100000 --json >"$OUT/sync-$i.json"
done

python3 - "$OUT" "$RUNS" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
out, runs, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for bench in ("produce", "latency", "consume", "e2e", "sync"):
    reports = [json.load(open(f"{out}/{bench}-{i}.json")) for i in range(1, runs + 1)]
    rates = [round(r["msgsPerSec"]) for r in reports]
    order = sorted(range(runs), key=lambda i: rates[i])
    median = reports[order[runs // 2]]
    line = f"{bench:8} msgs/s {rates} median {round(median['msgsPerSec'])}"
    line += f" errors {[r['errors'] for r in reports]}"
    if median.get("latencyUs"):
        lat = median["latencyUs"]
        line += f" | median run µs p50 {lat['p50']} p99 {lat['p99']} p999 {lat['p999']}"
    if bench == "e2e":
        line += f" | p99 of each run {[r['latencyUs']['p99'] for r in reports]}"
    print(line)
for i in range(1, runs + 1):
    user, sys_ = map(float, open(f"{out}/produce-{i}.client-cpu").read().split())
    ticks = int(open(f"{out}/produce-{i}.broker-ticks").read())
    # 200,000 measured sends plus the 2,000 warm-up sends of `bench produce`.
    print(f"produce run {i}: CPU per message broker {ticks / hz / 202000 * 1e6:.1f} µs, "
          f"client {(user + sys_) / 202000 * 1e6:.1f} µs")
EOF
