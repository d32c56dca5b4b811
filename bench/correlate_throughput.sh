#!/usr/bin/env bash
# Correlation plus rules (with joins) on one core: signals/s of the collector's brain (topology,
# signals held for joins, the shipped rules matched as trigger and as late cause, the
# correlator) over 100,000 fixed-seed signals with more than 10,000 entities in the topology,
# next to the correlator alone on the same signals, measured in the same run.
#
# Each figure is given twice: per wall-clock second (criterion's `throughput/*`) and per second
# of CPU time of the benchmarking thread (`throughput_cpu/*`). On a machine shared with other
# work the wall-clock figure also counts the time spent waiting for the core; the CPU-time
# figure is what one core sustains. The load average before and after is printed with them.
#
#   bench/correlate_throughput.sh        # goal: >= 100,000 signals/s for the whole brain
set -euo pipefail
cd "$(dirname "$0")/.."
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
out=$(mktemp)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"${pin[@]}" cargo bench -q -p daytwo-collector --bench correlate -- throughput 2>&1 | tee "$out" >&2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# criterion prints `thrpt:  [low mid high]` after each bench id; take the middle value.
rate() {
  awk -v id="$1" '
    $0 ~ "^" id "( |$)" { found = 1 }
    found && /thrpt:/ {
      gsub(/[\[\]]/, ""); v = $4; u = $5
      m = (u ~ /^Melem/) ? 1e6 : (u ~ /^Kelem/) ? 1e3 : 1
      printf "%.0f\n", v * m; exit
    }' "$out"
}
brain=$(rate "throughput/rules_joins_topology_100k")
alone=$(rate "throughput/correlator_only")
brain_cpu=$(rate "throughput_cpu/rules_joins_topology_100k")
alone_cpu=$(rate "throughput_cpu/correlator_only")
rm -f "$out"
echo
printf '%-60s %12s %14s\n' "" "per wall s" "per CPU s"
printf '%-60s %12s %14s\n' "brain (topology + held joins + shipped rules + correlator):" "$brain" "$brain_cpu"
printf '%-60s %12s %14s\n' "reference, correlator alone on the same signals:" "$alone" "$alone_cpu"
printf 'signals/s on one core (goal >= 100000 for the brain); load average before %s, after %s\n' \
  "$load_before" "$load_after"
