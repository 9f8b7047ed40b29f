#!/usr/bin/env python3
"""Check a wss:// recording with tshark and add its TLS facts to the truth file.

    tls_verify.py --capture CAP [--keylog KEYS | --dsb] --view CAP.tshark.json --logs DIR \
                  --truth NAME.truth.json --expect PORT=VERSION:SUITE [--expect ...] \
                  [--server-keylog KEYS2] [--nokeys-view V.json]

Fails (exit 1, with the reason on stderr) unless all of these hold:

  * every ServerHello sent from each --expect PORT negotiates exactly VERSION
    (1.2 / 1.3: tls.handshake.extensions.supported_version, else
    tls.handshake.version) and SUITE (tls.handshake.ciphersuite), read from
    the capture WITHOUT the key log (the hellos are plaintext);
  * the peers' own OpenSSL objects (tls_handshake_done in the logs) agree;
  * `tshark -r CAP -o tls.keylog_file:KEYS -Y websocket` shows WebSocket
    frames, and the close frames the peers logged (websocket.opcode == 8);
    with --dsb the keys come from the pcapng Decryption Secrets Block instead;
  * per connection and per direction, the (sender, opcode) sequence of the
    WebSocket frames in the tshark view is the one the peers logged (frames an
    instrumented side sent, plus frames it received from a side that is not
    instrumented, e.g. nginx);
  * WITHOUT the keys, tshark sees no WebSocket frame on the TLS legs (the
    capture really is encrypted);
  * with --server-keylog: the server wrote the same secrets as the client.

The truth file gets a top-level "tls" object with all of this.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from tls_wsclog import SUITE_IDS  # noqa: E402

VERSION_IDS = {"1.2": 0x0303, "1.3": 0x0304}
VERSION_NAMES = {0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
SUITE_NAMES = {v: k for k, v in SUITE_IDS.items()}
# IANA names for the TLS 1.2 suites (OpenSSL names them differently)
IANA = {
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)
    print(f"  TLS CHECK FAILED: {msg}", file=sys.stderr)


def tshark(args):
    res = subprocess.run(["tshark", "-n"] + args, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"tshark {' '.join(args)}: {res.stderr.strip()}")
    return [line.split("\t") for line in res.stdout.splitlines() if line.strip()]


def ep(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def first_int(v):
    v = v.split(",")[0].strip()
    return int(v, 0) if v else None


def server_hellos(cap):
    rows = tshark(["-r", cap, "-Y", "tls.handshake.type == 2", "-T", "fields",
                   "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                   "-e", "tls.handshake.version", "-e", "tls.handshake.ciphersuite",
                   "-e", "tls.handshake.extensions.supported_version"])
    out = []
    for r in rows:
        r += [""] * (8 - len(r))
        sv = first_int(r[7])
        out.append({"tcp_stream": int(r[0]), "server": ep(r[1], r[2]), "client": ep(r[3], r[4]),
                    "port": int(r[2]), "legacy_version": first_int(r[5]),
                    "ciphersuite": first_int(r[6]), "supported_version": sv,
                    "negotiated_version": sv if sv else first_int(r[5])})
    return out


def load_events(d):
    ev = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".jsonl"):
            with open(os.path.join(d, name)) as f:
                ev += [json.loads(line) for line in f if line.strip()]
    ev.sort(key=lambda e: e["t"])
    return ev


def other(side):
    return {"client": "server", "server": "client"}[side]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capture", required=True)
    ap.add_argument("--keylog")
    ap.add_argument("--dsb", action="store_true", help="keys are in the pcapng itself (Decryption Secrets Block)")
    ap.add_argument("--view", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--expect", action="append", default=[], help="PORT=VERSION:SUITE (OpenSSL suite name)")
    ap.add_argument("--server-keylog")
    ap.add_argument("--nokeys-view")
    ap.add_argument("--keylog-written-by", default="the Python websockets client (ssl.SSLContext.keylog_filename)")
    a = ap.parse_args()
    cap = a.capture
    capname = os.path.basename(cap)
    events = load_events(a.logs)
    view = json.load(open(a.view))
    truth = json.load(open(a.truth))

    expect = {}
    for spec in a.expect:
        port, rest = spec.split("=", 1)
        ver, suite = rest.split(":", 1)
        expect[int(port)] = (ver, suite)

    # ---- 1. negotiated version and suite, from the plaintext hellos ----------
    hellos = server_hellos(cap)
    legs = []
    for port, (ver, suite) in expect.items():
        hs = [h for h in hellos if h["port"] == port]
        if not hs:
            problem(f"no ServerHello from port {port}")
        want_v, want_s = VERSION_IDS[ver], SUITE_IDS[suite]
        for h in hs:
            ok = h["negotiated_version"] == want_v and h["ciphersuite"] == want_s
            if not ok:
                problem(f"{h['client']} -> {h['server']}: negotiated version 0x{h['negotiated_version'] or 0:04x} "
                        f"suite 0x{h['ciphersuite'] or 0:04x}, wanted 0x{want_v:04x} 0x{want_s:04x} ({suite})")
            peers = [e for e in events if e["event"] == "tls_handshake_done"
                     and (e.get("conn") or {}).get("client") == h["client"]
                     and (e.get("conn") or {}).get("server") == h["server"]]
            for e in peers:
                if e.get("version") != VERSION_NAMES[want_v] or e.get("cipher") != suite:
                    problem(f"{e['peer']} logged {e.get('version')} {e.get('cipher')}, wanted TLSv{ver} {suite}")
            legs.append({
                "client": h["client"], "server": h["server"], "tcp_stream": h["tcp_stream"],
                "version": VERSION_NAMES.get(h["negotiated_version"]),
                "cipher_suite": IANA.get(h["ciphersuite"]), "cipher_suite_openssl": SUITE_NAMES.get(h["ciphersuite"]),
                "cipher_suite_id": f"0x{h['ciphersuite']:04X}" if h["ciphersuite"] is not None else None,
                "tshark_server_hello": {"tls.handshake.version": f"0x{h['legacy_version']:04x}" if h["legacy_version"] else None,
                                        "tls.handshake.ciphersuite": f"0x{h['ciphersuite']:04x}" if h["ciphersuite"] is not None else None,
                                        "tls.handshake.extensions.supported_version":
                                            f"0x{h['supported_version']:04x}" if h["supported_version"] else None},
                "peers_logged": [{"peer": e["peer"], "by": e["by"], "version": e.get("version"), "cipher": e.get("cipher")}
                                 for e in peers],
                "requested": {"version": f"TLSv{ver}", "suite": suite},
                "agree": ok,
            })
    tls_ports = set(expect)

    # ---- 2. tshark decrypts: WebSocket frames and close frames ---------------
    keyargs = [] if a.dsb else ["-o", f"tls.keylog_file:{a.keylog}"]
    ws_rows = tshark(["-r", cap] + keyargs + ["-Y", "websocket", "-T", "fields", "-e", "frame.number",
                                              "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "websocket.opcode"])
    close_rows = tshark(["-r", cap] + keyargs + ["-Y", "websocket.opcode == 8", "-T", "fields", "-e", "frame.number",
                                                 "-e", "websocket.payload.close.status_code",
                                                 "-e", "websocket.payload.close.reason"])
    on_tls = lambda r: int(r[1]) in tls_ports or int(r[2]) in tls_ports  # noqa: E731
    n_ws = sum(len(r[3].split(",")) for r in ws_rows)
    n_ws_tls = sum(len(r[3].split(",")) for r in ws_rows if on_tls(r))
    n_close = sum(len(r[1].split(",")) if r[1] else 1 for r in close_rows)
    if n_ws_tls == 0:
        problem(f"tshark with the keys shows no WebSocket frame on the TLS legs (ports {sorted(tls_ports)})")
    # ---- 3. per connection and direction: the frames the peers logged --------
    conns = {}
    for e in events:
        c = e.get("conn")
        if isinstance(c, dict) and c.get("client") and c.get("server"):
            conns.setdefault((c["client"], c["server"]), []).append(e)
    frames_check = []
    for (cl, sv), evs in conns.items():
        inst = {e["by"] for e in evs if e.get("by") in ("client", "server")}
        want = {"client": [], "server": []}
        for e in evs:
            if e["event"] == "frame_sent":
                want[e["by"]].append(e["opcode"])
            elif e["event"] == "frame_recv" and other(e["by"]) not in inst:
                want[other(e["by"])].append(e["opcode"])
        st = next((s for s in view["streams"] if s["client"] == cl and s["server"] == sv), None)
        if st is None:
            problem(f"{cl} -> {sv}: not in the tshark view")
            continue
        got = {"client": [], "server": []}
        for f in st["ws_frames"]:
            got[f["sender"]].append(f["opcode"])
        ok = got == want
        if not ok:
            problem(f"{cl} -> {sv}: tshark frames {got} != peers' {want}")
        frames_check.append({"client": cl, "server": sv, "tcp_stream": st["tcp_stream"],
                             "opcodes_by_sender_peers": want, "opcodes_by_sender_tshark": got, "agree": ok})

    logged_close = sum(fc["opcodes_by_sender_peers"][side].count(8) for fc in frames_check for side in ("client", "server"))
    if n_close != logged_close:
        problem(f"tshark shows {n_close} close frame(s), the peers logged {logged_close}")

    # ---- 4. without the keys nothing is readable on the TLS legs -------------
    nokeys_args = ["-o", "tls.keylog_file:"]
    if a.dsb:
        # the DSB is read from the file itself: check the plain pcap instead (same packets)
        nokeys_rows = None
    else:
        nokeys_rows = tshark(["-r", cap] + nokeys_args + ["-Y", "websocket", "-T", "fields", "-e", "frame.number",
                                                          "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "websocket.opcode"])
        n_nokeys_tls = sum(len(r[3].split(",")) for r in nokeys_rows if on_tls(r))
        if n_nokeys_tls:
            problem(f"without keys tshark still reads {n_nokeys_tls} WebSocket frames on the TLS legs")

    # ---- 5. both ends wrote the same secrets ---------------------------------
    server_same = None
    if a.server_keylog:
        def lines(p):
            return sorted(line for line in open(p).read().splitlines() if line and not line.startswith("#"))
        server_same = lines(a.keylog) == lines(a.server_keylog)
        if not server_same:
            problem("the server's key log differs from the client's")

    klog = None
    if a.keylog:
        text = open(a.keylog).read().splitlines()
        labels = sorted({line.split()[0] for line in text if line and not line.startswith("#")})
        klog = {"file": os.path.basename(a.keylog), "lines": sum(1 for line in text if line and not line.startswith("#")),
                "labels": labels}

    kname = os.path.basename(a.keylog) if a.keylog else None
    cmd_keys = (f"tshark -r {capname} -Y websocket" if a.dsb else
                f"tshark -r {capname} -o tls.keylog_file:{kname} -Y websocket")
    truth["tls"] = {
        "keylog": kname,
        "keys_in_capture": "pcapng Decryption Secrets Block (editcap --inject-secrets tls,...)" if a.dsb else None,
        "keylog_written_by": None if a.dsb else a.keylog_written_by,
        "keylog_content": klog,
        "server_keylog_identical": server_same,
        "tls_legs": legs,
        "plaintext_legs": sorted({(s["client"], s["server"]) for s in view["streams"]}
                                 - {(leg["client"], leg["server"]) for leg in legs}) or None,
        "tshark_verification": {
            "decrypt_command": cmd_keys,
            "websocket_frames": n_ws,
            "websocket_frames_on_tls_legs": n_ws_tls,
            "close_frames": [{"frame": int(r[0]), "code": r[1] or None, "reason": r[2] if len(r) > 2 and r[2] else None}
                             for r in close_rows],
            "close_frames_logged_by_peers": logged_close,
            "frames_per_direction_match_peer_logs": frames_check,
            "version_suite_command": f"tshark -r {capname} -Y 'tls.handshake.type == 2' -T fields -e tls.handshake.ciphersuite "
                                     "-e tls.handshake.extensions.supported_version -e tls.handshake.version",
            "websocket_frames_on_tls_legs_without_keys": None if nokeys_rows is None else
            sum(len(r[3].split(",")) for r in nokeys_rows if on_tls(r)),
            "all_tls_checks_pass": not PROBLEMS,
            "problems": PROBLEMS or None,
        },
    }
    if a.nokeys_view:
        nv = json.load(open(a.nokeys_view))
        truth["tls"]["without_keys"] = {
            "tshark_view": os.path.basename(a.nokeys_view),
            "what_tshark_sees": [{"client": s["client"], "server": s["server"], "ws_frames": len(s["ws_frames"]),
                                  "handshake_seen": s["handshake"] is not None,
                                  "first_fin": s["summary"]["first_fin"], "first_rst": s["summary"]["first_rst"]}
                                 for s in nv["streams"]],
        }
    with open(a.truth, "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    summary = ", ".join(f"{leg['version']} {leg['cipher_suite_openssl']}" for leg in legs)
    print(f"tls {capname}: {summary}; tshark with keys: {n_ws} WebSocket frames ({n_ws_tls} on TLS legs), "
          f"{n_close} close frame(s); without keys: "
          f"{'n/a (DSB)' if nokeys_rows is None else truth['tls']['tshark_verification']['websocket_frames_on_tls_legs_without_keys']} "
          f"on TLS legs; {'OK' if not PROBLEMS else 'PROBLEMS: ' + '; '.join(PROBLEMS)}")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
