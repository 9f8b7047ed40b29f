#!/usr/bin/env bash
# Long captures of short connections, at a fixed number open at once: the shape on which memory
# must follow the connections open at once and not the file (BENCHMARKS.md, "Session 9").
#
#   bench/long.sh                  # 100 MiB and 1 GiB, 300 open at once, 500 B-5 KB of WebSocket each
#   NO_TSHARK=1 RUNS=3 bench/long.sh
#
# Two shapes: 1,000 connections per client address (55 clients at 1 GiB), then every connection from
# an address of its own (`--ports-per-client 1`, as clients spread over the Internet are; tshark is
# not run again on those).
#
# examples/gen_capture writes both captures once (cached in $BENCH_DIR/long-*.pcap): about 5,400 and
# 54,000 connections, 2.7 hours of capture time at 1 GiB. An eighth of the connections are left
# open and go quiet (they sleep on disk after two minutes); the others end every way the generator
# knows. Then: exactness against each truth on one and on all cores (bench/compare_truth.py), and
# bench/compare.sh on both files in one run (floor, wsclose on one and on all cores, tshark, and
# RSS(1 GiB) − RSS(100 MiB)).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-target/bench}
mkdir -p "$BENCH_DIR"
cargo build --release --bin wsclose --example gen_capture >&2
GEN=target/release/examples/gen_capture

run_shape() {
    local prefix=$1 per_client=$2
    local files=()
    # name, target bytes, seed
    for spec in "100MiB 104857600 5" "1GiB 1073741824 5"; do
        read -r name bytes seed <<<"$spec"
        pcap="$BENCH_DIR/$prefix-$name.pcap"
        if [[ ! -s "$pcap" || ! -s "$pcap.truth.json" ]]; then
            echo "generating $pcap" >&2
            "$GEN" --out "$pcap" --truth "$pcap.truth.json" --connections 1 --seed "$seed" \
                --target-bytes "$bytes" --concurrency 300 --conn-bytes 500 5000 \
                --ports-per-client "$per_client" >&2
        fi
        for threads in 1 "$(nproc)"; do
            target/release/wsclose analyze --threads "$threads" --format json "$pcap" >"$BENCH_DIR/$prefix-$name.json"
            printf "%s, %s thread(s): " "$pcap" "$threads"
            python3 bench/compare_truth.py "$BENCH_DIR/$prefix-$name.json" "$pcap.truth.json" | tail -1
        done
        files+=("$pcap")
    done
    bench/compare.sh "${files[@]}"
}

run_shape long 1000
NO_TSHARK=1 run_shape long-distinct 1
