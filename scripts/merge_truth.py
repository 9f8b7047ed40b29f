#!/usr/bin/env python3
"""Merge the peers' event logs into fixtures/<name>.truth.json.

    merge_truth.py --meta META.json --logs DIR --capture FILE --tshark FILE.tshark.json --out FILE.truth.json

Inputs:
  * DIR/*.jsonl   events written by the peers themselves (scripts/peers/wsclog.py,
                  scripts/peers/node/wslog.js, raw_client.py, impair.py) and by the
                  recorder for what it did to them (e.g. SIGKILL).
  * META.json     what the recorder knows about the scenario (description, software,
                  command, proxy and its configured timeouts).
  * the tshark view of the capture, used to cross-check every fact the peers
    know, and as the source of the facts that no instrumented peer can know
    (which side's kernel sent the first FIN on a proxy leg, ...).  Each fact says
    where it came from: "source": "peers" or "source": "tshark".

Exit status 1 when a peer fact disagrees with tshark (the truth file is still
written, with "agree": false on that check), so that the recorder notices.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
from decimal import Decimal

FIN_EVENTS = ("fin_sent", "socket_closed")
RACE_S = 0.002  # two peers closing closer than this: the capture decides who was first


def load_events(d):
    ev = []
    for p in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    ev.append(json.loads(line))
    ev.sort(key=lambda e: e["t"])
    return ev


def pair(e):
    c = e.get("conn")
    if isinstance(c, dict) and c.get("client") and c.get("server"):
        return (c["client"], c["server"])
    return None


def capinfo(path):
    res = subprocess.run(["capinfos", "-T", "-M", path], capture_output=True, text=True).stdout.splitlines()
    info = dict(zip(res[0].split("\t"), res[1].split("\t"))) if len(res) >= 2 else {}
    snap = info.get("Packet size limit", "")
    return {
        "file": os.path.basename(path),
        "file_format": info.get("File type"),
        "link_type": info.get("File encapsulation"),
        "snaplen": int(snap) if snap.isdigit() else None,
        "time_precision": info.get("File time precision"),
        "packets": int(info.get("Number of packets") or 0),
        "size_bytes": os.path.getsize(path),
        "sha256": info.get("SHA256"),
        "first_packet_time": info.get("Start time"),
        "last_packet_time": info.get("End time"),
    }


def http_responses(capture):
    """{(client, server): first HTTP response code} straight from tshark."""
    res = subprocess.run(["tshark", "-n", "-r", capture, "-Y", "http.response", "-T", "fields",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
                          "-e", "tcp.dstport", "-e", "http.response.code"], capture_output=True, text=True)
    out = {}

    def ep(ip, port):
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    for line in res.stdout.splitlines():
        f = line.split("\t")
        if len(f) < 7 or not f[6]:
            continue
        s_ip, d_ip = f[0] or f[1], f[3] or f[4]
        out.setdefault((ep(d_ip, f[5]), ep(s_ip, f[2])), int(f[6]))
    return out


def reconnects(events):
    """Per client tag: its connection attempts in order (fleet mode of py_client.py)."""
    out = {}
    for e in events:
        tag = e.get("tag")
        if not tag:
            continue
        c = e.get("conn") or {}
        if e["event"] == "reconnect_wait":
            out.setdefault(tag, []).append({"t": e["t"], "event": "backoff", "attempt": e["attempt"],
                                            "delay_s": e["delay_s"], "backoff_base_s": e["backoff_base_s"]})
        elif e["event"] in ("tcp_refused", "ws_open") and e.get("by") == "client":
            out.setdefault(tag, []).append({"t": e["t"], "event": "refused" if e["event"] == "tcp_refused" else "connected",
                                            "client": c.get("client"), "server": c.get("server")})
    return out


def compact(e):
    keep = {k: v for k, v in e.items() if k not in ("pid", "conn")}
    return keep


def other(side):
    return {"client": "server", "server": "client"}.get(side)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--capture", required=True)
    ap.add_argument("--tshark", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    meta = json.load(open(a.meta))
    events = load_events(a.logs)
    tsv = json.load(open(a.tshark))
    ts_streams = {}
    for s in tsv["streams"]:
        ts_streams.setdefault((s["client"], s["server"]), []).append(s)

    proxy = meta.get("proxy")  # {"kind", "listen", "backend", ...} or None
    proxy_eps = set()
    if proxy:
        proxy_eps.add(proxy["listen"])

    # ---- connections, in order of first appearance ------------------------
    conns = {}
    for e in events:
        p = pair(e)
        if p is None:
            continue
        c = conns.setdefault(p, {"events": [], "first_t": e["t"]})
        c["events"].append(e)
    wildcard = [e for e in events if e.get("conn") == "*"]

    # proxy legs: the backend logs the X-Client-Port header the proxy added
    leg_of = {}
    links = []
    if proxy:
        for p, c in conns.items():
            for e in c["events"]:
                if e["event"] == "http_request" and e.get("x_client_port"):
                    client_leg = next((q for q in conns if q[1] == proxy["listen"]
                                       and q[0].rsplit(":", 1)[1] == e["x_client_port"]), None)
                    leg_of[p] = "proxy-to-backend"
                    if client_leg:
                        leg_of[client_leg] = "client-to-proxy"
                        links.append({"client_leg": {"client": client_leg[0], "server": client_leg[1]},
                                      "backend_leg": {"client": p[0], "server": p[1]},
                                      "linked_by": "X-Client-Port header added by the proxy, logged by the backend"})
                    break

    out_conns = []
    refused = []
    disagreements = []
    for p in sorted(conns, key=lambda q: conns[q]["first_t"]):
        c = conns[p]
        evs = c["events"] + [w for w in wildcard if w["t"] >= c["first_t"]]
        evs.sort(key=lambda e: e["t"])
        names = {e["event"] for e in evs}
        if "tcp_refused" in names and "tcp_connected" not in names:
            e = next(e for e in evs if e["event"] == "tcp_refused")
            st = ts_streams.get(p, [None])[0]
            refused.append({
                "client": p[0], "server": p[1], "t": e["t"], "tag": e.get("tag"),
                "what": "TCP connect refused: SYN answered by RST from the server's kernel (nothing listening)",
                "rst_by": "server", "source": "peers",
                "tshark_first_rst": (st or {}).get("summary", {}).get("first_rst"),
                "agree": bool(st and (st["summary"].get("first_rst") or {}).get("sender") == "server"),
            })
            if not refused[-1]["agree"]:
                disagreements.append(f"{p}: refused connection not seen as RST from server by tshark")
            continue

        # which sides of this connection are our own instrumented peers?
        instrumented = sorted({e["by"] for e in c["events"] if e.get("by") in ("client", "server")})
        both = set(instrumented) == {"client", "server"}
        leg = leg_of.get(p, "direct" if not proxy else ("client-to-proxy" if p[1] in proxy_eps else "proxy-to-backend"))

        # ---- close frames, from what the peers sent or received ------------
        frames = []
        for e in evs:
            if e["event"] in ("frame_sent", "frame_recv") and e.get("opcode") == 8:
                sender = e["by"] if e["event"] == "frame_sent" else other(e["by"])
                frames.append({"by": sender, "code": e.get("close_code"), "reason": e.get("close_reason"),
                               "t": e["t"], "logged_as": f"{e['event']} by {e['by']} ({e['peer']})"})
        seen, closes = set(), []
        for f in frames:  # the same frame logged by sender and receiver: keep the sender's entry
            key = (f["by"], f["code"], f["reason"])
            if key in seen:
                continue
            seen.add(key)
            closes.append(f)
        first_close = closes[0] if closes else None
        reply = next((f for f in closes[1:] if first_close and f["by"] != first_close["by"]), None)

        # ---- TCP end, from the peers' own socket calls -----------------------
        rst_ev = [e for e in evs if e["event"] == "rst_sent"
                  or (e["event"] == "socket_closed" and (e.get("unread_bytes") or 0) > 0)]
        t_rst = rst_ev[0]["t"] if rst_ev else None
        fin_ev = [e for e in evs if e["event"] in FIN_EVENTS and e.get("by") in ("client", "server")
                  and (t_rst is None or e["t"] < t_rst) and not (e in rst_ev)]

        st = ts_streams.get(p, [None])[0]
        tsum = st["summary"] if st else None
        checks = []

        def check(fact, peers_val, ts_val):
            ok = peers_val == ts_val
            checks.append({"fact": fact, "peers": peers_val, "tshark": ts_val, "agree": ok})
            if not ok:
                disagreements.append(f"{p[0]} -> {p[1]}: {fact}: peers={peers_val!r} tshark={ts_val!r}")

        # Both ends closing within RACE_S of each other: their logs cannot order
        # the two FINs reliably (two processes), so the capture decides.
        race = None
        if both and fin_ev:
            other_side = next((e for e in fin_ev if e["by"] != fin_ev[0]["by"]), None)
            # a close that answers the first side's FIN (eof_received logged before it) is no race
            answered = other_side is not None and any(
                e["event"] == "eof_received" and e.get("by") == other_side["by"] and e["t"] <= other_side["t"]
                for e in evs)
            if other_side and not answered and other_side["t"] - fin_ev[0]["t"] < RACE_S:
                race = round(other_side["t"] - fin_ev[0]["t"], 6)

        def fin_fact():
            tf = (tsum or {}).get("first_fin")
            if both and fin_ev and race is None:
                f = fin_ev[0]
                fact = {"by": f["by"], "t": f["t"], "source": "peers",
                        "evidence": f"{f['event']} logged by {f['peer']}" + (f" ({f.get('how')})" if f.get("how") else "")}
                if tf is not None:
                    fact["tshark_time_epoch"] = tf["time_epoch"]
                return fact
            if tf is None:
                return None
            why = ("a side of this leg is the proxy, whose socket calls are not logged" if not both
                   else f"both peers closed their sockets within {race} s of each other: the capture orders the FINs"
                   if race is not None else "no peer logged a socket close before the capture ended")
            return {"by": tf["sender"], "t": float(tf["time_epoch"]), "tshark_time_epoch": tf["time_epoch"],
                    "source": "tshark", "why_tshark": why}

        def rst_fact():
            tr = (tsum or {}).get("first_rst")
            if rst_ev:
                r = rst_ev[0]
                fact = {"by": r["by"], "t": r["t"], "source": "peers",
                        "evidence": f"{r['event']} logged by {r['peer']}" + (f" ({r.get('how')})" if r.get("how") else "")}
                if tr is not None:
                    fact["tshark_time_epoch"] = tr["time_epoch"]
                return fact
            if both:
                return None
            if tr is None:
                return None
            return {"by": tr["sender"], "t": float(tr["time_epoch"]), "tshark_time_epoch": tr["time_epoch"],
                    "source": "tshark"}

        handshake_failed = next((e for e in evs if e["event"] in ("handshake_failed", "handshake_rejected")), None)
        first_fin = fin_fact()
        rst = rst_fact()
        ended = bool((first_fin and first_fin.get("by")) or rst)

        if handshake_failed:
            outcome = "handshake-failed"
        elif not closes:
            outcome = "abnormal" if ended else "open"
        elif reply:
            outcome = "clean"
        else:
            outcome = "close-unanswered" if ended else "open"

        # ---- cause -----------------------------------------------------------
        cause = None
        hb = next((e for e in evs if e["event"] == "heartbeat_terminate"), None)
        killed = next((e for e in evs if e["event"] == "process_killed"), None)
        if handshake_failed:
            status = handshake_failed.get("status")
            cause = {"kind": "handshake-rejected", "http_status": status,
                     "evidence": f"{handshake_failed['event']} logged by {handshake_failed['peer']}"}
        elif hb:
            cause = {"kind": "unanswered-ping", "ping_interval_s": hb["ping_interval_ms"] / 1000,
                     "unanswered_pings": hb["unanswered_pings"], "terminated_by": hb["by"],
                     "evidence": "server heartbeat: ws.terminate() after that many pings without a pong"}
        elif first_close and first_close["code"] == 1009:
            srv = next((e for e in events if e["event"] == "listening" and "max_size" in e), {})
            big = max((e.get("payload_length", 0) for e in evs if e["event"] == "frame_sent"
                       and e.get("by") == other(first_close["by"])), default=None)
            cause = {"kind": "message-too-big", "max_size": srv.get("max_size"), "message_size": big,
                     "closed_by": first_close["by"]}
        elif first_close and first_close["code"] == 1001 and any(
                e["event"] == "shutdown_begin" and e["t"] <= first_close["t"] for e in events):
            cause = {"kind": "server-going-away", "evidence": "server process shut down (websockets server.close())"}
        elif proxy and not closes and ended and proxy.get("idle_seconds"):
            last_data = None
            if st:
                data_frames = [f for f in st["ws_frames"]]
                last_data = data_frames[-1]["time_epoch"] if data_frames else None
            idle_obs = None
            ends = [f["tshark_time_epoch"] for f in (first_fin, rst) if f and f.get("tshark_time_epoch")]
            if last_data and ends:
                idle_obs = float(min(Decimal(x) for x in ends) - Decimal(last_data))
            cause = {"kind": "idle-timeout", "idle_seconds": proxy["idle_seconds"], "proxy": proxy["kind"],
                     "setting": proxy.get("setting"), "observed_idle_s": round(idle_obs, 3) if idle_obs else None,
                     "closed_by": "proxy", "proxy_log": proxy.get("log_evidence")}
        elif outcome == "close-unanswered":
            srv = next((e for e in events if e["event"] == "listening" and "close_timeout" in e), {})
            cause = {"kind": "close-unanswered", "close_timeout_s": srv.get("close_timeout"),
                     "evidence": f"{first_close['by']} sent close, the peer never replied; "
                                 f"{first_close['by']} dropped TCP after its close timeout"}
        elif outcome == "abnormal":
            if killed:
                detail = f"{killed['by']} process killed with SIGKILL (its kernel closed the socket)"
            elif rst_ev:
                detail = f"{rst_ev[0]['by']} reset the connection ({rst_ev[0].get('how')})"
            elif fin_ev:
                detail = f"{fin_ev[0]['by']} closed the TCP connection without a close frame ({fin_ev[0].get('how')})"
            else:
                detail = "TCP connection ended without a closing handshake"
            cause = {"kind": "abnormal-closure", "detail": detail}
        else:
            cause = None

        # ---- cross-checks against tshark --------------------------------------
        if st is None:
            disagreements.append(f"{p}: connection not found in the tshark view")
        else:
            ts_first = tsum.get("first_close_frame")
            peer_first = None if first_close is None else [first_close["by"], first_close["code"], first_close["reason"]]
            ts_first_v = None if ts_first is None else [ts_first["sender"], ts_first.get("close_code"),
                                                        ts_first.get("close_reason")]
            if meta.get("tshark_blind"):
                checks.append({"fact": "close frames", "peers": peer_first, "tshark": ts_first_v,
                               "agree": None, "note": meta["tshark_blind"]})
            else:
                # tshark leaves close_reason out when it is empty
                if ts_first_v and ts_first_v[2] is None and peer_first and peer_first[2] == "":
                    ts_first_v[2] = ""
                check("first_close_frame [by, code, reason]", peer_first, ts_first_v)
                check("close_frame_senders", [f["by"] for f in closes], tsum.get("close_frame_senders"))
            if first_fin and first_fin.get("source") == "peers":
                check("first_fin.by", first_fin["by"], (tsum.get("first_fin") or {}).get("sender"))
            if rst and rst.get("source") == "peers":
                check("first_rst.by", rst["by"], (tsum.get("first_rst") or {}).get("sender"))
            elif rst is None and both:
                check("first_rst (none expected)", None, (tsum.get("first_rst") or {}).get("sender"))
            hs = st.get("handshake") or {}
            resp = (hs.get("response") or {}).get("code")
            if handshake_failed:
                if resp is None:
                    # the oracle keeps only 101/Upgrade responses: ask tshark for any HTTP response
                    resp = http_responses(a.capture).get(p)
                check("handshake response status", handshake_failed.get("status"), resp)

        def strip(f):
            if f is None:
                return None
            return {k: v for k, v in f.items() if k != "logged_as"} | {"source": "peers", "evidence": f.get("logged_as")}

        ts_close = {}
        if st:
            cl = [f for f in st["ws_frames"] if f["opcode"] == 8]
            ts_close = {"first": cl[0]["time_epoch"] if cl else None, "reply": cl[1]["time_epoch"] if len(cl) > 1 else None}
        fc = strip(first_close)
        if fc and ts_close.get("first"):
            fc["tshark_time_epoch"] = ts_close["first"]
        rp = strip(reply)
        if rp and ts_close.get("reply"):
            rp["tshark_time_epoch"] = ts_close["reply"]

        out_conns.append({
            "client": p[0],
            "server": p[1],
            "leg": leg,
            "instrumented_sides": instrumented,
            "tcp_stream": st["tcp_stream"] if st else None,
            "fact_sources": {
                "first_close": "peers" if both else "peers (frames sent or received by the instrumented side)",
                "first_fin": (first_fin or {}).get("source") or ("peers" if both else "tshark"),
                "rst": (rst or {}).get("source") or ("peers" if both else "tshark"),
            },
            "expected": {
                "first_close": fc,
                "close_reply": rp,
                "first_fin": first_fin,
                "rst": rst,
                "outcome": outcome,
                "cause": cause,
            },
            "checks": checks,
            "peer_events": [compact(e) for e in evs],
        })

    truth = {
        "fixture": os.path.basename(a.capture),
        "scenario": meta["name"],
        "description": meta["description"],
        "software": meta.get("software"),
        "command": meta.get("command"),
        "capture": capinfo(a.capture) | {"capture_command": meta.get("capture_command")},
        "proxy": proxy,
        "proxy_legs": links or None,
        "notes": meta.get("notes"),
        "field_meanings": {
            "t": "wall-clock epoch seconds logged by the peer when it acted (same host clock as the capture)",
            "tshark_time_epoch": "time of the packet that carries the fact, from the tshark view",
            "source": "peers = logged by our own peers about their own actions; tshark = read from the capture "
                      "because no instrumented peer can know it (e.g. the proxy's socket calls)",
            "outcome": "clean | abnormal | close-unanswered | open | handshake-failed",
        },
        "connections": out_conns,
        "refused_attempts": refused or None,
        "reconnects": reconnects(events) or None,
        "impairments": [compact(e) for e in events if e["event"] == "impair"] or None,
        "agreement_with_tshark": "all checks agree" if not disagreements else disagreements,
    }
    with open(a.out, "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    n_ok = sum(1 for c in out_conns for k in c["checks"] if k["agree"])
    n_all = sum(1 for c in out_conns for k in c["checks"] if k["agree"] is not None)
    print(f"truth {os.path.basename(a.out)}: {len(out_conns)} ws connection(s), {len(refused)} refused attempt(s), "
          f"tshark checks {n_ok}/{n_all} agree")
    for d in disagreements:
        print(f"  DISAGREE: {d}", file=sys.stderr)
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
