# Helpers shared by the benchmark scripts (sourced, not run). Needs BENCH_DIR set.
#   run LABEL CMD...   one timed run of CMD (stdout discarded); appends "wall_s rss_kib cpu_s" to
#                      $BENCH_DIR/LABEL.runs (wall and CPU: bench/measure.py; peak RSS: GNU time)
#   best LABEL [COL]   smallest of column COL (1: wall s, 3: CPU s) over LABEL's runs
#   median LABEL [COL] median of that column
#   maxrss LABEL       largest peak RSS of LABEL's runs, KiB

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
