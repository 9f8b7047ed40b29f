#!/usr/bin/env bash
# Record the wss:// (TLS) fixtures of wsclose from real peers on loopback.
#
#   scripts/record-tls-fixtures.sh            # install what is missing, record every scenario
#   scripts/record-tls-fixtures.sh NAME...    # record only these scenarios
#   scripts/record-tls-fixtures.sh --list     # list the scenarios
#   WSCLOSE_SKIP_INSTALL=1 scripts/record-tls-fixtures.sh ...   # do not touch packages
#   WSCLOSE_KEEP_WORK=1 ...                   # keep the work folder (peer logs, keys, configs)
#
# The companion of scripts/record-fixtures.sh (plaintext fixtures), with the
# same peers and the same truth machinery.  For each scenario it writes, into
# fixtures/:
#   NAME.pcap            the capture (tcpdump -i lo, started before the peers)
#   NAME.keylog          the NSS key log written by the Python client
#                        (ssl.SSLContext.keylog_filename); the tshark oracle picks
#                        up <capture-stem>.keylog by itself
#   NAME.truth.json      what the peers logged about their own actions
#                        (scripts/merge_truth.py), plus a "tls" object: the
#                        negotiated version and suite and how tshark verified them
#                        (scripts/peers/tls_verify.py)
#   NAME.tshark.json     tshark's view made WITH the key log
#                        (scripts/peers/tls_tshark_view.py -> scripts/tshark_view.py)
# and in addition
#   tls13-aes128-client-close-dsb.pcapng (+ .truth.json, .tshark.json): the same
#       capture with its keys in a pcapng Decryption Secrets Block (editcap --inject-secrets)
#   tls-nokeys-rst.nokeys.tshark.json: tshark's view of that capture without the keys
#
# A scenario fails (and leaves its committed files alone) unless tshark shows
# the requested TLS version and cipher suite in every ServerHello, decrypts the
# WebSocket frames the peers logged (close frames included) with the key log,
# and shows none of them without it.  Must run as root (packet capture).
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
FIX="$REPO/fixtures"
PEERS="$HERE/peers"
WEBSOCKETS_VERSION="17.4"

SCENARIOS=(
  tls13-aes128-client-close     # also writes tls13-aes128-client-close-dsb.pcapng
  tls13-aes256-server-close
  tls13-chacha20-client-close
  tls12-ecdhe-aes128-gcm
  tls12-ecdhe-aes256-gcm
  tls12-ecdhe-chacha20
  tls-nginx-idle-timeout
  tls-nokeys-rst                # also writes tls-nokeys-rst.nokeys.tshark.json
)

