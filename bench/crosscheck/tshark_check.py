#!/usr/bin/env python3
"""Third opinion: compares gen.py truth with tshark (Wireshark's reassembly and WebSocket dissector).

Usage: bench/crosscheck/tshark_check.py CAPTURE [CAPTURE...]   (CAPTURE.truth.json beside each)

Per connection (TCP stream matched by endpoints and order of its first SYN): the time of each side's
first close frame and its code, ping/pong counts by sender, and each side's first FIN and first RST.
tshark runs with tcp.reassemble_out_of_order:TRUE and HTTP forced on ports 443, 9000 and 61000
(where it would otherwise not look for the upgrade). Rotated parts (CAPTURE.partN) are not
supported. Exits 1 when tshark disagrees with the truth anywhere. Standard library only.
"""

import collections
import datetime
import json
import subprocess
import sys

DECODE = ["-d", "tcp.port==9000,http", "-d", "tcp.port==443,http", "-d", "tcp.port==61000,http"]


def tshark(cap, flt, fields):
    cmd = ["tshark", "-r", cap, "-o", "tcp.reassemble_out_of_order:TRUE"] + DECODE + [
        "-Y", flt, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def ep(v4, v6, port):
    return (f"[{v6}]" if v6 else v4) + ":" + port


def main(argv):
    bad_total = 0
    for cap in argv[1:]:
        with open(cap + ".truth.json", encoding="utf-8") as f:
            truth = json.load(f)
        ns = any(len(t["extra"]["start"].split(".")[1]) == 10 for t in truth)

        def fmt(epoch):
            s, frac = epoch.split(".")
            frac = (frac + "000000000")[:9]
            base = datetime.datetime.fromtimestamp(int(s), tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            return base + "." + (frac if ns else frac[:6]) + "Z"

        addr = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]
        bykey = collections.defaultdict(list)
        seen = set()
        for stm, s4, s6, sp, d4, d6, dp in tshark(cap, "tcp.flags.syn==1 and tcp.flags.ack==0", ["tcp.stream"] + addr):
            if stm not in seen:
                seen.add(stm)
                bykey[frozenset((ep(s4, s6, sp), ep(d4, d6, dp)))].append(int(stm))
        ev = collections.defaultdict(list)  # stream -> (time, src, kind, code)
        for row in tshark(cap, "websocket.opcode==8 or websocket.opcode==9 or websocket.opcode==10",
                          ["frame.time_epoch", "tcp.stream"] + addr + ["websocket.opcode",
                                                                       "websocket.payload.close.status_code"]):
            te, stm, s4, s6, sp, d4, d6, dp, ops, codes = row
            codes = codes.split(";") if codes else []
            for op in ops.split(";"):
                code = None
                if op == "8" and codes:
                    code = int(codes.pop(0))
                if op in ("8", "9", "10"):  # a packet may also complete data frames
                    ev[int(stm)].append((fmt(te), ep(s4, s6, sp), {"8": "close", "9": "ping", "10": "pong"}[op], code))
        for te, stm, s4, s6, sp, d4, d6, dp, fin, rst in tshark(
                cap, "tcp.flags.fin==1 or tcp.flags.reset==1",
                ["frame.time_epoch", "tcp.stream"] + addr + ["tcp.flags.fin", "tcp.flags.reset"]):
            if fin in ("1", "True"):
                ev[int(stm)].append((fmt(te), ep(s4, s6, sp), "fin", None))
            if rst in ("1", "True"):
                ev[int(stm)].append((fmt(te), ep(s4, s6, sp), "rst", None))
        order = collections.Counter()
        bad = 0
        for t in truth:
            k = frozenset((t["client"], t["server"]))
            i = order[k]
            order[k] += 1
            lst = bykey.get(k, [])
            evs = ev[lst[i]] if i < len(lst) else []
            got = {"close": {}, "fin": {}, "rst": {}, "pings": {"client": 0, "server": 0},
                   "pongs": {"client": 0, "server": 0}}
            for at, src, kind, code in evs:
                by = "client" if src == t["client"] else "server"
                if kind in ("close", "fin", "rst"):
                    if by not in got[kind] or at < got[kind][by][0]:
                        got[kind][by] = (at, code) if kind == "close" else (at,)
                else:
                    got[kind + "s"][by] += 1
            exp = {"close": {}, "fin": {}, "rst": {}, "pings": t["pings"], "pongs": t["pongs"]}
            for f in ("first_close", "close_reply"):
                if t[f]:
                    exp["close"][t[f]["by"]] = (t[f]["at"], t[f]["code"])
            for side in ("client", "server"):
                for kind in ("fin", "rst"):
                    if t["extra"][kind][side]:
                        exp[kind][side] = (t["extra"][kind][side],)
            if exp != got:
                bad += 1
                print(f"  DIFF {t['client']} -> {t['server']} [{t['scenario']}]")
                for key in exp:
                    if exp[key] != got[key]:
                        print(f"     {key}: truth {exp[key]} tshark {got[key]}")
        print(f"{cap}: tshark agrees with the truth on {len(truth) - bad}/{len(truth)} connections")
        bad_total += bad
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
