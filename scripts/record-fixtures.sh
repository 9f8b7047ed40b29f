#!/usr/bin/env bash
# Record the wsclose test fixtures from real WebSocket peers on loopback.
#
#   scripts/record-fixtures.sh            # install what is missing, record every scenario
#   scripts/record-fixtures.sh NAME...    # record only these scenarios
#   scripts/record-fixtures.sh --list     # list the scenarios
#   WSCLOSE_SKIP_INSTALL=1 scripts/record-fixtures.sh ...   # do not touch packages
#   WSCLOSE_KEEP_WORK=1 ...               # keep the per-run work folder (peer logs, configs)
#
# For each scenario it writes, into fixtures/:
#   NAME.pcap / NAME.pcapng   the capture (tcpdump or dumpcap, started before the peers)
#   NAME.truth.json           ground truth logged by the peers themselves, merged,
#                             and cross-checked against tshark (scripts/merge_truth.py)
#   NAME.tshark.json          tshark's view, same shape as shared/corpus/*.tshark.json
#                             (scripts/tshark_view.py)
# Must run as root (packet capture, network namespaces).  Only loopback and
# network namespaces created here carry traffic.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
FIX="$REPO/fixtures"
PEERS="$HERE/peers"
WEBSOCKETS_VERSION="17.4"

SCENARIOS=(
  py-client-close
  py-server-going-away
  node-rst-abort
  nginx-idle-timeout        # also writes nginx-idle-timeout-any (same run, second tcpdump)
  haproxy-tunnel-timeout
  node-unanswered-ping
  py-message-too-big
  py-server-killed
  py-close-unanswered
  py-ipv6-ns
  py-snaplen
  py-midstream
  netns-reorder
  py-handshake-failed
)

