#!/usr/bin/env bash
# Correlation plus rules (with joins) on one core: signals/s of the collector's brain (topology,
# signals held for joins, the shipped rules matched as trigger and as late cause, the
# correlator) over 100,000 fixed-seed signals with more than 10,000 entities in the topology,
# next to the correlator alone on the same signals, measured in the same run.
#
#   bench/correlate_throughput.sh        # goal: >= 100,000 signals/s for the whole brain
set -euo pipefail
cd "$(dirname "$0")/.."
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
out=$(mktemp)
"${pin[@]}" cargo bench -q -p daytwo-collector --bench correlate -- throughput 2>&1 | tee "$out" >&2
# criterion prints `thrpt:  [low mid high]` after each bench id; take the middle value.
rate() {
  awk -v id="$1" '
    index($0, id) { found = 1 }
    found && /thrpt:/ {
      gsub(/[\[\]]/, ""); v = $4; u = $5
      m = (u ~ /^Melem/) ? 1e6 : (u ~ /^Kelem/) ? 1e3 : 1
      printf "%.0f\n", v * m; exit
    }' "$out"
}
brain=$(rate "throughput/rules_joins_topology_100k")
alone=$(rate "throughput/correlator_only")
rm -f "$out"
echo
printf 'brain (topology + held joins + shipped rules + correlator): %9s signals/s on one core (goal >= 100000)\n' "$brain"
printf 'reference, correlator alone on the same signals:           %9s signals/s\n' "$alone"
