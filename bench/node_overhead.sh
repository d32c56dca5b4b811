#!/usr/bin/env bash
# Node-metrics overhead, whole binary. Creates 100 idle cgroups (in every cgroup v1 controller
# hierarchy the agent reads, or in the v2 hierarchy), then runs for DURATION seconds (default 60),
# side by side in the same run:
#   * `daytwo agent` (release build) at --metrics-interval-secs 10, shipping to a `daytwo
#     collector` on loopback, its /metrics scraped with curl every 10 s;
#   * Prometheus' node_exporter (Debian prometheus-node-exporter, default collectors), scraped
#     with curl every 10 s.
# Prints for each: CPU-seconds over the window and as % of one core, peak RSS (VmHWM), and the
# number of series one scrape exposes. Goal for the agent: < 1 % of one core, < 40 MiB RSS,
# less CPU than node_exporter.
# Usage (root): bench/node_overhead.sh [DURATION_SECS] [WORKDIR]; AGENT_ARGS adds agent flags
# (e.g. AGENT_ARGS=--no-node-metrics for the agent's baseline without node sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
WORK=${2:-$(mktemp -d /tmp/daytwo-node-bench.XXXXXX)}
mkdir -p "$WORK"
[ "$(id -u)" = 0 ] || { echo "needs root (creates cgroups)" >&2; exit 1; }
command -v prometheus-node-exporter >/dev/null || { echo "apt-get install prometheus-node-exporter" >&2; exit 1; }
cargo build --release --quiet --bin daytwo
BIN=$PWD/target/release/daytwo
CG=/sys/fs/cgroup
NAME="daytwo-bench-$$"
PIDS=()
DIRS=()
ACCT=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${DIRS[@]}"; do
    for i in $(seq 1 100); do rmdir "$d/idle-$i" 2>/dev/null || true; done
    rmdir "$d" 2>/dev/null || true
  done
  for d in "${ACCT[@]}"; do
    # Processes are gone; the accounting cgroup can go too.
    rmdir "$d" 2>/dev/null || true
  done
}
trap cleanup EXIT

# 100 idle cgroups under one parent, in each hierarchy.
if [ -f "$CG/cgroup.controllers" ]; then
  HIER=("$CG")
else
  HIER=()
  for c in memory cpu cpuacct pids; do [ -f "$CG/$c/cgroup.procs" ] && HIER+=("$CG/$c"); done
fi
for h in "${HIER[@]}"; do
  mkdir "$h/$NAME"
  DIRS+=("$h/$NAME")
  for i in $(seq 1 100); do mkdir "$h/$NAME/idle-$i"; done
done
echo "cgroups: 100 idle under /$NAME in ${HIER[*]}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

OTLP=127.0.0.1:$(free_port)
CHTTP=127.0.0.1:$(free_port)
AHTTP=127.0.0.1:$(free_port)
NEXP=127.0.0.1:$(free_port)

"$BIN" --log-level warn collector --data-dir "$WORK/collector" --http-addr "$CHTTP" --otlp-addr "$OTLP" \
  >"$WORK/collector.out" 2>"$WORK/collector.err" &
PIDS+=($!)
"$BIN" --log-level warn agent --data-dir "$WORK/agent" --http-addr "$AHTTP" --collector "http://$OTLP" \
  --metrics-interval-secs 10 --no-logs ${AGENT_ARGS:-} >"$WORK/agent.out" 2>"$WORK/agent.err" &
APID=$!
PIDS+=($APID)
prometheus-node-exporter --web.listen-address="$NEXP" >"$WORK/node_exporter.out" 2>&1 &
NPID=$!
PIDS+=($NPID)

for _ in $(seq 1 100); do
  curl -sf "http://$AHTTP/metrics" >/dev/null && curl -sf "http://$NEXP/metrics" >/dev/null && break
  sleep 0.1
done
sleep 1

# CPU time with nanosecond resolution: each process is moved into a cgroup of its own and its
# cgroup's CPU counter is read (cpuacct.usage in v1, cpu.stat usage_usec in v2). /proc/PID/stat
# counts in 10 ms ticks, too coarse for a difference of a few ms per minute.
if [ -f "$CG/cgroup.controllers" ]; then ACCTROOT=$CG; else ACCTROOT=$CG/cpuacct; fi
acct_dir() { # pid name -> the process's own accounting cgroup
  local d="$ACCTROOT/$NAME-$2"
  mkdir "$d"
  echo "$1" >"$d/cgroup.procs"
  echo "$d"
}
cpu_ns() { # accounting cgroup -> CPU nanoseconds used so far
  if [ -f "$1/cpuacct.usage" ]; then cat "$1/cpuacct.usage"
  else awk '/^usage_usec/ {print $2 * 1000}' "$1/cpu.stat"; fi
}
ADIR=$(acct_dir $APID agent)
NDIR=$(acct_dir $NPID node_exporter)
ACCT+=("$ADIR" "$NDIR")
A0=$(cpu_ns "$ADIR")
N0=$(cpu_ns "$NDIR")
START=$(date +%s.%N)
SCRAPES=$((DURATION / 10))
for i in $(seq 1 "$SCRAPES"); do
  curl -sf "http://$AHTTP/metrics" >"$WORK/agent.metrics"
  curl -sf "http://$NEXP/metrics" >"$WORK/node_exporter.metrics"
  sleep 10
done
END=$(date +%s.%N)
A1=$(cpu_ns "$ADIR")
N1=$(cpu_ns "$NDIR")
AHWM=$(awk '/VmHWM/ {print $2}' /proc/$APID/status)
NHWM=$(awk '/VmHWM/ {print $2}' /proc/$NPID/status)

series() { grep -cv '^#' "$1"; }
ACG=$(grep -c "^daytwo_container_memory_usage_bytes{cgroup=\"/$NAME/idle-" "$WORK/agent.metrics" || true)
WALL=$(echo "$END - $START" | bc -l)
report() { # name ns0 ns1 hwm_kib metrics
  local cpu
  cpu=$(echo "($3 - $2) / 1000000000" | bc -l)
  printf "%-14s cpu=%7.3fs over %.0fs (%5.2f%% of one core)  peak_rss=%5.1f MiB  series=%d\n" \
    "$1" "$cpu" "$WALL" "$(echo "100 * $cpu / $WALL" | bc -l)" "$(echo "$4 / 1024" | bc -l)" "$(series "$5")"
}
report "daytwo agent" "$A0" "$A1" "$AHWM" "$WORK/agent.metrics"
report "node_exporter" "$N0" "$N1" "$NHWM" "$WORK/node_exporter.metrics"
echo "daytwo agent exposes the 100 idle cgroups: $ACG of 100 (daytwo_container_memory_usage_bytes); tracked cgroups: $(grep '^daytwo_agent_node_cgroups ' "$WORK/agent.metrics" | cut -d' ' -f2)"
echo "work dir: $WORK"
