#!/usr/bin/env bash
# Times wsclose on any captures (pcap or pcapng, for example from another generator) against the
# header-walk floor (examples/floor.rs) and, where installed, tshark; see BENCHMARKS.md.
#
#   bench/compare.sh SMALL.pcap LARGE.pcap    # files in the order given; RSS(last) - RSS(first) is printed
#   RUNS=7 bench/compare.sh FILE...           # timed runs per measurement (5 by default)
#   NO_TSHARK=1 bench/compare.sh FILE...      # TSHARK_RUNS=N: tshark runs per setting (1)
#
# For each file, in the same runs (interleaved): the floor, wsclose on one core (`--threads 1`) and
# on all cores; best wall and CPU time (median in parentheses), MB/s and packets/s, peak RSS, and
# whether the two reports are the same bytes. Each file is put in the page cache in one known state
# first (bench/recache.py). wsclose's one-core report of each file is left in
# $BENCH_DIR/compare-N.json (N: the file's position), to check against the other generator's truth.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# == 0)); then
    sed -n '2,13p' "$0" >&2
    exit 2
fi

BENCH_DIR=${BENCH_DIR:-target/bench}
RUNS=${RUNS:-5}
mkdir -p "$BENCH_DIR"
# shellcheck source=bench/lib.sh
source bench/lib.sh

cargo build --release --bin wsclose --example floor >&2
WSCLOSE=target/release/wsclose
FLOOR=target/release/examples/floor
CORES=$(nproc)

ratio() { echo "($1) / ($2)" | bc -l; }
declare -a RSS1
i=0
for pcap in "$@"; do
    i=$((i + 1))
    for l in floor one many; do rm -f "$BENCH_DIR/compare-$i-$l.runs"; done
    python3 bench/recache.py "$pcap"
    for _ in $(seq "$RUNS"); do
        run "compare-$i-floor" "$FLOOR" "$pcap"
        run "compare-$i-one" "$WSCLOSE" analyze --threads 1 --format json "$pcap"
        run "compare-$i-many" "$WSCLOSE" analyze --threads "$CORES" --format json "$pcap"
    done
    "$WSCLOSE" analyze --threads 1 --format json "$pcap" >"$BENCH_DIR/compare-$i.json"
    "$WSCLOSE" analyze --threads "$CORES" --format json "$pcap" >"$BENCH_DIR/compare-$i-many.json"
    same=$(cmp -s "$BENCH_DIR/compare-$i.json" "$BENCH_DIR/compare-$i-many.json" && echo identical || echo DIFFERENT)
    floor_out=$("$FLOOR" "$pcap")
    packets=$(sed -E 's/.*packets=([0-9]+).*/\1/' <<<"$floor_out")
    bytes=$(stat -L -c %s "$pcap")
    conns=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['connections']))" "$BENCH_DIR/compare-$i.json")
    one=$(best "compare-$i-one")
    fl=$(best "compare-$i-floor")
    many=$(best "compare-$i-many")
    RSS1[i]=$(maxrss "compare-$i-one")
    echo
    echo "$pcap: $bytes bytes, $packets packets, $conns connections in wsclose's report; best of $RUNS (median)"
    printf "    floor:              wall %.3f s (%.3f), CPU %.3f s, %.0f MB/s, peak RSS %.1f MiB\n" \
        "$fl" "$(median "compare-$i-floor")" "$(best "compare-$i-floor" 3)" "$(ratio "$bytes / 1000000" "$fl")" \
        "$(ratio "$(maxrss "compare-$i-floor")" 1024)"
    printf "    wsclose, one core:  wall %.3f s (%.3f), CPU %.3f s, %.0f MB/s, %.0f packets/s, peak RSS %.1f MiB; wsclose/floor %.2f× wall (%.2f× median), %.2f× CPU\n" \
        "$one" "$(median "compare-$i-one")" "$(best "compare-$i-one" 3)" "$(ratio "$bytes / 1000000" "$one")" \
        "$(ratio "$packets" "$one")" "$(ratio "${RSS1[i]}" 1024)" "$(ratio "$one" "$fl")" \
        "$(ratio "$(median "compare-$i-one")" "$(median "compare-$i-floor")")" \
        "$(ratio "$(best "compare-$i-one" 3)" "$(best "compare-$i-floor" 3)")"
    printf "    wsclose, %d cores:   wall %.3f s (%.3f), CPU %.3f s, %.2f× faster than one core, peak RSS %.1f MiB; report %s\n" \
        "$CORES" "$many" "$(median "compare-$i-many")" "$(best "compare-$i-many" 3)" "$(ratio "$one" "$many")" \
        "$(ratio "$(maxrss "compare-$i-many")" 1024)" "$same"
    if [[ -z "${NO_TSHARK:-}" ]] && command -v tshark >/dev/null; then
        for opts in "" "-o tcp.reassemble_out_of_order:TRUE"; do
            # shellcheck disable=SC2086
            read -r bw _ _ lines <<<"$(tshark_run "$pcap" "${TSHARK_RUNS:-1}" "compare-$i" $opts)"
            printf "    tshark %-36s wall %.1f s, %.0f× wsclose on one core, %d close-frame lines\n" \
                "${opts:-(defaults)}:" "$bw" "$(ratio "$bw" "$one")" "$lines"
        done
    fi
done
if (($# > 1)); then
    printf "\nwsclose peak RSS, one core: %s − %s = %.1f MiB\n" "$(basename "${!#}")" "$(basename "$1")" \
        "$(ratio "${RSS1[$#]} - ${RSS1[1]}" 1024)"
fi
