#!/usr/bin/env bash
# Record the diag-* fixtures: captures whose engineered cause is one of the
# diagnoses of docs/diagnosis.md (reconnect storm, heartbeat too slow, one-way
# heartbeat, peer unreachable, middlebox reset, duplicate connection).
#
#   scripts/record-diagnosis-fixtures.sh            # every diag-* scenario
#   scripts/record-diagnosis-fixtures.sh NAME...    # only these (also: --list)
#   WSCLOSE_SKIP_INSTALL=1 / WSCLOSE_KEEP_WORK=1    as for record-fixtures.sh
#
# It reuses every helper of scripts/record-fixtures.sh (capture, peers, merge_truth.py,
# tshark_view.py, finalize) by sourcing it without its main; then
# scripts/peers/diag_truth.py writes the engineered cause into each truth file.
set -Eeuo pipefail
DIAG_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1090
source <(sed '/^main "\$@"$/d' "$DIAG_HERE/record-fixtures.sh")
HERE="$DIAG_HERE"; REPO="$(cd "$HERE/.." && pwd)"; FIX="$REPO/fixtures"; PEERS="$HERE/peers"

DIAG_SCENARIOS=(
  diag-reconnect-storm
  diag-heartbeat-too-slow
  diag-one-way-heartbeat
  diag-peer-unreachable
  diag-middlebox-reset
  diag-duplicate-connection
  diag-nginx-pings-keep-alive
)

# finalize plus the engineered cause (scripts/peers/diag_truth.py NAME)
# (diag_truth.py re-checks the facts it corrects: a merge_truth.py disagreement
# that it resolves is dropped from FAILED; any other one stays)
diag_finalize() {
  local name=$1 cap=$2 nfail=${#FAILED[@]}
  finalize "$name" "$cap"
  if "$PY" "$PEERS/diag_truth.py" "$name" "$FIX/$name.truth.json" "$FIX/$name.tshark.json" >&2; then
    FAILED=("${FAILED[@]:0:$nfail}")
  else
    FAILED+=("$name: diag_truth.py: truth disagrees with tshark or the cause could not be set")
  fi
}

rec_diag_reconnect_storm() {
  local name=diag-reconnect-storm port=9211 cap tdp srv srv2 cli
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    --storm-interval 0.15 --storm-connections 2 --last-actions "send:text:hello recv touch:$SD/ready hold" \
    send:text:hello recv wait-closed:60 2>"$SD/client.err" & cli=$!; track $cli
  wait_event "$SD/logs/client.jsonl" frame_recv 1
  sleep 0.5
  say "SIGKILL the server; it comes back 2 s later"
  recorder_event "$SD/logs/recorder.jsonl" event=process_killed by=server conn='"*"' signal=SIGKILL pid=$srv
  recorder_event "$SD/logs/recorder.jsonl" event=socket_closed by=server conn='"*"' how="SIGKILL of the server process: its kernel closes the socket"
  kill -KILL $srv; wait $srv 2>/dev/null || true
  sleep 2
  recorder_event "$SD/logs/recorder.jsonl" event=server_restarted port=$port
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server-restarted.jsonl" --name server-restarted 2>"$SD/server2.err" & srv2=$!; track $srv2
  wait_file "$SD/ready" 20
  sleep 0.5
  stop_capture $tdp
  # after the capture: SIGKILL, so that nothing they do now is logged
  kill -KILL $cli $srv2; wait $cli $srv2 2>/dev/null || true
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (scripts/peers/diag_client.py storm mode) and server on 127.0.0.1:$port. One message is echoed, then the recorder SIGKILLs the server (its kernel sends FIN, no close frame: abnormal). The client reconnects every 0.15 s exactly, without backoff or jitter: while the server is down (2 s) every attempt is a SYN answered by RST (listed in refused_attempts). The server is restarted; the next attempt connects, 'hello' is echoed, and the connection is still open when the capture stops. One client, one connection at a time, so all attempts form one chain from 127.0.0.1." \
    software="$SOFTWARE" command="py_server.py --port $port (SIGKILL, restarted 2 s later); diag_client.py --storm-interval 0.15 --storm-connections 2 send:text:hello recv wait-closed:60 (last: send:text:hello recv hold)" \
    capture_command="$(capture_cmds_json)"
  diag_finalize $name "$cap"
}

# haproxy with timeout tunnel 5s (from scripts/peers/haproxy.cfg.in)
rec_diag_heartbeat_too_slow() {
  local name=diag-heartbeat-too-slow port=9212 bport=9222 cap tdp backend hap
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port $bport
  mkdir -p "$SD/haproxy"
  sed -e "s|@WORK@|$SD/haproxy|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@BACKEND@|127.0.0.1:$bport|g" \
    -e 's|timeout tunnel 10s|timeout tunnel 5s|' -e 's|10 s without traffic|5 s without traffic|' \
    "$PEERS/haproxy.cfg.in" >"$SD/haproxy/haproxy.cfg"
  grep -q "timeout tunnel 5s" "$SD/haproxy/haproxy.cfg" || die "haproxy.cfg: timeout tunnel not set"
  haproxy -c -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy-c.out" 2>&1 || die "haproxy -c: $(cat "$SD/haproxy-c.out")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  "$PY" "$PEERS/py_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  haproxy -db -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy.log" 2>&1 & hap=$!; track $hap
  local i=0; until ss -Htln "sport = :$port" | grep -q .; do sleep 0.05; i=$((i+1)); if ((i>200)); then die "haproxy did not listen"; fi; done
  run_fg timeout 40 "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv heartbeat:1:8 wait-closed:20 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $hap TERM; stop_capture $tdp
  local ev proxyj
  ev=$(grep -hE "fe_ws|be_ws" "$SD/haproxy.log" | grep -v Proxy | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"haproxy","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":5,"setting":"timeout tunnel 5s (timeout client/server 30s)","log_evidence":sys.argv[3]}))' "127.0.0.1:$port" "127.0.0.1:$bport" "$ev")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (scripts/peers/diag_client.py) -> HAProxy $(haproxy -v | head -1 | awk '{print $3}') (mode http, timeout tunnel 5s) on 127.0.0.1:$port -> Python websockets backend on 127.0.0.1:$bport. 'hello' is echoed; the client's application heartbeat pings 1 s after that (payload hb1, answered by the backend's pong through HAProxy) and then only every 8 s, longer than the 5 s tunnel timeout: 5 s after the pong HAProxy closes both legs without close frames, before the second ping. Only one ping, so no interval can be measured: the heartbeat stopped for longer than the timeout." \
    software="$SOFTWARE" command="haproxy -db -f haproxy.cfg (scripts/peers/haproxy.cfg.in with timeout tunnel 5s); py_server.py --port $bport; diag_client.py --url ws://127.0.0.1:$port/ send:text:hello recv heartbeat:1:8 wait-closed:20" \
    capture_command="$(capture_cmds_json)" proxy="$proxyj"
  diag_finalize $name "$cap"
}

