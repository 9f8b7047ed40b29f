#!/usr/bin/env bash
# Throughput, memory and exactness of `wsclose analyze --format json` on generated captures of 100 MiB
# and 1 GiB, against the header-walk floor (examples/floor.rs) and tshark. See BENCHMARKS.md.
#
#   bench/run.sh            # everything (captures are generated once, cached in target/bench/)
#   RUNS=9 bench/run.sh     # more timed runs per measurement (best and median are reported)
#   NO_TSHARK=1 bench/run.sh   # TSHARK_RUNS=N: tshark runs per setting on 100 MiB (3);
#                              # TSHARK_1G_RUNS=N on 1 GiB (1; 0 skips it: ~1 min and ~3 GiB each)
#
# wsclose is timed on one core (`--threads 1`: the targets are per core) and on all cores (`--threads
# $(nproc)`: flows split across analyzers), with one file and with the 1 GiB capture cut into 4
# rotated files (editcap); the reports of both must be the same bytes.
# Wall and CPU time (user + system): bench/measure.py (perf_counter and getrusage, µs resolution).
# Peak RSS: GNU time's %M (`/usr/bin/time`, the `time` package; installed with apt when missing).
# On a shared machine the CPU time is the steadier figure.
# Page cache: each file's cached pages are dropped and read back in one pass (bench/recache.py) before
# it is timed, so the figures are for a warm cache (memory speed), not for the disk, and always for
# the same cache state: how the pages got into the cache changes the floor's time by up to 3x
# (see recache.py and BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR=${BENCH_DIR:-target/bench}
RUNS=${RUNS:-3}
mkdir -p "$BENCH_DIR"

# shellcheck source=bench/lib.sh
source bench/lib.sh

cargo build --release --bin wsclose --example gen_capture --example floor >&2
WSCLOSE=target/release/wsclose
GEN=target/release/examples/gen_capture
FLOOR=target/release/examples/floor

# name, target bytes, seed
SIZES=("100MiB 104857600 1" "1GiB 1073741824 2")

for spec in "${SIZES[@]}"; do
    read -r name bytes seed <<<"$spec"
    pcap="$BENCH_DIR/gen-$name.pcap"
    if [[ ! -s "$pcap" || ! -s "$pcap.truth.json" ]]; then
        echo "generating $pcap" >&2
        "$GEN" --out "$pcap" --truth "$pcap.truth.json" --connections 1 --seed "$seed" --target-bytes "$bytes" \
            2> >(tee "$pcap.gen.log" >&2)
    fi
done

declare -A SIZE PACKETS CONNS WS_T WS_C WS_RSS FL_T FL_C FL_RSS EXACT WS_TM FL_TM WS_CM FL_CM SAME_MC
for spec in "${SIZES[@]}"; do
    read -r name _ _ <<<"$spec"
    pcap="$BENCH_DIR/gen-$name.pcap"
    SIZE[$name]=$(stat -c %s "$pcap")
    python3 bench/recache.py "$pcap"
    rm -f "$BENCH_DIR/wsclose-$name.runs" "$BENCH_DIR/floor-$name.runs" "$BENCH_DIR/wsclose-mc-$name.runs"
    for _ in $(seq "$RUNS"); do
        run "floor-$name" "$FLOOR" "$pcap"
        run "wsclose-$name" "$WSCLOSE" analyze --threads 1 --format json "$pcap"
        run "wsclose-mc-$name" "$WSCLOSE" analyze --threads "$(nproc)" --format json "$pcap"
    done
    WS_T[$name]=$(best "wsclose-$name")
    WS_C[$name]=$(best "wsclose-$name" 3)
    WS_TM[$name]=$(median "wsclose-$name")
    WS_CM[$name]=$(median "wsclose-$name" 3)
    WS_RSS[$name]=$(maxrss "wsclose-$name")
    FL_T[$name]=$(best "floor-$name")
    FL_C[$name]=$(best "floor-$name" 3)
    FL_TM[$name]=$(median "floor-$name")
    FL_CM[$name]=$(median "floor-$name" 3)
    FL_RSS[$name]=$(maxrss "floor-$name")
    CONNS[$name]=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['connections']))" "$pcap.truth.json")
    PACKETS[$name]=$("$FLOOR" "$pcap" | sed -E 's/.*packets=([0-9]+).*/\1/')
    # Exactness: the report against the generator's truth.
    "$WSCLOSE" analyze --threads 1 --format json "$pcap" >"$BENCH_DIR/report-$name.json"
    "$WSCLOSE" analyze --threads "$(nproc)" --format json "$pcap" >"$BENCH_DIR/report-mc-$name.json"
    if cmp -s "$BENCH_DIR/report-$name.json" "$BENCH_DIR/report-mc-$name.json"; then
        SAME_MC[$name]="identical"
    else
        SAME_MC[$name]="DIFFERENT"
    fi
    if python3 bench/compare_truth.py "$BENCH_DIR/report-$name.json" "$pcap.truth.json" >"$BENCH_DIR/exact-$name.txt"; then
        EXACT[$name]="exact"
    else
        EXACT[$name]="NOT exact"
    fi
