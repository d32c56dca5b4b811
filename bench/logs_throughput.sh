#!/usr/bin/env bash
# Log pipeline throughput, whole binary. Writes SIZE bytes (default 1 GiB) of CRI lines with
# ../shared/tools/gen_cri_logs, then prints, next to `wc -l` on the same file in the same run:
#   (a) tail + CRI parse + partial and multi-line joining + redaction + template ids +
#       detectors + OTLP encoding, no disk queue, no network (`daytwo agent --log-bench`):
#       lines per CPU-second (goal >= 1,000,000), peak RSS (goal < 64 MiB);
#   (b) the whole path: the agent ships to `daytwo collector` on loopback (uncompressed:
#       `--log-compression auto` skips gzip on loopback; BENCH_AGENT_FLAGS passes extra agent
#       flags, e.g. "--log-compression gzip"): lines per second
#       (goal >= 450,000) until every line is read and every record made of them is sent (the
#       last record of each stream waits for the multi-line timeout; it is checked, not timed:
#       records_sent must equal (a)'s records), CPU-seconds and peak RSS of the agent,
#       CPU-seconds of the collector.
# Usage: bench/logs_throughput.sh [SIZE_BYTES] [WORKDIR]   (env DAYTWO_BIN: the binary to run)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1073741824}
WORK=${2:-$(mktemp -d /tmp/daytwo-logs-bench.XXXXXX)}
GEN=../shared/tools/gen_cri_logs
# DAYTWO_BIN runs another build (e.g. an older commit's) on the same file, for a comparison.
if [ -n "${DAYTWO_BIN:-}" ]; then
  BIN=$DAYTWO_BIN
else
  cargo build --release --quiet --bin daytwo
  BIN=target/release/daytwo
fi
mkdir -p "$WORK/pods/bench_gen-0_uid-1/app"
LOG="$WORK/pods/bench_gen-0_uid-1/app/0.log"
if [ ! -s "$LOG" ] || [ "$(stat -c %s "$LOG")" -lt "$SIZE" ]; then
  python3 "$GEN" "$LOG" "$SIZE" >/dev/null
fi
echo "file: $LOG ($(stat -c %s "$LOG") bytes)"

# Reference: wc -l on the same file, same run (page cache warm after the first read).
/usr/bin/time -f "%e %U %S %M" -o "$WORK/wc.time" wc -l "$LOG" >"$WORK/wc.out"
LINES=$(cut -d' ' -f1 "$WORK/wc.out")
read -r WC_E WC_U WC_S WC_M <"$WORK/wc.time"
echo "wc -l:      lines=$LINES wall=${WC_E}s cpu=$(echo "$WC_U + $WC_S" | bc)s lines/cpu-s=$(echo "$LINES / ($WC_U + $WC_S + 0.001)" | bc)"

# (a) no shipping.
/usr/bin/time -f "%e %U %S %M" -o "$WORK/a.time" \
  "$BIN" --log-level warn agent --no-kmsg --data-dir "$WORK/a-data" --http-addr 127.0.0.1:0 \
  --collector http://127.0.0.1:9 --log-path "$WORK/pods/*/*/*.log" --log-bench >"$WORK/a.out"
read -r A_E A_U A_S A_M < <(tail -1 "$WORK/a.time")
A_LINES=$(grep -o 'lines=[0-9]*' "$WORK/a.out" | cut -d= -f2)
A_CPU=$(echo "$A_U + $A_S" | bc)
echo "(a) pipeline: lines=$A_LINES wall=${A_E}s cpu=${A_CPU}s lines/cpu-s=$(echo "$A_LINES / $A_CPU" | bc) peak_rss=$((A_M / 1024))MiB  [$(grep logs-bench "$WORK/a.out")]"

# (b) shipping to a collector on loopback.
# The outputs of an earlier run go first: the address of its collector must not be read
# before this run's has written its own.
rm -rf "$WORK/b-data" "$WORK/c-data" "$WORK/c.out" "$WORK/b.out"
"$BIN" --log-level warn collector --data-dir "$WORK/c-data" --http-addr 127.0.0.1:0 \
  --otlp-addr 127.0.0.1:0 >"$WORK/c.out" 2>"$WORK/c.err" &
CPID=$!
trap 'kill $CPID 2>/dev/null || true; [ -n "${APID:-}" ] && kill $APID 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$WORK/c.out" && break; sleep 0.1; done
OTLP=$(grep -o 'otlp=[^ ]*' "$WORK/c.out" | cut -d= -f2)
START=$(date +%s.%N)
/usr/bin/time -f "%e %U %S %M" -o "$WORK/b.time" \
  "$BIN" --log-level warn agent --no-kmsg --data-dir "$WORK/b-data" --http-addr 127.0.0.1:0 \
  --collector "http://$OTLP" --log-path "$WORK/pods/*/*/*.log" ${BENCH_AGENT_FLAGS:-} \
  >"$WORK/b.out" 2>"$WORK/b.err" &
APID=$!
for _ in $(seq 100); do grep -q listening "$WORK/b.out" && break; sleep 0.1; done
AHTTP=$(grep -o 'http=[^ ]*' "$WORK/b.out" | cut -d= -f2)
SENT=0
while :; do
  # One scrape per check: the monitoring shares the 2 cores with what it measures.
  read -r READ RECV SENT < <(curl -s "http://$AHTTP/metrics" | awk '
    /^daytwo_agent_logs_lines_received_total /{l=$2}
    /^daytwo_agent_logs_records_received_total /{r=$2}
    /^daytwo_agent_logs_records_sent_total /{s=$2}
    END{print l+0, r+0, s+0}')
  # Every line read and every record made from them shipped. The last record of each stream
  # is still held by multi-line joining until --log-multiline-timeout (it may continue): a
  # latency, not throughput, so it is waited for below, outside the timing.
  if [ "$READ" = "$LINES" ] && [ "$SENT" = "$RECV" ]; then break; fi
  sleep 0.2
done
END=$(date +%s.%N)
A_RECORDS=$(grep -o 'records=[0-9]*' "$WORK/a.out" | cut -d= -f2)
for _ in $(seq 100); do
  SENT=$(curl -s "http://$AHTTP/metrics" | awk '/^daytwo_agent_logs_records_sent_total /{print $2}')
  [ "$SENT" = "$A_RECORDS" ] && break
  sleep 0.1
done
if [ "$SENT" = "$A_RECORDS" ]; then SAME="same as (a)"; else SAME="NOT (a)'s $A_RECORDS"; fi
# The collector's CPU so far (utime + stime, clock ticks), read before it is stopped.
C_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print ($12 + $13) / hz}' "/proc/$CPID/stat")
# Stop the agent itself (APID is /usr/bin/time, its parent), so time reports its usage.
kill -TERM "$(pgrep -P "$APID")"; wait "$APID" || true
read -r B_E B_U B_S B_M < <(tail -1 "$WORK/b.time")
B_CPU=$(echo "$B_U + $B_S" | bc)
WALL=$(echo "$END - $START" | bc)
echo "(b) shipped:  lines=$LINES records_sent=$SENT ($SAME) wall=${WALL}s lines/s=$(echo "$LINES / $WALL" | bc) agent_cpu=${B_CPU}s peak_rss=$((B_M / 1024))MiB collector_cpu=${C_CPU}s"