say() { printf '[record-tls] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup --
PIDS=()
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

# run_fg CMD...: run a command to its end as a waited-for background job (INT/TERM reach the trap)
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

wait_listen() {
  local p=$1 i=0
  until ss -Htln "sport = :$p" | grep -q .; do
    sleep 0.05; i=$((i + 1)); if ((i > 200)); then die "nothing listens on port $p"; fi
  done
}

port_free() {
  local p
  for p in "$@"; do
    if ss -Htln "sport = :$p" | grep -q .; then die "port $p has a listener (a leftover peer?): $(ss -Htlnp "sport = :$p" | head -3)"; fi
  done
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

jlist() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@"; }

# ------------------------------------------------------------------ capture --
# start_tcpdump VAR OUT IFACE FILTER [EXTRA_ARGS...]; the pid is stored in VAR
start_tcpdump() {
  local __var=$1 out=$2 iface=$3 filter=$4; shift 4
  local err="$SD/$(basename "$out").tcpdump.err"
  rm -f "$out"
  # --immediate-mode: every packet reaches the file at once; -B 65536: a 64 MiB
  # ring (in immediate mode each slot is as large as the 64 KiB loopback MTU)
  tcpdump --immediate-mode -B 65536 -U -n -i "$iface" -w "$out" "$@" "$filter" 2>"$err" &
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

# stop_capture PID: let the last packets reach the file, then SIGINT and wait
stop_capture() {
  sleep 0.7
  stop "$1" INT 10
  local err
  for err in "$SD"/*.tcpdump.err; do
    [[ -e $err ]] || continue
    if grep -qE '^[1-9][0-9]* packets dropped by kernel' "$err"; then
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
    command -v tshark >/dev/null || need+=(tshark)
    command -v editcap >/dev/null || need+=(wireshark-common)
    command -v openssl >/dev/null || need+=(openssl)
    command -v ss >/dev/null || need+=(iproute2)
    if ((${#need[@]})); then
      say "apt-get install ${need[*]}"
      echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
    # Python websockets, pinned as in record-fixtures.sh (same venv fallback)
    if ! "$PY" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
      say "pip install websockets==$WEBSOCKETS_VERSION"
      if ! "$PY" -m pip install -q "websockets==$WEBSOCKETS_VERSION" 2>/dev/null; then
        [[ -x "$HERE/.venv/bin/python" ]] || { "$PY" -m venv "$HERE/.venv" 2>/dev/null || {
          DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; "$PY" -m venv "$HERE/.venv"; }; }
        PY="$HERE/.venv/bin/python"
        "$PY" -m pip install -q "websockets==$WEBSOCKETS_VERSION"
      fi
    fi
  fi
  [[ -x "$HERE/.venv/bin/python" ]] && "$HERE/.venv/bin/python" -c "import websockets" 2>/dev/null && PY="$HERE/.venv/bin/python"
  "$PY" -c "import websockets" || die "python websockets missing"
  "$PY" -c "import ssl, sys; sys.exit(not hasattr(ssl.SSLContext, 'keylog_filename'))" || die "this Python's ssl has no keylog_filename"
  local t
  for t in tcpdump editcap capinfos tshark nginx openssl ss; do
    command -v "$t" >/dev/null || die "$t missing"
  done
  [[ $(id -u) == 0 ]] || die "must run as root (packet capture)"
}

software_json() {
  "$PY" - "$(tcpdump --version 2>&1 | head -1 | awk '{print $3}')" "$(tshark --version 2>/dev/null | head -1 | awk '{print $3}')" \
    "$(nginx -V 2>&1 | sed -n 's|^nginx version: nginx/||p')" "$(nginx -V 2>&1 | sed -n 's|^built with ||p')" "$(uname -r)" <<'EOF'
import json, platform, ssl, sys
import websockets
print(json.dumps({"python": platform.python_version(), "python_websockets": websockets.__version__,
                  "python_ssl": ssl.OPENSSL_VERSION, "tcpdump": sys.argv[1], "tshark": sys.argv[2],
                  "nginx": sys.argv[3], "nginx_tls": sys.argv[4], "kernel": sys.argv[5]}))
EOF
}

# ------------------------------------------------------------------ TLS setup --
# Self-signed certificates for CN=localhost: P-256 ECDSA (ECDHE-ECDSA suites, TLS 1.3)
# and RSA-2048 (ECDHE-RSA suites, nginx).  New ones at every run.
make_certs() {
  CERTS="$WORK/certs"; mkdir -p "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=localhost -keyout "$CERTS/ec.key" -out "$CERTS/ec.crt" >/dev/null 2>&1 || die "openssl req (ec)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
    -subj /CN=localhost -keyout "$CERTS/rsa.key" -out "$CERTS/rsa.crt" >/dev/null 2>&1 || die "openssl req (rsa)"
}

# suite_conf SUITE: an OpenSSL config pinning one TLS 1.3 suite (Python 3.11 has no
# set_ciphersuites), for OPENSSL_CONF of the server process (as scripts/make-tls-vectors.py does)
suite_conf() {
  local f="$WORK/openssl-$1.cnf"
  cat >"$f" <<EOF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = $1
EOF
  printf '%s' "$f"
}

# ------------------------------------------------------------------ finalize --
FAILED=()
DONE=()
own() { chown "$(stat -c %u:%g "$FIX")" "$@"; chmod 0644 "$@"; }

# finalize_tls NAME CAPTURE [tls_verify.py args: --expect PORT=VER:SUITE ...]
# The key log next to the capture is $SD/NAME.keylog: the oracle uses it by itself.
finalize_tls() {
  local name=$1 cap=$2; shift 2
  local keylog="$SD/$name.keylog" truth="$SD/$name.truth.json" tsj="$SD/$name.tshark.json" extra=()
  [[ -s $cap ]] || die "$name: no capture file"
  [[ -s $SD/client.keys ]] || die "$name: the client wrote no key log"
  cp "$SD/client.keys" "$keylog"
  own "$cap" "$keylog"
  "$PY" "$PEERS/tls_tshark_view.py" "$cap" >&2
  grep -q "\"tls.keylog_file:$name.keylog\"" "$tsj" || die "$name: the tshark view was not made with the key log"
  if [[ $name == tls-nokeys-rst ]]; then
    "$PY" "$PEERS/tls_tshark_view.py" --nokeys "$cap" "$SD/$name.nokeys.tshark.json" >&2
    extra+=(--nokeys-view "$SD/$name.nokeys.tshark.json")
  fi
  [[ -s $SD/server.keys ]] && extra+=(--server-keylog "$SD/server.keys")
  local merged=0
  "$PY" "$HERE/merge_truth.py" --meta "$SD/meta.json" --logs "$SD/logs" --capture "$cap" \
      --tshark "$tsj" --out "$truth" >&2 || merged=1
  "$PY" "$PEERS/tls_verify.py" --capture "$cap" --keylog "$keylog" --view "$tsj" --logs "$SD/logs" \
      --truth "$truth" "${extra[@]}" "$@" >&2 || die "$name: TLS verification failed (fixtures/ left as it was)"
  if ((merged != 0)); then
    # Both peers close their sockets within a few ms of each other over TLS:
    # if their logs order the FINs differently from the capture, record again.
    if ((${RETRIES_LEFT:-0} > 0)); then
      say "$name: a peer fact disagrees with tshark: recording again (${RETRIES_LEFT} more attempt(s))"
      AGAIN=1
      return 0
    fi
    FAILED+=("$name: truth disagrees with tshark (see agreement_with_tshark in $name.truth.json)")
  fi

  local files=("$cap" "$keylog" "$truth" "$tsj")
  if [[ $name == tls13-aes128-client-close ]]; then
    # the same capture, its keys embedded in a Decryption Secrets Block
    local dsb="$SD/dsb/$name-dsb.pcapng"
    mkdir -p "$SD/dsb"
    editcap --inject-secrets "tls,$keylog" "$cap" "$dsb"
    own "$dsb"
    "$PY" "$PEERS/tls_tshark_view.py" "$dsb" >&2
    python3 - "$SD/meta.json" "$SD/meta-dsb.json" "$name" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
m["name"] = sys.argv[3] + "-dsb"
m["description"] += (" This file is " + sys.argv[3] + ".pcap converted to pcapng by editcap --inject-secrets tls,"
                     + sys.argv[3] + ".keylog: the same packets and times, with the key log in a Decryption Secrets "
                     "Block, so no separate key file is needed.")
m["capture_command"] = m["capture_command"] + ["editcap --inject-secrets tls," + sys.argv[3] + ".keylog "
                                               + sys.argv[3] + ".pcap " + sys.argv[3] + "-dsb.pcapng"]
json.dump(m, open(sys.argv[2], "w"), indent=1)
EOF
    "$PY" "$HERE/merge_truth.py" --meta "$SD/meta-dsb.json" --logs "$SD/logs" --capture "$dsb" \
        --tshark "$SD/dsb/$name-dsb.tshark.json" --out "$SD/dsb/$name-dsb.truth.json" >&2 \
      || FAILED+=("$name-dsb: truth disagrees with tshark")
    "$PY" "$PEERS/tls_verify.py" --capture "$dsb" --dsb --view "$SD/dsb/$name-dsb.tshark.json" --logs "$SD/logs" \
        --truth "$SD/dsb/$name-dsb.truth.json" "$@" >&2 || die "$name-dsb: TLS verification failed"
    files+=("$dsb" "$SD/dsb/$name-dsb.truth.json" "$SD/dsb/$name-dsb.tshark.json")
  fi
  [[ $name == tls-nokeys-rst ]] && files+=("$SD/$name.nokeys.tshark.json")
  own "${files[@]}"
  rm -f "$FIX/$name".{pcap,pcapng,keylog,keys,truth.json,tshark.json,nokeys.tshark.json} "$FIX/$name"-dsb.{pcapng,truth.json,tshark.json}
  mv -f "${files[@]}" "$FIX/"
  local n
  n=$(python3 -c 'import json,sys; print(sum(len(s["ws_frames"]) for s in json.load(open(sys.argv[1]))["streams"]))' "$FIX/$name.tshark.json")
  say "$name: $(basename "$cap") $(stat -c %s "$FIX/$(basename "$cap")") bytes, $(capinfos -c -M "$FIX/$(basename "$cap")" | awk -F': *' '/Number of packets/{print $2}') packets, $n WebSocket frames decrypted by tshark"
  DONE+=("$name")
}

# Everything is recorded into the work folder; finalize_tls() moves the files
# of a fixture into fixtures/ only once they are complete and verified.
new_scenario() {
  SD="$WORK/$1"
  rm -rf "$SD"; mkdir -p "$SD/logs"
  CAPTURE_CMDS=()
  say "=== $1"
}

# ================================================================ scenarios ==
# direct NAME PORT VERSION SUITE CERT DESCRIPTION: a Python websockets client and
# server talking wss:// directly.  Uses the arrays SRV_ARGS (py_server.py switches)
# and ACTS (client actions).  Recorded again (at most twice) when merge_truth.py
# finds a peer fact that the capture contradicts.
direct() {
  for RETRIES_LEFT in 2 1 0; do
    AGAIN=0
    direct_once "$@"
    ((AGAIN == 1)) || return 0
  done
}

direct_once() {
  local name=$1 port=$2 ver=$3 suite=$4 cert=$5 desc=$6
  local cap tdp srv envs=() pin=(--tls-version "$ver") how
  new_scenario "$name"; cap="$SD/$name.pcap"; port_free "$port"
  if [[ $ver == 1.3 ]]; then
    envs=(env "OPENSSL_CONF=$(suite_conf "$suite")")
    how="OPENSSL_CONF with 'Ciphersuites = $suite' for the server process; both sides minimum_version = maximum_version = TLSv1.3"
  else
    pin+=(--ciphers "$suite")
    how="server SSLContext.set_ciphers('$suite'); both sides minimum_version = maximum_version = TLSv1.2"
  fi
  start_tcpdump tdp "$cap" lo "tcp port $port"
  "${envs[@]}" "$PY" "$PEERS/tls_server.py" --cert "$CERTS/$cert.crt" --key "$CERTS/$cert.key" "${pin[@]}" \
    --keylog "$SD/server.keys" --port "$port" --log "$SD/logs/server.jsonl" "${SRV_ARGS[@]}" 2>"$SD/server.err" & srv=$!; track $srv
  wait_event "$SD/logs/server.jsonl" listening
  run_fg timeout 30 "$PY" "$PEERS/tls_client.py" --url "wss://127.0.0.1:$port/" --tls-version "$ver" \
    --keylog "$SD/client.keys" --log "$SD/logs/client.jsonl" "${ACTS[@]}" 2>"$SD/client.err"
  stop $srv TERM; stop_capture $tdp
  local cmd=""
  [[ $ver == 1.3 ]] && cmd="OPENSSL_CONF=openssl.cnf (Ciphersuites = $suite) "
  cmd+="tls_server.py --cert $cert.crt --key $cert.key ${pin[*]} --keylog server.keys --port $port${SRV_ARGS[*]:+ ${SRV_ARGS[*]}}; tls_client.py --url wss://127.0.0.1:$port/ --tls-version $ver --keylog $name.keylog ${ACTS[*]}"
  meta "$SD/meta.json" name="$name" description="$desc" software="$SOFTWARE" command="$cmd" \
    capture_command="$(jlist "${CAPTURE_CMDS[@]}")" \
    notes="TLS $ver, $suite, $cert certificate (self-signed, CN=localhost). Pinned with: $how. The key log ($name.keylog) was written by the client with ssl.SSLContext.keylog_filename; the server wrote the same secrets (checked). Over TLS, asyncio cannot half-close (no write_eof): the side that ends the session sends a TLS close_notify (tls_close_notify in peer_events), the peer answers with its own close_notify and closes its socket, and the first side closes its socket when that close_notify arrives. The two socket closes follow within a few ms, so which FIN comes first varies between recordings: first_fin comes from the peers' socket_closed events and is checked against the capture. Over TLS the websockets event eof_received (noted by wsclog.py as the peer's FIN) means that the TLS layer saw the peer's close_notify."
  finalize_tls "$name" "$cap" --expect "$port=$ver:$suite"
}

rec_tls13_aes128_client_close() {
  SRV_ARGS=()
  ACTS=(send:text:hello recv send:bin:00010203fffe recv "send:text:how are you?" recv ping close:1000:bye)
  direct tls13-aes128-client-close 9121 1.3 TLS_AES_128_GCM_SHA256 ec \
    "Python websockets client and server over TLS 1.3 (TLS_AES_128_GCM_SHA256) on 127.0.0.1:9121 (wss://). Text 'hello', binary 00010203fffe, text 'how are you?' (each echoed), one client ping answered by a pong, then the client closes with 1000 'bye' and the server replies 1000 'bye' (clean). The server then starts the TLS shutdown (close_notify); the client answers with its close_notify and closes its socket first."
}

rec_tls13_aes256_server_close() {
  SRV_ARGS=(--close-on please-close=4001:custom)
  ACTS=(send:text:hello recv ping "send:text:one more" recv send:text:please-close wait-closed:10)
  direct tls13-aes256-server-close 9122 1.3 TLS_AES_256_GCM_SHA384 ec \
    "Python websockets client and server over TLS 1.3 (TLS_AES_256_GCM_SHA384) on 127.0.0.1:9122 (wss://). Two messages echoed and a client ping answered; the client then sends 'please-close' and the server closes with the application code 4001 'custom'; the client replies 4001 'custom' (clean)."
}

rec_tls13_chacha20_client_close() {
  SRV_ARGS=()
  ACTS=(send:text:hello recv send:bin:cafe recv close:1001:)
  direct tls13-chacha20-client-close 9123 1.3 TLS_CHACHA20_POLY1305_SHA256 ec \
    "Python websockets client and server over TLS 1.3 (TLS_CHACHA20_POLY1305_SHA256) on 127.0.0.1:9123 (wss://). Two messages echoed, then the client closes with 1001 (going away, empty reason, as a browser leaving the page); the server replies 1001 (clean)."
}

rec_tls12_ecdhe_aes128_gcm() {
  SRV_ARGS=()
  ACTS=(send:text:hello recv send:bin:0102 recv ping close:1000:bye)
  direct tls12-ecdhe-aes128-gcm 9124 1.2 ECDHE-RSA-AES128-GCM-SHA256 rsa \
    "Python websockets client and server over TLS 1.2 (ECDHE-RSA-AES128-GCM-SHA256, RSA-2048 certificate) on 127.0.0.1:9124 (wss://). Two messages echoed, a client ping answered, then the client closes with 1000 'bye' and the server replies (clean)."
}

rec_tls12_ecdhe_aes256_gcm() {
  SRV_ARGS=("--close-on" "please-close=4002:server done")
  ACTS=(send:text:hello recv send:text:please-close wait-closed:10)
  direct tls12-ecdhe-aes256-gcm 9125 1.2 ECDHE-ECDSA-AES256-GCM-SHA384 ec \
    "Python websockets client and server over TLS 1.2 (ECDHE-ECDSA-AES256-GCM-SHA384, P-256 certificate) on 127.0.0.1:9125 (wss://). One message echoed, then the client sends 'please-close' and the server closes with 4002 'server done'; the client replies 4002 'server done' (clean)."
}

rec_tls12_ecdhe_chacha20() {
  SRV_ARGS=()
  ACTS=(send:text:hello recv "send:text:and again" recv "close:4003:client done")
  direct tls12-ecdhe-chacha20 9126 1.2 ECDHE-ECDSA-CHACHA20-POLY1305 ec \
    "Python websockets client and server over TLS 1.2 (ECDHE-ECDSA-CHACHA20-POLY1305, P-256 certificate) on 127.0.0.1:9126 (wss://). Two messages echoed, then the client closes with 4003 'client done' and the server replies (clean)."
}

rec_tls_nokeys_rst() {
  SRV_ARGS=()
  ACTS=(send:text:hello recv "send:text:still here" recv sleep:3 reset)
  direct tls-nokeys-rst 9128 1.3 TLS_AES_128_GCM_SHA256 ec \
    "Python websockets client and server over TLS 1.3 (TLS_AES_128_GCM_SHA256) on 127.0.0.1:9128 (wss://). Two messages echoed, then 3 s of silence, then the client aborts: setsockopt(SO_LINGER, {on, 0}) and close(), so its kernel sends an RST: no close frame, no TLS close_notify, no FIN (abnormal). The key log is kept (tls-nokeys-rst.keylog) but the capture is meant to be read without it too: tls-nokeys-rst.nokeys.tshark.json is tshark's view without the keys (TLS records only, the RST)."
}

rec_tls_nginx_idle_timeout() {
  local name=tls-nginx-idle-timeout port=9127 bport=9227 cap tdp backend ngx idle=5
  local suite=TLS_AES_256_GCM_SHA384
  new_scenario $name; cap="$SD/$name.pcap"; port_free $port $bport
  mkdir -p "$SD/nginx/tmp"
  cat >"$SD/nginx/nginx.conf" <<EOF
# nginx terminating TLS in front of a plaintext WebSocket backend, for record-tls-fixtures.sh
worker_processes 1;
pid $SD/nginx/nginx.pid;
error_log $SD/nginx/error.log info;
events { worker_connections 64; }
http {
    access_log $SD/nginx/access.log;
    client_body_temp_path $SD/nginx/tmp/body;
    proxy_temp_path $SD/nginx/tmp/proxy;
    fastcgi_temp_path $SD/nginx/tmp/fastcgi;
    uwsgi_temp_path $SD/nginx/tmp/uwsgi;
    scgi_temp_path $SD/nginx/tmp/scgi;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream ws_backend { server 127.0.0.1:$bport; }
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $CERTS/rsa.crt;
        ssl_certificate_key $CERTS/rsa.key;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites $suite;
        ssl_session_tickets off;
        location / {
            proxy_pass http://ws_backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_set_header X-Client-Port \$remote_port;
            proxy_read_timeout ${idle}s;
            proxy_send_timeout ${idle}s;
        }
    }
}
EOF
  nginx -t -p "$SD/nginx" -c "$SD/nginx/nginx.conf" 2>"$SD/nginx-t.err" || die "nginx -t: $(cat "$SD/nginx-t.err")"
  start_tcpdump tdp "$cap" lo "tcp port $port or tcp port $bport"
  "$PY" "$PEERS/py_server.py" --port $bport --name backend --log "$SD/logs/backend.jsonl" 2>"$SD/backend.err" & backend=$!; track $backend
  wait_event "$SD/logs/backend.jsonl" listening
  nginx -p "$SD/nginx" -c "$SD/nginx/nginx.conf" -g 'daemon off;' 2>"$SD/nginx.err" & ngx=$!; track $ngx
  wait_listen $port
  say "nginx: idle for proxy_read_timeout ${idle}s"
  local acts=(send:text:hello recv "send:text:anyone there?" recv wait-closed:30)
  run_fg timeout 60 "$PY" "$PEERS/tls_client.py" --url "wss://127.0.0.1:$port/" --tls-version 1.3 \
    --keylog "$SD/client.keys" --log "$SD/logs/client.jsonl" "${acts[@]}" 2>"$SD/client.err"
  sleep 0.5
  stop $backend TERM; stop $ngx QUIT; stop_capture $tdp
  local ev proxyj
  ev=$(grep -h "timed out" "$SD/nginx/error.log" | head -2 | sed 's/"/'"'"'/g' | tr '\n' ' ' || true)
  proxyj=$(python3 -c 'import json,sys; print(json.dumps({"kind":"nginx","listen":sys.argv[1],"backend":sys.argv[2],"idle_seconds":int(sys.argv[4]),"setting":"proxy_read_timeout "+sys.argv[4]+"s, proxy_send_timeout "+sys.argv[4]+"s","tls":"nginx terminates TLS 1.3 ("+sys.argv[5]+", RSA-2048 self-signed certificate) on the client leg; the backend leg is plaintext","log_evidence":sys.argv[3]}))' \
    "127.0.0.1:$port" "127.0.0.1:$bport" "$ev" "$idle" "$suite")
  meta "$SD/meta.json" name=$name \
    description="Python websockets client (wss://, ping_interval=None) -> nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') terminating TLS 1.3 ($suite) on 127.0.0.1:$port (proxy_http_version 1.1, Upgrade/Connection headers, proxy_read_timeout ${idle}s) -> plaintext Python websockets backend on 127.0.0.1:$bport (ping_interval=None). Two messages are echoed end to end, then nobody sends anything; after ${idle} s nginx times out ('upstream timed out ... while proxying upgraded connection') and closes both TCP connections without any WebSocket close frame. Both legs captured on lo: the client leg is TLS (decrypt it with tls-nginx-idle-timeout.keylog), the backend leg plaintext." \
    software="$SOFTWARE" \
    command="nginx -p WORK -c nginx.conf (listen ssl, ssl_protocols TLSv1.3, ssl_conf_command Ciphersuites $suite, proxy_read_timeout ${idle}s; written by record-tls-fixtures.sh); py_server.py --port $bport --name backend; tls_client.py --url wss://127.0.0.1:$port/ --tls-version 1.3 --keylog $name.keylog ${acts[*]}" \
    capture_command="$(jlist "${CAPTURE_CMDS[@]}")" proxy="$proxyj" \
    notes="nginx cannot write a key log; the client's key log covers the only TLS leg (client <-> nginx). The FIN/RST facts of both legs come from the capture (source: tshark) because nginx's socket calls are not logged."
  finalize_tls $name "$cap" --expect "$port=1.3:$suite"
}

# =================================================================== main ==
main() {
  local want=() a
  for a in "$@"; do
    case $a in
      --list) printf '%s\n' "${SCENARIOS[@]}"; exit 0 ;;
      -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
      tls13-aes128-client-close-dsb) want+=(tls13-aes128-client-close) ;;
      *) printf '%s\n' "${SCENARIOS[@]}" | grep -qx -- "$a" || die "unknown scenario '$a' (--list)"; want+=("$a") ;;
    esac
  done
  ((${#want[@]})) || want=("${SCENARIOS[@]}")
  install_deps
  SOFTWARE=$(software_json)
  mkdir -p "$FIX"
  WORK=$(mktemp -d /tmp/wsclose-tls-record.XXXXXX)
  say "work folder: $WORK"
  make_certs
  local s
  for s in "${want[@]}"; do
    "rec_${s//-/_}"
  done
  say "recorded: ${DONE[*]}"
  if ((${#FAILED[@]})); then
    printf '[record-tls] PROBLEM: %s\n' "${FAILED[@]}" >&2
    exit 1
  fi
}

main "$@"