done

# Several files (a rotated capture): the 1 GiB capture cut into 4 files by editcap (from tshark's
# package), read one core vs all cores; the report must be the same bytes.
MULTI=""
if command -v editcap >/dev/null; then
    parts="$BENCH_DIR/rotated"
    if [[ ! -s "$parts.done" ]]; then
        rm -f "$parts"_*.pcap
        editcap -F pcap -c "$(( ${PACKETS[1GiB]} / 4 + 1 ))" "$BENCH_DIR/gen-1GiB.pcap" "$parts.pcap"
        ls "$parts"_*.pcap >"$parts.done"
    fi
    mapfile -t files <"$parts.done"
    python3 bench/recache.py "${files[@]}"
    rm -f "$BENCH_DIR/files-1.runs" "$BENCH_DIR/files-mc.runs"
    for _ in $(seq "$RUNS"); do
        run files-1 "$WSCLOSE" analyze --threads 1 --format json "${files[@]}"
        run files-mc "$WSCLOSE" analyze --threads "$(nproc)" --format json "${files[@]}"
    done
    "$WSCLOSE" analyze --threads 1 --format json "${files[@]}" >"$BENCH_DIR/files-1.json"
    "$WSCLOSE" analyze --threads "$(nproc)" --format json "${files[@]}" >"$BENCH_DIR/files-mc.json"
    same=$(cmp -s "$BENCH_DIR/files-1.json" "$BENCH_DIR/files-mc.json" && echo identical || echo DIFFERENT)
    MULTI=$(printf "%d files (the 1 GiB capture cut by editcap): one core %.3f s, %d cores %.3f s (%.2f× faster), CPU %.3f s vs %.3f s; report %s" \
        "${#files[@]}" "$(best files-1)" "$(nproc)" "$(best files-mc)" "$(echo "$(best files-1) / $(best files-mc)" | bc -l)" \
        "$(best files-1 3)" "$(best files-mc 3)" "$same")
fi

# pcapng: the same 1 GiB capture rewritten by editcap as pcapng (what dumpcap and Wireshark write by
# default), one core, against the pcap file in the same runs; the reports must list the same
# connections (the capture's file name differs).
PCAPNG=""
if command -v editcap >/dev/null; then
    ng="$BENCH_DIR/gen-1GiB.pcapng"
    if [[ ! -s "$ng" ]]; then
        editcap -F pcapng "$BENCH_DIR/gen-1GiB.pcap" "$ng"
    fi
    python3 bench/recache.py "$ng" "$BENCH_DIR/gen-1GiB.pcap"
    rm -f "$BENCH_DIR/ng-1.runs" "$BENCH_DIR/ngpcap-1.runs" "$BENCH_DIR/ngfloor-1.runs"
    for _ in $(seq "$RUNS"); do
        run ngfloor-1 "$FLOOR" "$ng"
        run ng-1 "$WSCLOSE" analyze --threads 1 --format json "$ng"
        run ngpcap-1 "$WSCLOSE" analyze --threads 1 --format json "$BENCH_DIR/gen-1GiB.pcap"
    done
    "$WSCLOSE" analyze --threads 1 --format json "$ng" >"$BENCH_DIR/ng-1.json"
    same=$(python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); print("the same connections" if a["connections"]==b["connections"] and a["summary"]==b["summary"] else "DIFFERENT connections")' \
        "$BENCH_DIR/ng-1.json" "$BENCH_DIR/report-1GiB.json")
    PCAPNG=$(printf "pcapng (the 1 GiB capture rewritten by editcap, %d bytes): one core %.3f s against %.3f s for the pcap file in the same runs (%.2f×); floor on the pcapng file %.3f s (wsclose/floor %.1f×); %s" \
        "$(stat -c %s "$ng")" "$(best ng-1)" "$(best ngpcap-1)" "$(echo "$(best ng-1) / $(best ngpcap-1)" | bc -l)" \
        "$(best ngfloor-1)" "$(echo "$(best ng-1) / $(best ngfloor-1)" | bc -l)" "$same")