# HAProxy with option independent-streams and timeout tunnel 5s; the upstream never sends anything after its 101
rec_diag_one_way_heartbeat() {
  local name=diag-one-way-heartbeat port=9213 bport=9223 cap tdp backend hap
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port $bport
  mkdir -p "$SD/haproxy"
  sed -e "s|@WORK@|$SD/haproxy|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@BACKEND@|127.0.0.1:$bport|g" \
    -e 's|timeout tunnel 10s|timeout tunnel 5s\n    # each direction has its own read timeout: what the client sends does not\n    # refresh the timeout of reading from the server\n    option independent-streams|' \
    -e 's|10 s without traffic|5 s without traffic|' \
    "$PEERS/haproxy.cfg.in" >"$SD/haproxy/haproxy.cfg"
  grep -q "option independent-streams" "$SD/haproxy/haproxy.cfg" || die "haproxy.cfg: independent-streams not set"
  haproxy -c -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy-c.out" 2>&1 || die "haproxy -c: $(cat "$SD/haproxy-c.out")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  "$PY" "$PEERS/diag_silent_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  haproxy -db -f "$SD/haproxy/haproxy.cfg" >"$SD/haproxy.log" 2>&1 & hap=$!; track $hap
  local i=0; until ss -Htln "sport = :$port" | grep -q .; do sleep 0.05; i=$((i+1)); if ((i>200)); then die "haproxy did not listen"; fi; done
  run_fg timeout 40 "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    heartbeat:0.5:2 wait-closed:20 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $hap TERM; stop_capture $tdp
  local ev proxyj
  ev=$(grep -hE "fe_ws|be_ws" "$SD/haproxy.log" | grep -v Proxy | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"haproxy","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":5,"setting":"timeout tunnel 5s with option independent-streams (timeout client/server 30s)","log_evidence":sys.argv[3]}))' "127.0.0.1:$port" "127.0.0.1:$bport" "$ev")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (scripts/peers/diag_client.py) -> HAProxy $(haproxy -v | head -1 | awk '{print $3}') (mode http, timeout tunnel 5s, option independent-streams) on 127.0.0.1:$port -> a raw upstream (scripts/peers/diag_silent_server.py) on 127.0.0.1:$bport that answers the upgrade with 101 and then never sends anything: no pong, no data. The client pings 0.5 s after the handshake and then every 2 s (hb1, hb2, ...); HAProxy relays every ping to the upstream, nothing ever comes back. With independent-streams, the client's traffic does not refresh the timeout of reading from the upstream: 5 s after the 101 HAProxy closes both legs (no close frames) although client->server pings kept flowing." \
    software="$SOFTWARE" command="haproxy -db -f haproxy.cfg (scripts/peers/haproxy.cfg.in with timeout tunnel 5s + option independent-streams); diag_silent_server.py --port $bport; diag_client.py --url ws://127.0.0.1:$port/ heartbeat:0.5:2 wait-closed:20" \
    capture_command="$(capture_cmds_json)" proxy="$proxyj"
  diag_finalize $name "$cap"
}

