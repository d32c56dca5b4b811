#!/usr/bin/env bash
# Collector sizing: N simulated agents (examples/fleet_sim.rs: the agent's own host-metrics
# request builder and OTLP clients, one gRPC connection per node) against one real
# `daytwo collector`, for N = 10, 1,000 and 10,000 nodes. Time is compressed: each step is one
# metrics interval of every node, sent as fast as the collector takes it.
#
# Prints per fleet size: the collector's CPU-seconds per node-interval (and what that is in
# cores at a 10 s interval in real time), its peak RSS, and how much its store grew per
# node-interval (and per day at 10 s). Figures go to docs/kubernetes.md "Sizing".
#
# Usage: bench/fleet_sizing.sh [NODES...]   (default: 10 1000 10000)
# Env:   STEPS (default 30), INTERVAL_SECS (10), SIGNALS_PER_MILLE (5), LOG_LINES (0),
#        IN_FLIGHT (256), KEEP=1 keeps the data directories, PROFILE=debug for a quick smoke run
#        (figures from a debug build mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-30}"
INTERVAL_SECS="${INTERVAL_SECS:-10}"
SIGNALS_PER_MILLE="${SIGNALS_PER_MILLE:-5}"
LOG_LINES="${LOG_LINES:-0}"
IN_FLIGHT="${IN_FLIGHT:-256}"
sizes=("$@")
((${#sizes[@]})) || sizes=(10 1000 10000)

PROFILE="${PROFILE:-release}"
if [[ "$PROFILE" == release ]]; then
  cargo build --release --locked --bin daytwo --example fleet_sim >&2
else
  cargo build --locked --bin daytwo --example fleet_sim >&2
  PROFILE=debug
fi
bin=target/$PROFILE/daytwo
sim=target/$PROFILE/examples/fleet_sim
# Each process holds one socket per simulated node.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
collector_pid=""
cleanup() {
  [[ -n "$collector_pid" ]] && kill "$collector_pid" 2>/dev/null && wait "$collector_pid" 2>/dev/null
  [[ "${KEEP:-0}" == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

ticks=$(getconf CLK_TCK)
cpu_secs() { # utime + stime of a pid, in seconds
  awk -v t="$ticks" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$1/stat"
}
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

printf '%-7s %-6s %-14s %-12s %-14s %-12s %-10s %-12s %-14s %-10s %s\n' \
  nodes steps node_intervals cpu_s cpu_ms/node-iv cores@10s idle_rss peak_rss store_B/node-iv GiB/day sim_secs
for n in "${sizes[@]}"; do
  data="$work/data-$n"
  mkdir -p "$data"
  "$bin" --log-level warn collector --data-dir "$data" --otlp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 \
    >"$work/out-$n" 2>"$work/err-$n" &
  collector_pid=$!
  for _ in $(seq 100); do grep -q '^listening' "$work/out-$n" 2>/dev/null && break; sleep 0.1; done
  otlp=$(sed -n 's/^listening .*otlp=\([^ ]*\).*/\1/p' "$work/out-$n")
  [[ -n "$otlp" ]] || { echo "collector did not start:" >&2; cat "$work/err-$n" >&2; exit 1; }
  sleep 1
  cpu0=$(cpu_secs "$collector_pid")
  idle_rss=$(rss_kib "$collector_pid")
  store0=$(du -sb "$data" | cut -f1)
  line=$("$sim" --collector "http://$otlp" --nodes "$n" --steps "$STEPS" --interval-secs "$INTERVAL_SECS" \
    --signals-per-mille "$SIGNALS_PER_MILLE" --log-lines "$LOG_LINES" --in-flight "$IN_FLIGHT")
  echo "$line" >&2
  cpu1=$(cpu_secs "$collector_pid")
  hwm=$(hwm_kib "$collector_pid")
  store1=$(du -sb "$data" | cut -f1)
  kill "$collector_pid"; wait "$collector_pid" 2>/dev/null || true; collector_pid=""
  store2=$(du -sb "$data" | cut -f1)   # after a clean stop (the store is compacted on close, if at all)
  sim_secs=$(sed -n 's/.* secs=\([0-9.]*\).*/\1/p' <<<"$line")
  awk -v n="$n" -v s="$STEPS" -v c0="$cpu0" -v c1="$cpu1" -v iv="$INTERVAL_SECS" -v idle="$idle_rss" \
      -v hwm="$hwm" -v b0="$store0" -v b1="$store1" -v b2="$store2" -v ss="$sim_secs" 'BEGIN {
    ni = n * s; cpu = c1 - c0; per = cpu / ni
    grow = (b2 > b1 ? b2 : b1) - b0
    printf "%-7d %-6d %-14d %-12.2f %-14.4f %-12.3f %-10s %-12s %-14.1f %-10.2f %s\n",
      n, s, ni, cpu, per * 1000, per * n / iv, sprintf("%.0fMiB", idle / 1024), sprintf("%.0fMiB", hwm / 1024),
      grow / ni, grow / ni * n * 86400 / iv / 1073741824, ss
  }'
done
