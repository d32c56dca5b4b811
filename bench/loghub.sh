#!/usr/bin/env bash
# Scores `daytwo logs templates` (the agent's online template miner, default configuration)
# against the Loghub 2k ground truth and prints the result next to published reference figures.
# Usage: bench/loghub.sh [DATA_DIR]   (default ../shared/data/loghub, relative to the repo root)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/loghub}"
scorer="${LOGHUB_SCORE:-../shared/tools/loghub_score}"
cargo build --release --quiet
out="$("$scorer" "$data" -- ./target/release/daytwo logs templates)"
echo "$out"
echo
echo "reference (averages over the same 10 systems, Loghub 2k corrected):"
echo "  Drain (per-system settings)  GA=0.86            PA=0.34"
echo "  Brain (per-system settings)  GA=0.98 FGA=0.93   PA=0.33"
echo "  plain digit mask             GA=0.89"
echo "  daytwo targets               GA>=0.95 FGA>=0.90 PA>=0.45"
echo
echo "daytwo: $(tail -n 1 <<<"$out")"