# nginx with proxy_read_timeout 5s; the upstream never sends anything after its 101
rec_diag_nginx_pings_keep_alive() {
  local name=diag-nginx-pings-keep-alive port=9217 bport=9227 cap tdp backend ngx
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port $bport
  mkdir -p "$SD/nginx/tmp"
  sed -e "s|@WORK@|$SD/nginx|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@BACKEND@|127.0.0.1:$bport|g" \
    -e 's|proxy_read_timeout 60s;|proxy_read_timeout 5s;|' \
    "$PEERS/nginx.conf.in" >"$SD/nginx/nginx.conf"
  grep -q "proxy_read_timeout 5s;" "$SD/nginx/nginx.conf" || die "nginx.conf: proxy_read_timeout not set"
  nginx -t -p "$SD/nginx" -c "$SD/nginx/nginx.conf" 2>"$SD/nginx-t.err" || die "nginx -t: $(cat "$SD/nginx-t.err")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  "$PY" "$PEERS/diag_silent_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  nginx -p "$SD/nginx" -c "$SD/nginx/nginx.conf" -g 'daemon off;' 2>"$SD/nginx.err" & ngx=$!; track $ngx
  local i=0; until ss -Htln "sport = :$port" | grep -q .; do sleep 0.05; i=$((i+1)); if ((i>200)); then die "nginx did not listen"; fi; done
  run_fg timeout 40 "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    heartbeat:0.5:2 wait-closed:20 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $ngx QUIT; stop_capture $tdp
  local ev proxyj
  ev=$(grep -h "timed out" "$SD/nginx/error.log" | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"nginx","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":5,"setting":"proxy_read_timeout 5s","log_evidence":sys.argv[3]}))' "127.0.0.1:$port" "127.0.0.1:$bport" "$ev")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (scripts/peers/diag_client.py) -> nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') (proxy_read_timeout 5s) on 127.0.0.1:$port -> a raw upstream (scripts/peers/diag_silent_server.py) on 127.0.0.1:$bport that answers the upgrade with 101 and then never sends anything: no pong, no data. The client pings 0.5 s after the handshake and then every 2 s (hb1, hb2, ...), and nginx relays every ping to the upstream; nothing ever comes back. The scenario was meant to show a one-way timeout, but nginx 1.22 re-arms proxy_read_timeout on traffic in either direction of an upgraded connection (ngx_http_upstream_process_upgraded re-adds the upstream read timer on every event): the client's pings keep it alive although the upstream never sends a byte. The client's heartbeat stops when its wait ends (last ping about 18.5 s after the handshake); 5 s later, with both directions silent, nginx closes both legs (FIN, no close frames). Every ping went unanswered." \
    software="$SOFTWARE" command="nginx -p WORK -c nginx.conf (scripts/peers/nginx.conf.in with proxy_read_timeout 5s); diag_silent_server.py --port $bport; diag_client.py --url ws://127.0.0.1:$port/ heartbeat:0.5:2 wait-closed:20" \
    capture_command="$(capture_cmds_json)" proxy="$proxyj"
  diag_finalize $name "$cap"
}

