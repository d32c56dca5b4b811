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
# On a virtual machine whose neighbours share the physical cores, the same binary's figure
# moves by 10-20 % from run to run (the CPU time of a thread also grows when a sibling
# hyper-thread or the shared cache is busy). The bench therefore runs RUNS times (default 3)
# and prints every run and the median.
#
#   bench/correlate_throughput.sh        # goal: >= 100,000 signals/s for the whole brain
#   RUNS=5 bench/correlate_throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
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
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
for r in $(seq "$runs"); do
  "${pin[@]}" cargo bench -q -p daytwo-collector --bench correlate -- throughput 2>&1 | tee "$out" >&2
  rows+=("$(rate "throughput/rules_joins_topology_100k") $(rate "throughput_cpu/rules_joins_topology_100k") $(rate "throughput/correlator_only") $(rate "throughput_cpu/correlator_only")")
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo
printf '%-8s %-62s %12s %14s\n' "" "" "per wall s" "per CPU s"
for r in $(seq "$runs"); do
  read -r bw bc aw ac <<<"${rows[$((r - 1))]}"
  printf 'run %-4s %-62s %12s %14s\n' "$r" "brain (topology + held joins + shipped rules + correlator):" "$bw" "$bc"
  printf '%-8s %-62s %12s %14s\n' "" "reference, correlator alone on the same signals:" "$aw" "$ac"
done
col() { for row in "${rows[@]}"; do echo "$row" | cut -d' ' -f"$1"; done | median; }
printf '%-8s %-62s %12s %14s\n' "median" "brain:" "$(col 1)" "$(col 2)"
printf '%-8s %-62s %12s %14s\n' "" "reference, correlator alone:" "$(col 3)" "$(col 4)"
printf 'signals/s on one core (goal >= 100000 for the brain); %s runs; load average before %s, after %s\n' \
  "$runs" "$load_before" "$load_after"
