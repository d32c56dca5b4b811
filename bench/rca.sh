#!/usr/bin/env bash
# Root-cause accuracy on the recorded fault cases: builds release, replays every case in
# ../shared/data/rca (or $RCA_DATA), scores with ../shared/tools/rca_score and prints the result
# next to the published references, plus the replay time.
#
#   bench/rca.sh            # all cases
#   bench/rca.sh sockshop   # one system
#   KEEP=dir bench/rca.sh   # keep the result files in dir
set -euo pipefail
cd "$(dirname "$0")/.."
data=${RCA_DATA:-../shared/data/rca}
score=${RCA_SCORE:-../shared/tools/rca_score}
system=${1:-}
if [ ! -d "$data" ]; then
  echo "no recorded cases at $data (set RCA_DATA)" >&2
  exit 2
fi
cargo build --release --quiet
bin=./target/release/daytwo
out=${KEEP:-$(mktemp -d)}
mkdir -p "$out"
cases=0
slowest=0
slowest_case=
start=$(date +%s.%N)
for d in "$data"/${system:-*}/*/; do
  [ -f "$d/telemetry.otlp.jsonl.gz" ] || continue
  c=$(basename "$d")
  t0=$(date +%s.%N)
  DAYTWO_LOG=${DAYTWO_LOG:-warn} "$bin" replay "$d/telemetry.otlp.jsonl.gz" --format json > "$out/$c.json"
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  if (( $(echo "$t > $slowest" | bc) )); then slowest=$t; slowest_case=$c; fi
  cases=$((cases + 1))
done
total=$(echo "$(date +%s.%N) - $start" | bc)
echo "== rca_score"
"$score" "${data}${system:+/$system}" "$out" --json "$out/score.json" | tee "$out/score.txt"
# Exact counts (the scorer rounds to two decimals: 53/56 prints as 0.95) and every case whose
# root cause is not ranked first, to see where the ranker stands.
python3 - "$out/score.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cases = d["cases"].items() if isinstance(d["cases"], dict) else d["cases"]
by_sys = {}
for name, c in cases:
    by_sys.setdefault(c["system"], []).append((name, c))
print("== exact")
for system, cs in sorted(by_sys.items()):
    hit = lambda k: sum(1 for _, c in cs if c.get("rank") and c["rank"] <= k)
    print(f"{system:16} AC@1 {hit(1)}/{len(cs)}  AC@3 {hit(3)}/{len(cs)}  AC@5 {hit(5)}/{len(cs)}")
print("== not at rank 1 (case fault truth rank: top 3)")
for system, cs in sorted(by_sys.items()):
    for name, c in cs:
        if c.get("rank") != 1:
            print(f"{name} {c.get('fault')} {c.get('truth')} {c.get('rank') or '-'}: {' '.join(c.get('top5', [])[:3])}")
PY
# Halves by case number (odd / even): a ranker change that helps one half and hurts the other
# is fitted to cases, not general.
for half in odd even; do
  hdir=$(mktemp -d)
  for d in "$data"/${system:-*}/*/; do
    [ -f "$d/truth.json" ] || continue
    c=$(basename "$d")
    n=$((10#$(echo "$c" | grep -o '[0-9]*$')))
    if { [ "$half" = odd ] && (( n % 2 == 1 )); } || { [ "$half" = even ] && (( n % 2 == 0 )); }; then
      mkdir -p "$hdir/$(basename "$(dirname "$d")")/$c"
      cp "$d/truth.json" "$hdir/$(basename "$(dirname "$d")")/$c/"
    fi
  done
  echo "== $half half"
  "$score" "$hdir" "$out" | grep -E '^system=[a-z]+ ' | grep -v fault= || true
  rm -rf "$hdir"
done
echo
echo "== references (same data; see ../shared/data/rca/README.md)"
echo "Sock Shop        BARO Avg@5 0.98 (told the time within 60 s); NSigma z-score with true time 0.99"
echo "Online Boutique  Nezha AC@1 0.64 (metrics+traces, w/o logs); z-score baseline with true time AC@1 0.27 AC@3 0.57"
echo
printf 'replay: %d cases in %.1f s (mean %.2f s, slowest %.2f s: %s)\n' \
  "$cases" "$total" "$(echo "$total / $cases" | bc -l)" "$slowest" "$slowest_case"
[ -n "${KEEP:-}" ] || echo "results: $out"
