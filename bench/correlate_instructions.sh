#!/usr/bin/env bash
# Instructions per signal of the collector's brain, by phase, counted by valgrind's callgrind
# in one measured pass of the `throughput_cpu/rules_joins_topology_100k` criterion bench
# (collector/benches/correlate.rs): topology learning, holding for joins, rule matching,
# the correlator's decision, rendering the texts the pipeline keeps, and tracking incidents.
#
# The count is deterministic: the same build on the same input gives the same figure, where
# bench/correlate_throughput.sh (time) moves by 10-20 % from run to run on a shared virtual
# machine. Use it to compare two builds; report speed with correlate_throughput.sh. It
# counts instructions, not cycles: cache misses and branch mispredictions do not show.
#
#   bench/correlate_instructions.sh            # this checkout
#   bench/correlate_instructions.sh BIN...     # bench binaries built earlier (A/B)
# Needs valgrind (Debian `valgrind`); about 90 s per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "error: valgrind not found (apt-get install valgrind)" >&2; exit 1; }
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  bin=$(cargo bench -p daytwo-collector --bench correlate --no-run 2>&1 |
    sed -n 's/.*Executable benches\/correlate.rs (\(.*\))/\1/p' | tail -1)
  [ -n "$bin" ] || { echo "error: could not build the correlate bench" >&2; exit 1; }
  bins=("$bin")
fi
phases='Topology::observe|Held::insert|match_rules|decide_in|render_kept|correlate::track'
for bin in "${bins[@]}"; do
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" \
    --bench 'throughput_cpu/rules_joins' --profile-time 1 >/dev/null 2>&1
  # Calls made 100,000 times are the measured pass's (one per input signal); the last of
  # each is the measured one (criterion warms up first).
  callgrind_annotate --inclusive=yes --tree=caller "$out" 2>/dev/null |
    grep -E "=> .*($phases) \(100,000x\)" |
    awk -v bin="$bin" -v phases="$phases" '
      { n = $1; gsub(",", "", n)
        split(phases, p, "|")
        for (i in p) if (index($0, p[i] " (")) v[p[i]] = n }
      END {
        printf "%s\n", bin
        total = 0
        for (i = 1; i <= 6; i++) { split(phases, p, "|"); k = p[i]; total += v[k]
          printf "  %-20s %8.0f instructions/signal\n", k, v[k] / 100000 }
        printf "  %-20s %8.0f instructions/signal\n", "total", total / 100000 }'
  rm -f "$out"
done