fi

mb() { echo "$1 / 1000000" | bc -l; }
{
    echo "Best of $RUNS runs (median in parentheses), page cache as bench/recache.py leaves it; MB = 10^6 bytes of pcap file;"
    echo "wall = process start to exit; CPU = user + system; MB/s and packets/s from the best wall time."
    echo
    echo "| file | bytes | packets | WS connections | wsclose wall s | wsclose MB/s | wsclose packets/s | floor wall s | floor MB/s | wsclose/floor wall | wsclose CPU s | floor CPU s | wsclose/floor CPU | wsclose peak RSS | floor peak RSS | vs truth |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for spec in "${SIZES[@]}"; do
        read -r name _ _ <<<"$spec"
        s=${SIZE[$name]}
        printf "| %s | %d | %d | %d | %.3f (%.3f) | %.0f | %.0f | %.3f (%.3f) | %.0f | %.1f× (%.1f×) | %.3f (%.3f) | %.3f (%.3f) | %.1f× (%.1f×) | %.1f MiB | %.1f MiB | %s |\n" \
            "$name" "$s" "${PACKETS[$name]}" "${CONNS[$name]}" "${WS_T[$name]}" "${WS_TM[$name]}" \
            "$(echo "$(mb "$s") / ${WS_T[$name]}" | bc -l)" "$(echo "${PACKETS[$name]} / ${WS_T[$name]}" | bc -l)" \
            "${FL_T[$name]}" "${FL_TM[$name]}" "$(echo "$(mb "$s") / ${FL_T[$name]}" | bc -l)" \
            "$(echo "${WS_T[$name]} / ${FL_T[$name]}" | bc -l)" "$(echo "${WS_TM[$name]} / ${FL_TM[$name]}" | bc -l)" \
            "${WS_C[$name]}" "${WS_CM[$name]}" "${FL_C[$name]}" "${FL_CM[$name]}" \
            "$(echo "${WS_C[$name]} / ${FL_C[$name]}" | bc -l)" "$(echo "${WS_CM[$name]} / ${FL_CM[$name]}" | bc -l)" \
            "$(echo "${WS_RSS[$name]} / 1024" | bc -l)" "$(echo "${FL_RSS[$name]} / 1024" | bc -l)" "${EXACT[$name]}"
    done
    echo
    echo "Several cores (\`--threads $(nproc)\`, flows split across analyzers; the one-core figures above are \`--threads 1\`):"
    echo
    echo "| file | wall s | MB/s | × one core (wall) | / floor (wall) | CPU s | peak RSS | report vs one core |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for spec in "${SIZES[@]}"; do
        read -r name _ _ <<<"$spec"
        mt=$(best "wsclose-mc-$name")
        printf "| %s | %.3f (%.3f) | %.0f | %.2f× faster | %.1f× | %.3f | %.1f MiB | %s |\n" \
            "$name" "$mt" "$(median "wsclose-mc-$name")" "$(echo "$(mb "${SIZE[$name]}") / $mt" | bc -l)" \
            "$(echo "${WS_T[$name]} / $mt" | bc -l)" "$(echo "$mt / ${FL_T[$name]}" | bc -l)" \
            "$(best "wsclose-mc-$name" 3)" "$(echo "$(maxrss "wsclose-mc-$name") / 1024" | bc -l)" "${SAME_MC[$name]}"
    done
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    if [[ -n "$MULTI" ]]; then
        echo "$MULTI"
        echo
    fi
    if [[ -n "$PCAPNG" ]]; then
        echo "$PCAPNG"
        echo
    fi
    printf "wsclose peak RSS(1GiB) - RSS(100MiB) = %.1f MiB\n" "$(echo "(${WS_RSS[1GiB]} - ${WS_RSS[100MiB]}) / 1024" | bc -l)"
    # Peak RSS follows the connections open at once (finished ones wait on disk): say how many the
    # generator had open at once in each capture, from its log.
    for spec in "${SIZES[@]}"; do
        read -r name _ _ <<<"$spec"
        open=$(grep -o 'at most [0-9]* open at once' "$BENCH_DIR/gen-$name.pcap.gen.log" 2>/dev/null | grep -o '[0-9]*' || true)
        echo "    connections open at once in $name: ${open:-unknown}"
    done
    echo
    for spec in "${SIZES[@]}"; do
        read -r name _ _ <<<"$spec"
        echo "exactness on $name (bench/compare_truth.py):"
        sed 's/^/    /' "$BENCH_DIR/exact-$name.txt"
    done
} | tee "$BENCH_DIR/results.md"

