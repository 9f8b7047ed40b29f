#!/usr/bin/env python3
"""Write the engineered cause of a diag-* scenario into its truth file.

    diag_truth.py NAME FIXTURE.truth.json FIXTURE.tshark.json

scripts/merge_truth.py knows the generic causes (idle timeout behind a proxy,
abnormal closure, ...).  The diag-* scenarios engineer causes that only the
recorder knows about (it restarted the server, cut the path, forged a RST,
opened a second connection); this script adds them to expected.cause, from
the peers' own logs, with the secondary diagnoses expected alongside in
cause.also.  It also corrects the one fact merge_truth.py cannot know: in
diag-middlebox-reset the RST was injected by a forger (peer "middlebox") in
the name of the server, and the client's socket close after it sent nothing.
"""

import json
import sys


def events(c, ev, **kw):
    return [e for e in c["peer_events"] if e["event"] == ev and all(e.get(k) == v for k, v in kw.items())]


def main():
    name, path, tsp = sys.argv[1:4]
    truth = json.load(open(path))
    ts = json.load(open(tsp))
    streams = {(s["client"], s["server"]): s for s in ts["streams"]}
    conns = truth["connections"]
    problems = [p for p in (truth["agreement_with_tshark"] if isinstance(truth["agreement_with_tshark"], list) else [])]

    if name == "diag-reconnect-storm":
        refused = truth.get("refused_attempts") or []
        for r in refused:
            r["expected_main_diagnosis"] = "refused"
        for c in conns:
            exp = c["expected"]
            chain = {"kind": "reconnect-storm", "retry_interval_s": 0.15, "backoff": "none (fixed interval, no jitter)",
                     "refused_attempts": len(refused),
                     "evidence": "diag_client.py storm mode: reconnect_wait events with a fixed delay of 0.15 s"}
            if exp["outcome"] == "open":
                exp["cause"] = chain
            elif exp["cause"]:
                exp["cause"]["also"] = ["reconnect-storm"]
                exp["cause"]["note"] = ("abnormal-closure ranks before reconnect-storm (docs/diagnosis.md); this "
                                        "connection is the first of the reconnect chain")
    elif name in ("diag-heartbeat-too-slow", "diag-one-way-heartbeat"):
        for c in conns:
            cause = c["expected"]["cause"]
            assert cause and cause["kind"] == "idle-timeout", cause
            pings = [e for e in c["peer_events"] if e["event"] == "frame_recv" and e.get("opcode") == 9
                     or e["event"] == "frame_sent" and e.get("opcode") == 9]
            if name == "diag-heartbeat-too-slow":
                cause["also"] = ["heartbeat-too-slow"]
                cause["heartbeat"] = {"first_ping_after_s": 1, "ping_interval_s": 8,
                                      "pings_before_timeout": len({e.get("data_hex") for e in pings}),
                                      "note": "only one ping before the 5 s timeout: no interval to measure, "
                                              "the heartbeat stopped for longer than the timeout"}
            else:
                cause["also"] = ["one-way-heartbeat"]
                cause["heartbeat"] = {"pinger": "client", "ping_interval_s": 2,
                                      "pings_seen_on_this_leg": len({e.get("data_hex") for e in pings}),
                                      "silent_side": "server (the upstream never sends anything after its 101)"}
    elif name == "diag-nginx-pings-keep-alive":
        for c in conns:
            cause = c["expected"]["cause"]
            assert cause and cause["kind"] == "idle-timeout", cause
            cause["also"] = ["unanswered-ping"]
            cause["note"] = ("nginx 1.22 re-arms proxy_read_timeout on traffic in either direction of an upgraded "
                             "connection: the timeout fired 5 s after the client's last ping, with both directions silent")
    elif name == "diag-peer-unreachable":
        for c in conns:
            exp = c["expected"]
            drops = [e for e in (truth.get("impairments") or []) if e.get("dir") == "server->client"]
            old = exp["cause"]
            exp["cause"] = {"kind": "peer-unreachable", "sender": "client",
                            "evidence": "the bridge dropped every frame from the server to the client after path_cut; "
                                        "the client kept sending and finally reset the connection",
                            "frames_dropped": len(drops), "also": ["abnormal-closure"], "then": old}
    elif name == "diag-middlebox-reset":
        for c in conns:
            exp = c["expected"]
            inj = events(c, "rst_injected")
            assert inj, "no rst_injected event"
            st = streams[(c["client"], c["server"])]["summary"]
            tr, tf = st.get("first_rst"), st.get("first_fin")
            exp["rst"] = {"by": "server", "t": inj[0]["t"], "tshark_time_epoch": tr and tr["time_epoch"],
                          "source": "middlebox",
                          "evidence": "rst_injected logged by the forger (diag_forge_rst.py) with the server's address "
                                      "and port: the client and the capture see it as the server's RST"}
            # the client's close() after the reset sends nothing: its connection is already gone
            exp["first_fin"] = None
            c["fact_sources"]["rst"] = "middlebox"
            c["fact_sources"]["first_fin"] = "peers (no FIN before the RST; the client's socket close came after it)"
            c["checks"] = [k for k in c["checks"] if not k["fact"].startswith(("first_fin", "first_rst"))]
            for fact, mine, theirs in (("first_rst.by", "server", tr and tr["sender"]),
                                       ("first_fin (none expected)", None, tf and tf["sender"])):
                c["checks"].append({"fact": fact, "peers": mine, "tshark": theirs, "agree": mine == theirs})
            exp["outcome"] = "abnormal"
            exp["cause"] = {"kind": "middlebox-reset", "rst_ip_ttl": inj[0]["ip_ttl"], "peers_ip_ttl": 64,
                            "forged_by": "diag_forge_rst.py (raw socket)", "also": ["abnormal-closure"]}
        problems = [p for p in problems if "first_fin" not in p and "first_rst" not in p]
        problems += [f"{c['client']} -> {c['server']}: {k['fact']}" for c in conns for k in c["checks"]
                     if k["agree"] is False and f"{c['client']} -> {c['server']}: {k['fact']}" not in problems]
    elif name == "diag-duplicate-connection":
        first = min(conns, key=lambda c: c["peer_events"][0]["t"])
        for c in conns:
            if c is first:
                newer = next(x for x in conns if x is not first)
                c["expected"]["cause"] = {"kind": "duplicate-connection",
                                          "newer_connection": {"client": newer["client"], "server": newer["server"]},
                                          "evidence": "client-old opened this connection and sent nothing for 37 s "
                                                      "while client-new (same path, same User-Agent) chatted"}
    else:
        raise SystemExit(f"unknown scenario {name}")

    truth["agreement_with_tshark"] = problems or "all checks agree"
    truth["cause_source"] = ("expected.cause written by scripts/peers/diag_truth.py from the scenario the recorder "
                             "engineered (see description); cause.also lists the other diagnoses expected")
    with open(path, "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    for c in conns:
        print(f"{name}: {c['client']} -> {c['server']}: outcome {c['expected']['outcome']}, "
              f"cause {(c['expected']['cause'] or {}).get('kind')} also {(c['expected']['cause'] or {}).get('also')}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
