#!/usr/bin/env bash
# How wsclose's time and memory grow with the number of connections in a capture (not its size):
# captures of N short connections (100 at a time), for each N in $COUNTS, then wsclose's wall time,
# CPU time, peak RSS and its per-connection RSS. A linear analyser keeps the time per connection flat.
#
#   bench/scaling.sh                       # COUNTS="2500 5000 10000 20000"
#   COUNTS="5000 20000 80000" bench/scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-target/bench}
COUNTS=${COUNTS:-"2500 5000 10000 20000"}
mkdir -p "$BENCH_DIR"
cargo build --release --bin wsclose --example gen_capture >&2

echo "| connections | pcap bytes | packets | wsclose wall s | wsclose CPU s | µs CPU per connection | peak RSS | RSS per connection |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $COUNTS; do
    pcap="$BENCH_DIR/scaling-$n.pcap"
    if [[ ! -s "$pcap" ]]; then
        target/release/examples/gen_capture --out "$pcap" --truth "$pcap.truth.json" --connections "$n" --seed 3 \
            --concurrency 100 --conn-bytes 100 2000 2>/dev/null
    fi
    python3 bench/recache.py "$pcap"
    read -r wall cpu < <(python3 bench/measure.py --out "$BENCH_DIR/scaling-report.json" /usr/bin/time -f '%M' -o "$BENCH_DIR/scaling.rss" \
        target/release/wsclose analyze --threads 1 --format json "$pcap")
    rss=$(cat "$BENCH_DIR/scaling.rss")
    packets=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['capture']['packets'])" "$BENCH_DIR/scaling-report.json")
    printf "| %d | %d | %d | %.2f | %.2f | %.0f | %.1f MiB | %.1f KiB |\n" "$n" "$(stat -c %s "$pcap")" "$packets" \
        "$wall" "$cpu" "$(echo "$cpu * 1000000 / $n" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(echo "$rss / $n" | bc -l)"
done