say() { printf '[record] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup --
PIDS=()
NETNS_MADE=()
WORK=""
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null; fi
  done
  sleep 0.3
  for pid in "${PIDS[@]}"; do
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
    wait "$pid" 2>/dev/null
  done
  for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [[ -n "$WORK" && -d "$WORK" ]]; then
    if [[ "${WSCLOSE_KEEP_WORK:-0}" == 1 ]]; then say "work folder kept: $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# alive PID: running and not a zombie
alive() { [[ -e /proc/$1 ]] && ! grep -qE '^[0-9]+ \(.*\) [ZX] ' "/proc/$1/stat" 2>/dev/null; }

track() { PIDS+=("$1"); }

# run_fg CMD...: run a command to its end, but as a waited-for background job,
# so that INT/TERM reach our trap at once instead of after the command.
run_fg() { "$@" & local p=$!; track "$p"; wait "$p"; }

# stop PID [SIGNAL] [TIMEOUT_S]: signal it, wait for it to exit, SIGKILL after the timeout
stop() {
  local pid=$1 sig=${2:-TERM} to=${3:-10} i=0
  if alive "$pid"; then kill "-$sig" "$pid" 2>/dev/null || true; fi
  while alive "$pid"; do
    sleep 0.05; i=$((i + 1))
    if (( i > to * 20 )); then say "pid $pid ignored SIG$sig for ${to}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  wait "$pid" 2>/dev/null || true
}

# wait_for PID_OR_- SECONDS: wait for a process to exit on its own
wait_exit() {
  local pid=$1 to=$2 i=0
  while alive "$pid"; do
    sleep 0.05; i=$((i + 1))
    if (( i > to * 20 )); then die "pid $pid still running after ${to}s"; fi
  done
  wait "$pid" 2>/dev/null || true
}

# wait_event LOG EVENT [COUNT] [TIMEOUT_S]: wait until a peer logged EVENT COUNT times
wait_event() {
  local f=$1 ev=$2 n=${3:-1} to=${4:-20} i=0 c
  while :; do
    c=$(cat "$f" 2>/dev/null | grep -cE "\"event\": ?\"$ev\"" || true)
    (( ${c:-0} >= n )) && return 0
    sleep 0.05; i=$((i + 1))
    if (( i > to * 20 )); then die "timeout: '$ev' x$n not logged in $f"; fi
  done
}

wait_file() {
  local f=$1 to=${2:-20} i=0
  while [[ ! -e $f ]]; do sleep 0.05; i=$((i + 1)); if (( i > to * 20 )); then die "timeout waiting for $f"; fi; done
}

port_free() {
  local p
  for p in "$@"; do
    if ss -Htln "sport = :$p" | grep -q .; then die "port $p has a listener (a leftover peer?): $(ss -Htlnp "sport = :$p" | head -3)"; fi
  done
}

# recorder_event LOG JSON-FIELDS: the recorder logs what it did to a peer (e.g. SIGKILL)
recorder_event() {
  local f=$1; shift
  python3 - "$f" "$@" <<'EOF'
import json, sys, time
f = sys.argv[1]
rec = {"t": round(time.time_ns() / 1e9, 6), "peer": "recorder"}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        rec[k] = json.loads(v)
    except ValueError:
        rec[k] = v
open(f, "a").write(json.dumps(rec) + "\n")
EOF
}

# meta FILE key=value...: scenario description for merge_truth.py (values may be JSON)
meta() {
  python3 - "$@" <<'EOF'
import json, sys
out, d = sys.argv[1], {}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
json.dump(d, open(out, "w"), indent=1)
EOF
}

# ------------------------------------------------------------------ capture --
# start_tcpdump VAR OUT IFACE FILTER [EXTRA_ARGS...] ; the pid is stored in VAR.
# Waits until tcpdump says "listening on".  Set NETNS_EXEC to run it in a netns.
start_tcpdump() {
  local __var=$1 out=$2 iface=$3 filter=$4; shift 4
  local err="$SD/$(basename "$out").tcpdump.err"
  rm -f "$out"
  # --immediate-mode: every packet reaches the file at once (nothing is left in
  # the kernel ring when we stop it); -B 65536: a 64 MiB ring, because in
  # immediate mode each ring slot is as large as the (64 KiB loopback) MTU.
  ${NETNS_EXEC:-} tcpdump --immediate-mode -B 65536 -U -n -i "$iface" -w "$out" "$@" "$filter" 2>"$err" &
  local pid=$!
  track "$pid"
  local i=0
  until grep -q "listening on" "$err" 2>/dev/null; do
    alive "$pid" || die "tcpdump failed: $(cat "$err")"
    sleep 0.05; i=$((i + 1)); if (( i > 200 )); then die "tcpdump not listening after 10s"; fi
  done
  sleep 0.2
  printf -v "$__var" '%s' "$pid"
  CAPTURE_CMDS+=("tcpdump --immediate-mode -B 65536 -U -n -i $iface -w $(basename "$out")${*:+ $*} '$filter'")
}

start_dumpcap() {
  local __var=$1 out=$2 iface=$3 filter=$4; shift 4
  local err="$SD/$(basename "$out").dumpcap.err"
  rm -f "$out"
  dumpcap -q -B 64 -i "$iface" -f "$filter" -w "$out" "$@" 2>"$err" &
  local pid=$!
  track "$pid"
  local i=0
  until grep -q "Capturing on" "$err" 2>/dev/null; do
    alive "$pid" || die "dumpcap failed: $(cat "$err")"
    sleep 0.05; i=$((i + 1)); if (( i > 200 )); then die "dumpcap not capturing after 10s"; fi
  done
  sleep 0.3
  printf -v "$__var" '%s' "$pid"
  CAPTURE_CMDS+=("dumpcap -q -B 64 -i $iface -f '$filter' -w $(basename "$out")${*:+ $*}")
}

# stop_capture PID: let the last packets reach the file, then SIGINT and wait
stop_capture() {
  sleep 0.7
  stop "$1" INT 10
  local err
  for err in "$SD"/*.tcpdump.err "$SD"/*.dumpcap.err; do
    [[ -e $err ]] || continue
    if grep -qE '^[1-9][0-9]* packets dropped by kernel|dropped on interface.*: [0-9]+/[1-9]' "$err"; then
      die "the capture lost packets: $(tr '\n' ' ' <"$err")"
    fi
  done
}

# --------------------------------------------------------------- install ----
PY=python3
install_deps() {
  if [[ "${WSCLOSE_SKIP_INSTALL:-0}" == 1 ]]; then say "WSCLOSE_SKIP_INSTALL=1: not installing"; else
    local need=()
    command -v tcpdump >/dev/null || need+=(tcpdump)
    command -v nginx >/dev/null || need+=(nginx)
    command -v haproxy >/dev/null || need+=(haproxy)
    command -v tshark >/dev/null || need+=(tshark)
    command -v editcap >/dev/null || need+=(wireshark-common)
    command -v ip >/dev/null || need+=(iproute2)
    command -v ss >/dev/null || need+=(iproute2)
    command -v ethtool >/dev/null || need+=(ethtool)
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
    if ((${#need[@]})); then
      say "apt-get install ${need[*]}"
      echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    # Python websockets, pinned: the truth files depend on its behaviour.
    if ! "$PY" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
      say "pip install websockets==$WEBSOCKETS_VERSION"
      if ! "$PY" -m pip install -q "websockets==$WEBSOCKETS_VERSION" 2>/dev/null; then
        # Debian's own python3 refuses system-wide pip installs (PEP 668): use a venv.
        [[ -x "$HERE/.venv/bin/python" ]] || { "$PY" -m venv "$HERE/.venv" 2>/dev/null || {
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; "$PY" -m venv "$HERE/.venv"; }; }
        PY="$HERE/.venv/bin/python"
        "$PY" -m pip install -q "websockets==$WEBSOCKETS_VERSION"
      fi
    fi
    # Node ws, from the committed package-lock.json
    if [[ ! -f "$PEERS/node/node_modules/ws/package.json" ]] || \
       ! cmp -s <(node -p "require('$PEERS/node/node_modules/ws/package.json').version") \
                <(node -p "require('$PEERS/node/package-lock.json').packages['node_modules/ws'].version"); then
      say "npm ci (scripts/peers/node)"
      (cd "$PEERS/node" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
  [[ -x "$HERE/.venv/bin/python" ]] && "$HERE/.venv/bin/python" -c "import websockets" 2>/dev/null && PY="$HERE/.venv/bin/python"
  "$PY" -c "import websockets" || die "python websockets missing"
  for t in tcpdump dumpcap editcap capinfos tshark nginx haproxy node ip ss; do
    command -v "$t" >/dev/null || die "$t missing"
  done
  [[ $(id -u) == 0 ]] || die "must run as root (packet capture, network namespaces)"
}

software_json() {
  local wsv nodev wsnode tcpd tsh ngx hap
  wsv=$("$PY" -c 'import websockets; print(websockets.__version__)')
  nodev=$(node --version)
  wsnode=$(node -p "require('$PEERS/node/node_modules/ws/package.json').version")
  tcpd=$(tcpdump --version 2>&1 | head -1 | awk '{print $3}')
  tsh=$(tshark --version 2>/dev/null | head -1 | awk '{print $3}')
  ngx=$(nginx -v 2>&1 | sed 's|.*nginx/||')
  hap=$(haproxy -v | head -1 | awk '{print $3}')
  printf '{"python":"%s","python_websockets":"%s","node":"%s","node_ws":"%s","tcpdump":"%s","tshark":"%s","nginx":"%s","haproxy":"%s","kernel":"%s"}' \
    "$("$PY" -c 'import platform; print(platform.python_version())')" "$wsv" "$nodev" "$wsnode" "$tcpd" "$tsh" "$ngx" "$hap" "$(uname -r)"
}


# finalize NAME CAPTURE: tshark view + truth file, checked against each other
FAILED=()
DONE=()
finalize() {
  local name=$1 cap=$2 logs=${3:-$SD/logs} metaf=${4:-$SD/meta.json} truth tsj
  truth="$SD/${name}.truth.json"; tsj="${cap%.*}.tshark.json"
  [[ -s $cap ]] || die "$name: no capture file"
  # tcpdump writes its file as user tcpdump, dumpcap with mode 0600
  chown "$(stat -c %u:%g "$FIX")" "$cap"; chmod 0644 "$cap"
  "$PY" "$HERE/tshark_view.py" "$cap" >&2
  if ! "$PY" "$HERE/merge_truth.py" --meta "$metaf" --logs "$logs" --capture "$cap" \
      --tshark "$tsj" --out "$truth" >&2; then
    FAILED+=("$name: truth disagrees with tshark (see agreement_with_tshark in $(basename "$truth"))")
  fi
  chown "$(stat -c %u:%g "$FIX")" "$truth" "$tsj"; chmod 0644 "$truth" "$tsj"
  rm -f "$FIX/$name".{pcap,pcapng,truth.json,tshark.json}
  mv -f "$cap" "$tsj" "$truth" "$FIX/"
  local n
  n=$(python3 -c 'import json,sys; print(sum(len(s["ws_frames"]) for s in json.load(open(sys.argv[1]))["streams"]))' "$FIX/$(basename "$tsj")")
  say "$name: $(basename "$cap") $(stat -c %s "$FIX/$(basename "$cap")") bytes, $(capinfos -c -M "$FIX/$(basename "$cap")" | awk -F': *' '/Number of packets/{print $2}') packets, $n WebSocket frames decoded by tshark"
  DONE+=("$name")
}

# Everything is recorded into the work folder; finalize() moves the three
# files of a fixture into fixtures/ only once they are complete, so an
# interrupted or failed run leaves the committed fixtures as they were.
new_scenario() {
  SD="$WORK/$1"
  mkdir -p "$SD/logs"
  CAPTURE_CMDS=()
  say "=== $1"
}

capture_cmds_json() {
  python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${CAPTURE_CMDS[@]}"
}

# ================================================================ scenarios ==

rec_py_client_close() {
  local name=py-client-close port=9101 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  local acts=(send:text:hello recv send:bin:00010203fffe recv "send:text:how are you?" recv ping close:1000:bye)
  run_fg timeout 30 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" "${acts[@]}" 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets client and server on 127.0.0.1:$port. Handshake, text 'hello', binary 00010203fffe, text 'how are you?' (each echoed), one client ping answered by a pong, then the client closes with 1000 'bye'; the server replies 1000 'bye' and (RFC 6455 7.1.1) closes TCP first." \
    software="$SOFTWARE" command="py_server.py --port $port; py_client.py --url ws://127.0.0.1:$port/ ${acts[*]}" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_server_going_away() {
  local name=py-server-going-away port=9102 cap tdp srv srv2 cli
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/clients.jsonl" --name clients --fleet 5 \
    --backoff-base 0.25 --backoff-cap 4 --attempts 8 2>"$SD/clients.err" & cli=$!; track $cli
  wait_event "$SD/logs/clients.jsonl" ws_open 5
  wait_event "$SD/logs/clients.jsonl" frame_recv 5
  sleep 0.5
  say "stopping the server (SIGTERM -> websockets server.close() -> 1001 going away)"
  stop $srv TERM
  sleep 2
  say "restarting the server"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server-restarted.jsonl" --name server-restarted 2>"$SD/server2.err" & srv2=$!; track $srv2
  wait_exit $cli 60
  stop $srv2 TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Five Python websockets clients connected to one Python websockets server on 127.0.0.1:$port. The server process gets SIGTERM and shuts down with server.close(): close 1001 (going away) to all five; each client replies 1001 and the server closes TCP. The server is restarted 2 s after it exited; meanwhile each client reconnects with exponential backoff and jitter (delay = b/2 + U(0, b/2), b = 0.25 s * 2^attempt): the early attempts are refused (SYN answered by RST, listed in refused_attempts), then each client reconnects, exchanges one message and closes 1000 'bye' (clean)." \
    software="$SOFTWARE" command="py_server.py --port $port (SIGTERM, then restarted); py_client.py --fleet 5 --backoff-base 0.25" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_node_rst_abort() {
  local name=node-rst-abort port=9103 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  node "$PEERS/node/server.js" --port $port --log "$SD/logs/server.jsonl" --destroy-on please-destroy 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 20 node "$PEERS/node/client.js" --url ws://127.0.0.1:$port/ --log "$SD/logs/client1.jsonl" --name client1 \
    send:text:hello recv send:bin:cafe recv "send:text:one more" recv sleep:0.2 reset 2>"$SD/client1.err"
  sleep 0.3
  run_fg timeout 20 node "$PEERS/node/client.js" --url ws://127.0.0.1:$port/ --log "$SD/logs/client2.jsonl" --name client2 \
    send:text:hi recv send:text:please-destroy wait-closed:5 2>"$SD/client2.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Node.js ws server and clients on 127.0.0.1:$port. Connection 1: three messages echoed, then the client aborts with socket.resetAndDestroy(): RST, no close frame (abnormal). Connection 2: the client sends 'please-destroy' and the server kills the socket with socket.destroy(): FIN from the server without any close frame; the ws client answers with its own FIN (abnormal, 1006 on both sides)." \
    software="$SOFTWARE" command="node server.js --port $port --destroy-on please-destroy; node client.js ... reset; node client.js ... send:text:please-destroy" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

# proxy_run KIND: shared by the nginx and haproxy scenarios
rec_nginx_idle_timeout() {
  local name=nginx-idle-timeout port=9104 bport=9204 cap cap2 tdp tdp2 backend ngx
  new_scenario $name; cap="$SD/$name.pcap"; cap2="$SD/$name-any.pcap"; port_free $port $bport
  mkdir -p "$SD/nginx/tmp"
  sed -e "s|@WORK@|$SD/nginx|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@BACKEND@|127.0.0.1:$bport|g" \
    "$PEERS/nginx.conf.in" >"$SD/nginx/nginx.conf"
  nginx -t -p "$SD/nginx" -c "$SD/nginx/nginx.conf" 2>"$SD/nginx-t.err" || die "nginx -t: $(cat "$SD/nginx-t.err")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  start_tcpdump tdp2 "$cap2" any "tcp port $port or tcp port $bport" -y LINUX_SLL2
  "$PY" "$PEERS/py_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  nginx -p "$SD/nginx" -c "$SD/nginx/nginx.conf" -g 'daemon off;' 2>"$SD/nginx.err" & ngx=$!; track $ngx
  local i=0; until ss -Htln "sport = :$port" | grep -q .; do sleep 0.05; i=$((i+1)); if ((i>200)); then die "nginx did not listen"; fi; done
  say "nginx: idle for proxy_read_timeout 60s (about 65 s)"
  run_fg timeout 120 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv "send:text:anyone there?" recv send:bin:01020304 recv wait-closed:100 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $ngx QUIT; stop_capture $tdp; stop_capture $tdp2
  local ev
  ev=$(grep -h "timed out" "$SD/nginx/error.log" | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  local desc="Python websockets client (ping_interval=None, like a browser tab that never pings) -> nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') reverse proxy on 127.0.0.1:$port (proxy_http_version 1.1, Upgrade/Connection headers, proxy_read_timeout 60s = the default) -> Python websockets backend on 127.0.0.1:$bport (ping_interval=None). Three messages are echoed end to end, then nobody sends anything; after 60 s of silence nginx times out ('upstream timed out ... while proxying upgraded connection') and closes both TCP connections without any close frame. Both legs are in the capture."
  local proxyj
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"nginx","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":60,"setting":"proxy_read_timeout 60s (nginx default)","log_evidence":sys.argv[3]}))' "127.0.0.1:$port" "127.0.0.1:$bport" "$ev")
  meta "$SD/meta.json" name=$name description="$desc Captured with tcpdump -i lo (Ethernet link type)." \
    software="$SOFTWARE" command="nginx -p WORK -c nginx.conf (scripts/peers/nginx.conf.in); py_server.py --port $bport; py_client.py --url ws://127.0.0.1:$port/ ... wait-closed:100" \
    capture_command="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:2]))' "${CAPTURE_CMDS[@]}")" proxy="$proxyj"
  meta "$SD/meta-any.json" name=$name-any description="$desc Same run as nginx-idle-timeout, captured at the same time by a second tcpdump on the 'any' pseudo-interface with -y LINUX_SLL2 (Linux cooked v2 link type)." \
    software="$SOFTWARE" command="as nginx-idle-timeout" \
    capture_command="$(python3 -c 'import json,sys; print(json.dumps(sys.argv[2:3]))' "${CAPTURE_CMDS[@]}")" proxy="$proxyj"
  finalize $name "$cap"
  finalize $name-any "$cap2" "$SD/logs" "$SD/meta-any.json"
}

rec_haproxy_tunnel_timeout() {
  local name=haproxy-tunnel-timeout port=9105 bport=9205 cap tdp backend hap
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port $bport
  mkdir -p "$SD/haproxy"
  sed -e "s|@WORK@|$SD/haproxy|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@BACKEND@|127.0.0.1:$bport|g" \
    "$PEERS/haproxy.cfg.in" >"$SD/haproxy/haproxy.cfg"
  haproxy -c -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy-c.out" 2>&1 || die "haproxy -c: $(cat "$SD/haproxy-c.out")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  "$PY" "$PEERS/py_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  haproxy -db -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy.log" 2>&1 & hap=$!; track $hap
  local i=0; until ss -Htln "sport = :$port" | grep -q .; do sleep 0.05; i=$((i+1)); if ((i>200)); then die "haproxy did not listen"; fi; done
  say "haproxy: idle for timeout tunnel 10s"
  run_fg timeout 60 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv "send:text:anyone there?" recv send:bin:01020304 recv wait-closed:40 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $hap TERM; stop_capture $tdp
  local ev
  ev=$(grep -hE "fe_ws|be_ws" "$SD/haproxy.log" | grep -v Proxy | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  local proxyj
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"haproxy","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":10,"setting":"timeout tunnel 10s (timeout client/server 30s)","log_evidence":sys.argv[3]}))' "127.0.0.1:$port" "127.0.0.1:$bport" "$ev")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (ping_interval=None) -> HAProxy $(haproxy -v | head -1 | awk '{print $3}') in mode http on 127.0.0.1:$port (timeout tunnel 10s, timeout client/server 30s) -> Python websockets backend on 127.0.0.1:$bport (ping_interval=None). Three messages are echoed, then silence; after 10 s idle the tunnel timeout fires and HAProxy closes both TCP connections without close frames. Both legs captured on lo." \
    software="$SOFTWARE" command="haproxy -db -f haproxy.cfg (scripts/peers/haproxy.cfg.in); py_server.py --port $bport; py_client.py --url ws://127.0.0.1:$port/ ... wait-closed:40" \
    capture_command="$(capture_cmds_json)" proxy="$proxyj"
  finalize $name "$cap"
}

rec_node_unanswered_ping() {
  local name=node-unanswered-ping port=9106 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  node "$PEERS/node/server.js" --port $port --log "$SD/logs/server.jsonl" --heartbeat-ms 1000 --max-missed 3 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 node "$PEERS/node/client.js" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" --no-autopong \
    send:text:hello recv wait-closed:20 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Node.js ws server on 127.0.0.1:$port pings every connection each second (payloads hb1, hb2, ...). The Node.js ws client is created with autoPong: false, so it never answers. When a 4th tick finds 3 pings without a pong, the server calls ws.terminate(): FIN from the server, no close frame; the client answers with its FIN (abnormal, 1006 on both sides). Cause: unanswered pings." \
    software="$SOFTWARE" command="node server.js --port $port --heartbeat-ms 1000 --max-missed 3; node client.js --no-autopong send:text:hello recv wait-closed:20" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_message_too_big() {
  local name=py-message-too-big port=9107 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcapng"; port_free $port
  start_dumpcap tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --max-size 1024 --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv send:randbin:4000 wait-closed:15 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets server on 127.0.0.1:$port with max_size=1024. The client sends 'hello' (echoed), then a 4000-byte binary message of random bytes (incompressible, so it is also about 4000 bytes on the wire despite permessage-deflate); the server refuses it with close 1009 (message too big), the client echoes 1009 and the closing handshake completes (clean close, cause message-too-big). Recorded with dumpcap: pcapng." \
    software="$SOFTWARE" command="py_server.py --port $port --max-size 1024; py_client.py send:text:hello recv send:randbin:4000 wait-closed:15" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_server_killed() {
  local name=py-server-killed port=9108 cap tdp srv cli
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv "send:text:still there?" recv "touch:$SD/ready" wait-closed:20 2>"$SD/client.err" & cli=$!; track $cli
  wait_file "$SD/ready"; sleep 0.5
  say "SIGKILL the server"
  recorder_event "$SD/logs/recorder.jsonl" event=process_killed by=server conn='"*"' signal=SIGKILL pid=$srv
  recorder_event "$SD/logs/recorder.jsonl" event=socket_closed by=server conn='"*"' how="SIGKILL of the server process: its kernel closes the socket"
  kill -KILL $srv; wait $srv 2>/dev/null || true
  wait_exit $cli 30
  stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets client and server on 127.0.0.1:$port exchange two messages; then the recorder SIGKILLs the server process. The server's kernel closes the socket: FIN from the server, no close frame; the client sees EOF (1006) and closes too (abnormal)." \
    software="$SOFTWARE" command="py_server.py --port $port; py_client.py ... wait-closed:20; kill -KILL <server pid>" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_close_unanswered() {
  local name=py-close-unanswered port=9109 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --close-on hello=1000:bye --close-timeout 2 --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/raw_client.py" --port $port --text hello --log "$SD/logs/client.jsonl" 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets server on 127.0.0.1:$port (close_timeout=2) and a raw-socket Python client that does the opening handshake itself, sends one masked text frame 'hello', then ignores everything. The server answers 'hello' with close 1000 'bye'; no close frame ever comes back, so after 2 s the server drops the TCP connection (FIN from the server); the raw client then closes its socket (close-unanswered)." \
    software="$SOFTWARE" command="py_server.py --port $port --close-on hello=1000:bye --close-timeout 2; raw_client.py --port $port --text hello" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_ipv6_ns() {
  local name=py-ipv6-ns port=9110 cap tmp tdp srv
  new_scenario $name; cap="$SD/$name.pcapng"; tmp="$SD/$name.ns.pcap"; port_free $port
  start_tcpdump tdp "$tmp" lo "tcp port $port" --time-stamp-precision=nano
  "$PY" "$PEERS/py_server.py" --host ::1 --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/py_client.py" --url "ws://[::1]:$port/" --log "$SD/logs/client.jsonl" \
    send:text:hello recv send:bin:deadbeef recv "close:4000:custom reason" 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  editcap -F pcapng "$tmp" "$cap"
  CAPTURE_CMDS+=("editcap -F pcapng $name.ns.pcap $name.pcapng")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client and server on [::1]:$port (IPv6 loopback). Two messages echoed, then the client closes with the application code 4000 'custom reason'; the server echoes 4000 'custom reason' (clean). Recorded with nanosecond timestamps (tcpdump --time-stamp-precision=nano) and converted to pcapng with editcap (if_tsresol = 9)." \
    software="$SOFTWARE" command="py_server.py --host ::1 --port $port; py_client.py --url ws://[::1]:$port/ ... close:4000:custom reason" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

rec_py_snaplen() {
  local name=py-snaplen port=9111 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port" -s 128
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:randbin:1000 recv send:randbin:1000 recv send:randbin:1000 recv close:1000:bye 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets client and server on 127.0.0.1:$port, captured with tcpdump -s 128: every packet is cut to 128 bytes (62 bytes of TCP payload after the 66 bytes of Ethernet/IPv4/TCP-with-timestamps headers). The opening handshake is truncated, three 1000-byte binary messages of random bytes are echoed (payloads cut: gaps in the captured byte stream), then the client closes 1000 'bye' and the server replies (clean; the small close frames fit in the snap length)." \
    software="$SOFTWARE" command="py_server.py --port $port; py_client.py send:randbin:1000 recv x3 close:1000:bye" \
    capture_command="$(capture_cmds_json)" \
    tshark_blind="tshark does not dissect WebSocket here: the truncated HTTP upgrade is not recognised (checked), so the close frames are not in the tshark view"
  finalize $name "$cap"
}

rec_py_midstream() {
  local name=py-midstream port=9112 cap tdp srv cli
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  "$PY" "$PEERS/py_server.py" --port $port --close-on please-close=1000:done --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" --no-compression \
    send:text:hello recv "touch:$SD/established" "wait-file:$SD/go" "send:text:after the capture started" recv \
    send:bin:0102 recv send:text:please-close wait-closed:10 2>"$SD/client.err" & cli=$!; track $cli
  wait_file "$SD/established"
  say "connection established and handshake done: starting the capture now"
  start_tcpdump tdp "$cap" lo "tcp port $port"
  touch "$SD/go"
  wait_exit $cli 30
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (permessage-deflate not offered, so every frame is readable without the handshake) and server on 127.0.0.1:$port. The capture starts only after the TCP and WebSocket handshakes and a first echoed message: no SYN, no HTTP upgrade in the file. Then two more messages are echoed, the client sends 'please-close' and the server closes with 1000 'done'; the client replies 1000 'done' (clean)." \
    software="$SOFTWARE" command="py_server.py --port $port --close-on please-close=1000:done; py_client.py ... (tcpdump started after the handshake)" \
    capture_command="$(capture_cmds_json)" \
    notes="tshark needs --enable-heuristic websocket_tcp to decode this file (used by scripts/tshark_view.py); it identifies the client by its masked frames."
  finalize $name "$cap"
}

rec_netns_reorder() {
  local name=netns-reorder port=9113 cap tdp srv imp cli
  new_scenario $name; cap="$SD/$name.pcap"
  local C=wsc-cli M=wsc-mid S=wsc-srv ns
  for ns in $C $M $S; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; NETNS_MADE+=($ns); done
  ip link add wsc-c0 netns $C type veth peer name wsc-c1 netns $M
  ip link add wsc-s0 netns $S type veth peer name wsc-s1 netns $M
  for ns in $C $M $S; do
    ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n $ns link set lo up
  done
  ip -n $C addr add 10.231.0.1/24 dev wsc-c0
  ip -n $S addr add 10.231.0.2/24 dev wsc-s0
  ip -n $C link set wsc-c0 up; ip -n $S link set wsc-s0 up
  ip -n $M link set wsc-c1 up promisc on; ip -n $M link set wsc-s1 up promisc on
  # valid checksums and no segmentation offload on the endpoints
  ip netns exec $C ethtool -K wsc-c0 tx off sg off tso off gso off >/dev/null 2>&1 || true
  ip netns exec $S ethtool -K wsc-s0 tx off sg off tso off gso off >/dev/null 2>&1 || true
  ip netns exec $M "$PY" "$PEERS/impair.py" --a wsc-c1 --b wsc-s1 --port $port --delay-ms 10 \
    --reorder-pct 25 --corr-pct 50 --loss-pct 5 --seed 6455 --log "$SD/logs/impair.jsonl" 2>"$SD/impair.err" & imp=$!; track $imp
  wait_event "$SD/logs/impair.jsonl" listening
  NETNS_EXEC="ip netns exec $S" start_tcpdump tdp "$cap" wsc-s0 "tcp port $port"
  ip netns exec $S "$PY" "$PEERS/py_server.py" --host 10.231.0.2 --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  local acts=() i
  for i in $(seq 1 30); do acts+=("send:text:m$i" sleep:0.002); done
  for i in $(seq 1 30); do acts+=(recv); done
  acts+=(sleep:0.2 close:1000:done)
  run_fg timeout 60 ip netns exec $C "$PY" "$PEERS/py_client.py" --url ws://10.231.0.2:$port/ --log "$SD/logs/client.jsonl" \
    "${acts[@]}" 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp; stop $imp TERM
  for ns in $C $M $S; do ip netns del $ns; done; NETNS_MADE=()
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (netns wsc-cli, 10.231.0.1) and server (netns wsc-srv, 10.231.0.2:$port) joined through a middle netns whose user-space bridge (scripts/peers/impair.py) emulates 'netem delay 10ms reorder 25% 50% loss 5%' on the data segments (this kernel has no sch_netem). The client sends 30 small text messages 2 ms apart (so that several are in flight at once), reads the 30 echoes, then closes 1000 'done'; the server replies (clean). Captured on the server's veth wsc-s0: out-of-order segments, gaps and retransmissions; every drop and reordering is listed in 'impairments'." \
    software="$SOFTWARE" command="impair.py --delay-ms 10 --reorder-pct 25 --corr-pct 50 --loss-pct 5 --seed 6455; py_server.py --host 10.231.0.2 --port $port; py_client.py 30 x (send, sleep 2 ms), 30 x recv, close:1000:done" \
    capture_command="$(capture_cmds_json)" \
    notes="netem (sch_netem) is not built into this kernel (tc: 'Specified qdisc kind is unknown'), so the impairment is done in user space; SYN/FIN/RST and pure ACKs are never dropped or reordered."
  finalize $name "$cap"
}

rec_py_handshake_failed() {
  local name=py-handshake-failed port=9114 cap tdp srv
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --reject /forbidden=403 --reject /missing=404 --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 20 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/forbidden --log "$SD/logs/client.jsonl" 2>"$SD/client1.err" || true
  run_fg timeout 20 "$PY" "$PEERS/py_client.py" --url ws://127.0.0.1:$port/missing --log "$SD/logs/client.jsonl" 2>"$SD/client2.err" || true
  stop $srv TERM; stop_capture $tdp
  meta "$SD/meta.json" name=$name \
    description="Python websockets server on 127.0.0.1:$port whose process_request hook rejects the opening handshake: GET /forbidden gets 403 Forbidden, GET /missing gets 404 Not Found (no 101, no WebSocket frames); the server closes each TCP connection after its response." \
    software="$SOFTWARE" command="py_server.py --port $port --reject /forbidden=403 --reject /missing=404; py_client.py --url ws://127.0.0.1:$port/forbidden; ... /missing" \
    capture_command="$(capture_cmds_json)"
  finalize $name "$cap"
}

# =================================================================== main ==
main() {
  local want=()
  for a in "$@"; do
    case $a in
      --list) printf '%s\n' "${SCENARIOS[@]}" nginx-idle-timeout-any; exit 0 ;;
      -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
      nginx-idle-timeout-any) want+=(nginx-idle-timeout) ;;
      netem-reorder) want+=(netns-reorder) ;;
      *) printf '%s\n' "${SCENARIOS[@]}" | grep -qx -- "$a" || die "unknown scenario '$a' (--list)"; want+=("$a") ;;
    esac
  done
  ((${#want[@]})) || want=("${SCENARIOS[@]}")
  install_deps
  SOFTWARE=$(software_json)
  mkdir -p "$FIX"
  WORK=$(mktemp -d /tmp/wsclose-record.XXXXXX)
  say "work folder: $WORK"
  local s
  for s in "${want[@]}"; do
    "rec_${s//-/_}"
  done
  say "recorded: ${DONE[*]}"
  if ((${#FAILED[@]})); then
    printf '[record] PROBLEM: %s\n' "${FAILED[@]}" >&2
    exit 1
  fi
}

main "$@"
