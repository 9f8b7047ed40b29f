#!/usr/bin/env bash
# The independent generator's captures at scale: many short connections (about 11 KB and 44 packets
# each, where examples/gen_capture writes about 190 KB and 264), the shape on which wsclose's cost
# per connection dominates (BENCHMARKS.md, "Many short connections").
#
#   bench/crosscheck/scale.sh                 # 2,000 and 20,000 scripts (about 2,100 and 21,000 connections)
#   CONNS="2000 20000" SEED=77 CAPTURE=x2_pcap_ns_sll2.pcap bench/crosscheck/scale.sh
#
# For each size: the capture (generated once, cached in $BENCH_DIR/xscale-N/; about a minute for
# 20,000), exactness against its truth on one and two threads (check.py), then bench/compare.sh on all
# sizes in one run: the floor, wsclose on one and on all cores, tshark, and RSS(largest) − RSS(smallest).
set -euo pipefail
cd "$(dirname "$0")/../.."

BENCH_DIR=${BENCH_DIR:-target/bench}
CONNS=${CONNS:-"2000 20000"}
SEED=${SEED:-77}
CAPTURE=${CAPTURE:-x2_pcap_ns_sll2.pcap}

cargo build --release --bin wsclose >&2
files=()
for n in $CONNS; do
    dir="$BENCH_DIR/xscale-$SEED-$n"
    if [[ ! -s "$dir/$CAPTURE" || ! -s "$dir/$CAPTURE.truth.json" ]]; then
        python3 bench/crosscheck/gen.py --out "$dir" --seed "$SEED" --conns "$n" --only "$CAPTURE" >&2
    fi
    WSCLOSE=target/release/wsclose python3 bench/crosscheck/check.py "$dir" | tail -3
    files+=("$dir/$CAPTURE")
done
bench/compare.sh "${files[@]}"