if [[ -z "${NO_TSHARK:-}" ]] && command -v tshark >/dev/null; then
    # TSHARK_RUNS: runs per setting on 100 MiB (3); TSHARK_1G_RUNS on 1 GiB (1: about a minute each,
    # and ~3 GiB of memory). TSHARK_1G_RUNS=0 skips 1 GiB.
    for spec in "100MiB ${TSHARK_RUNS:-3}" "1GiB ${TSHARK_1G_RUNS:-1}"; do
        read -r name runs <<<"$spec"
        ((runs > 0)) || continue
        pcap="$BENCH_DIR/gen-$name.pcap"
        read -r dw dc drss dn <<<"$(tshark_run "$pcap" "$runs" "default-$name")"
        read -r ow oc orss on <<<"$(tshark_run "$pcap" "$runs" "ooo-$name" -o tcp.reassemble_out_of_order:TRUE)"
        closes=$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['connections']; print(sum((c['first_close'] is not None) + (c['close_reply'] is not None) for c in t))" "$BENCH_DIR/gen-$name.pcap.truth.json")
        {
            echo
            echo "tshark $(tshark -v 2>/dev/null | head -1 | awk '{print $3}') on $name, close-frame extraction, best of $runs, against wsclose's best on one core (close frames in the truth: $closes):"
            printf "    default options:                  wall %.1f s (%.0f× wsclose), CPU %.1f s (%.0f× wsclose), peak RSS %.0f MiB, %d close-frame lines\n" \
                "$dw" "$(echo "$dw / ${WS_T[$name]}" | bc -l)" "$dc" "$(echo "$dc / ${WS_C[$name]}" | bc -l)" "$(echo "$drss / 1024" | bc -l)" "$dn"
            printf "    tcp.reassemble_out_of_order:TRUE: wall %.1f s (%.0f× wsclose), CPU %.1f s (%.0f× wsclose), peak RSS %.0f MiB, %d close-frame lines\n" \
                "$ow" "$(echo "$ow / ${WS_T[$name]}" | bc -l)" "$oc" "$(echo "$oc / ${WS_C[$name]}" | bc -l)" "$(echo "$orss / 1024" | bc -l)" "$on"
        } | tee -a "$BENCH_DIR/results.md"
    done
    {
        echo
        echo "the generator's truth on 100MiB against tshark (bench/truth_vs_tshark.py, wsclose not involved):"
        python3 bench/truth_vs_tshark.py "$BENCH_DIR/gen-100MiB.pcap" "$BENCH_DIR/gen-100MiB.pcap.truth.json" | sed 's/^/    /' || true
    } | tee -a "$BENCH_DIR/results.md"
fi