rec_diag_peer_unreachable() {
  local name=diag-peer-unreachable port=9214 cap tdp srv br
  new_scenario $name; cap="$SD/$name.pcap"
  local C=wsd-cli M=wsd-mid S=wsd-srv ns
  for ns in $C $M $S; do ip netns del $ns 2>/dev/null || true; ip netns add $ns; NETNS_MADE+=($ns); done
  ip link add wsd-c0 netns $C type veth peer name wsd-c1 netns $M
  ip link add wsd-s0 netns $S type veth peer name wsd-s1 netns $M
  for ns in $C $M $S; do
    ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n $ns link set lo up
  done
  ip -n $C addr add 10.232.0.1/24 dev wsd-c0
  ip -n $S addr add 10.232.0.2/24 dev wsd-s0
  ip -n $C link set wsd-c0 up; ip -n $S link set wsd-s0 up
  ip -n $M link set wsd-c1 up promisc on; ip -n $M link set wsd-s1 up promisc on
  ip netns exec $C ethtool -K wsd-c0 tx off sg off tso off gso off >/dev/null 2>&1 || true
  ip netns exec $S ethtool -K wsd-s0 tx off sg off tso off gso off >/dev/null 2>&1 || true
  ip netns exec $M "$PY" "$PEERS/diag_cut_bridge.py" --a wsd-c1 --b wsd-s1 --port $port --trigger "$SD/cut" \
    --log "$SD/logs/path.jsonl" 2>"$SD/bridge.err" & br=$!; track $br
  wait_event "$SD/logs/path.jsonl" listening
  NETNS_EXEC="ip netns exec $C" start_tcpdump tdp "$cap" wsd-c0 "tcp port $port"
  ip netns exec $S "$PY" "$PEERS/py_server.py" --host 10.232.0.2 --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 60 ip netns exec $C "$PY" "$PEERS/diag_client.py" --url ws://10.232.0.2:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv send:text:still-there recv "touch:$SD/cut" sleep:0.1 send-every:1:6 abort-rst 2>"$SD/client.err"
  sleep 0.3
  stop_capture $tdp
  kill -KILL $srv; wait $srv 2>/dev/null || true
  stop $br TERM
  for ns in $C $M $S; do ip netns del $ns; done; NETNS_MADE=()
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (netns wsd-cli, 10.232.0.1; scripts/peers/diag_client.py) and server (netns wsd-srv, 10.232.0.2:$port) joined through a middle netns whose user-space bridge (scripts/peers/diag_cut_bridge.py) forwards every frame. Two messages are echoed; then the client tells the bridge to cut the path from the server to the client (every frame server->client dropped, listed in 'impairments'; client->server still flows). The client goes on sending one message a second (m1..m6) without an answer: no ACK ever comes back, its kernel retransmits with exponential RTO. After 6 s it gives up with SO_LINGER 0 + close(): RST. Captured on the client's veth wsd-c0." \
    software="$SOFTWARE" command="diag_cut_bridge.py --a wsd-c1 --b wsd-s1 --trigger CUT; py_server.py --host 10.232.0.2 --port $port; diag_client.py send:text:hello recv send:text:still-there recv touch:CUT sleep:0.1 send-every:1:6 abort-rst" \
    capture_command="$(capture_cmds_json)"
  diag_finalize $name "$cap"
}

