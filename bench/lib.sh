# Helpers shared by the benchmark scripts (sourced, not run). Needs BENCH_DIR set.
#   run LABEL CMD...   one timed run of CMD (stdout discarded); appends "wall_s rss_kib cpu_s" to
#                      $BENCH_DIR/LABEL.runs (wall and CPU: bench/measure.py; peak RSS: GNU time)
#   best LABEL [COL]   smallest of column COL (1: wall s, 3: CPU s) over LABEL's runs
#   median LABEL [COL] median of that column
#   maxrss LABEL       largest peak RSS of LABEL's runs, KiB
#   tshark_run FILE RUNS LABEL [OPTIONS...]
#                      best wall and CPU seconds of RUNS tshark close-frame extractions on FILE, its
#                      peak RSS (KiB) and the number of close-frame lines printed (in
#                      $BENCH_DIR/tshark-LABEL.tsv)

if [[ ! -x /usr/bin/time ]]; then
    echo "installing GNU time (apt) for peak RSS" >&2
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi

run() {
    local label=$1
    shift
    local wall cpu rss
    read -r wall cpu < <(python3 bench/measure.py /usr/bin/time -f '%M' -o "$BENCH_DIR/$label.rss" "$@")
    rss=$(cat "$BENCH_DIR/$label.rss")
    echo "$wall $rss $cpu" >>"$BENCH_DIR/$label.runs"
}

median() {
    awk -v c="${2:-1}" '{print $c}' "$BENCH_DIR/$1.runs" | sort -n |
        awk '{t[NR]=$1} END {printf "%.3f", (NR%2) ? t[(NR+1)/2] : (t[NR/2]+t[NR/2+1])/2}'
}
best() { awk -v c="${2:-1}" 'NR==1 || $c<m {m=$c} END {printf "%.3f", m}' "$BENCH_DIR/$1.runs"; }
maxrss() { awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$BENCH_DIR/$1.runs"; }

# tshark 4.0 names the close code websocket.payload.close.status_code (websocket.close.code is not a
# field there). Out-of-order segments are reassembled only with tcp.reassemble_out_of_order, without
# which tshark misses close frames behind a swapped pair and decodes garbage as frames.
tshark_run() {
    local pcap=$1 runs=$2 label=$3
    shift 3
    local wall cpu bw="" bc=""
    for _ in $(seq "$runs"); do
        read -r wall cpu < <(python3 bench/measure.py --out "$BENCH_DIR/tshark-$label.tsv" \
            /usr/bin/time -f '%M' -o "$BENCH_DIR/tshark-$label.rss" \
            tshark "$@" -r "$pcap" -Y 'websocket.opcode == 8' \
            -T fields -e frame.time_epoch -e websocket.payload.close.status_code 2>/dev/null)
        if [[ -z "$bw" ]] || (($(echo "$wall < $bw" | bc -l))); then bw=$wall; fi
        if [[ -z "$bc" ]] || (($(echo "$cpu < $bc" | bc -l))); then bc=$cpu; fi
    done
    echo "$bw $bc $(cat "$BENCH_DIR/tshark-$label.rss") $(wc -l <"$BENCH_DIR/tshark-$label.tsv")"
}