rec_diag_middlebox_reset() {
  local name=diag-middlebox-reset port=9215 cap tdp srv inj
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/diag_forge_rst.py" --port $port --trigger "$SD/inject" --ttl 255 --log "$SD/logs/middlebox.jsonl" 2>"$SD/inject.err" & inj=$!; track $inj
  wait_event "$SD/logs/middlebox.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/ --log "$SD/logs/client.jsonl" \
    send:text:hello recv "send:text:how are you?" recv sleep:0.5 "touch:$SD/inject" wait-closed:5 2>"$SD/client.err"
  wait_exit $inj 10
  sleep 0.3
  stop_capture $tdp
  # after the capture: the server still believes the connection is open; SIGKILL it so that nothing is logged
  kill -KILL $srv; wait $srv 2>/dev/null || true
  meta "$SD/meta.json" name=$name \
    description="Python websockets client and server on 127.0.0.1:$port (scripts/peers/diag_client.py, py_server.py). Two messages are echoed; 0.5 s later a forger (scripts/peers/diag_forge_rst.py, a raw IPv4 socket) injects one TCP RST with the server's address and port, the exact sequence number the client expects, and IP TTL 255 (the real peers' packets have TTL 64). The client's kernel accepts it: the client sees 'connection reset' from the server, no close frame (abnormal). The real server never sent a RST and still believes the connection is open when the capture stops." \
    software="$SOFTWARE" command="py_server.py --port $port; diag_forge_rst.py --port $port --ttl 255; diag_client.py send:text:hello recv 'send:text:how are you?' recv sleep:0.5 touch:INJECT wait-closed:5" \
    capture_command="$(capture_cmds_json)"
  diag_finalize $name "$cap"
}

rec_diag_duplicate_connection() {
  local name=diag-duplicate-connection port=9216 cap tdp srv old
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "$PY" "$PEERS/py_server.py" --port $port --log "$SD/logs/server.jsonl" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/feed --log "$SD/logs/client-old.jsonl" --name client-old \
    keepalive:11 "touch:$SD/old-open" hold 2>"$SD/client-old.err" & old=$!; track $old
  wait_file "$SD/old-open"
  sleep 2
  run_fg timeout 30 "$PY" "$PEERS/diag_client.py" --url ws://127.0.0.1:$port/feed --log "$SD/logs/client-new.jsonl" --name client-new \
    send:text:hello recv sleep:1 send:text:update-1 recv sleep:1 send:text:update-2 recv sleep:1 close:1000:bye 2>"$SD/client-new.err"
  say "the old connection stays open and silent (TCP keep-alive probes every 11 s) until 35 s after it opened"
  sleep 29.5
  stop_capture $tdp
  # after the capture: SIGKILL, so that nothing they do now is logged
  kill -KILL $old $srv; wait $old $srv 2>/dev/null || true
  meta "$SD/meta.json" name=$name \
    description="Python websockets server on 127.0.0.1:$port; two Python websockets clients (scripts/peers/diag_client.py) from 127.0.0.1 with the same path /feed and the same User-Agent (websockets' default). The first ('old') opens its connection, turns on TCP keep-alive (SO_KEEPALIVE, 11 s) and then says nothing at all: no message, no ping. 2 s later a second connection ('new') opens, exchanges three echoed messages a second apart and closes 1000 'bye' (clean). The old connection stays open and silent; only its kernel's keep-alive probes (about 11, 22 and 33 s after it opened, each ACKed by the server) show it is still there. The capture stops about 35 s after the old connection opened, while it is still open: a leaked duplicate connection." \
    software="$SOFTWARE" command="py_server.py --port $port; diag_client.py --url ws://127.0.0.1:$port/feed keepalive:11 touch:OPEN hold; 2 s later diag_client.py --url ws://127.0.0.1:$port/feed send:text:hello recv ... close:1000:bye" \
    capture_command="$(capture_cmds_json)"
  diag_finalize $name "$cap"
}

diag_main() {
  local want=() a s
  for a in "$@"; do
    case $a in
      --list) printf '%s\n' "${DIAG_SCENARIOS[@]}"; exit 0 ;;
      -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
      *) printf '%s\n' "${DIAG_SCENARIOS[@]}" | grep -qx -- "$a" || die "unknown scenario '$a' (--list)"; want+=("$a") ;;
    esac
  done
  ((${#want[@]})) || want=("${DIAG_SCENARIOS[@]}")
  install_deps
  SOFTWARE=$(software_json)
  mkdir -p "$FIX"
  WORK=$(mktemp -d /tmp/wsclose-record.XXXXXX)
  say "work folder: $WORK"
  for s in "${want[@]}"; do
    "rec_${s//-/_}"
  done
  say "recorded: ${DONE[*]}"
  if ((${#FAILED[@]})); then
    printf '[record] PROBLEM: %s\n' "${FAILED[@]}" >&2
    exit 1
  fi
}

diag_main "$@"
