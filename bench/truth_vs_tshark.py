#!/usr/bin/env python3
"""Checks a gen_capture truth file against tshark's reading of the capture: independent evidence that
the generator's truth is right (wsclose is not involved).

Usage: bench/truth_vs_tshark.py CAPTURE.pcap TRUTH.json [--show N]

tshark runs with tcp.reassemble_out_of_order:TRUE (without it, tshark loses the frame boundaries after
swapped segments). Compared per connection: every close frame (sender, time of the packet that
completes it, code, reason), the first FIN and the first RST (sender, time of the first packet with
the flag), ping and pong counts per sender. Prints matched/total per field; exits 1 on any
disagreement. Standard library only (plus the tshark binary).
"""

import datetime
import json
import subprocess
import sys

FIELDS = [
    "frame.time_epoch", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags.fin",
    "tcp.flags.reset", "websocket.opcode", "websocket.payload.close.status_code",
    "websocket.payload.close.reason",
]


def rfc3339_us(epoch):
    sec, _, frac = epoch.partition(".")
    t = datetime.datetime.fromtimestamp(int(sec), datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + (frac + "000000")[:6] + "Z"


def main(argv):
    show = 10
    if "--show" in argv:
        i = argv.index("--show")
        show = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pcap, truth_path = argv[1], argv[2]
    with open(truth_path, encoding="utf-8") as f:
        truth = {(c["client"], c["server"]): c for c in json.load(f)["connections"]}
    cmd = ["tshark", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", pcap, "-Y",
           "tcp.flags.fin == 1 or tcp.flags.reset == 1 or websocket", "-T", "fields", "-E", "occurrence=a",
           "-E", "aggregator=\x1f"]
    for field in FIELDS:
        cmd += ["-e", field]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    seen = {}
    for line in out.splitlines():
        p = line.split("\t")
        a, b = f"{p[1]}:{p[2]}", f"{p[3]}:{p[4]}"
        key = (a, b) if (a, b) in truth else (b, a)
        role = "client" if key[0] == a else "server"
        s = seen.setdefault(key, {"fin": None, "rst": None, "closes": [],
                                  "pings": {"client": 0, "server": 0}, "pongs": {"client": 0, "server": 0}})
        at = rfc3339_us(p[0])
        if p[5] == "1" and s["fin"] is None:
            s["fin"] = {"by": role, "at": at}
        if p[6] == "1" and s["rst"] is None:
            s["rst"] = {"by": role, "at": at}
        opcodes = [int(x) for x in p[7].split("\x1f") if x]
        s["pings"][role] += opcodes.count(9)
        s["pongs"][role] += opcodes.count(10)
        codes = p[8].split("\x1f") if p[8] else []
        reasons = p[9].split("\x1f") if len(p) > 9 and p[9] else []
        for i in range(opcodes.count(8)):
            code = int(codes[i]) if i < len(codes) and codes[i] else None
            reason = reasons[i] if i < len(reasons) else ""
            s["closes"].append({"by": role, "at": at, "code": code, "reason": reason if code is not None else ""})

    fields = ["closes", "first_fin", "first_rst", "pings", "pongs"]
    matched = {f: 0 for f in fields}
    bad = []
    empty = {"fin": None, "rst": None, "closes": [], "pings": {"client": 0, "server": 0},
             "pongs": {"client": 0, "server": 0}}
    for key, t in truth.items():
        s = seen.get(key, empty)
        expected_closes = sorted(
            ({k: c[k] for k in ("by", "at", "code", "reason")} for c in (t["first_close"], t["close_reply"]) if c),
            key=lambda c: (c["at"], c["by"]))
        got_closes = sorted(s["closes"], key=lambda c: (c["at"], c["by"]))
        pairs = {
            "closes": (expected_closes, got_closes),
            "first_fin": (t["first_fin"] and {k: t["first_fin"][k] for k in ("by", "at")}, s["fin"]),
            "first_rst": (t["first_rst"] and {k: t["first_rst"][k] for k in ("by", "at")}, s["rst"]),
            "pings": (t["pings"], s["pings"]),
            "pongs": (t["pongs"], s["pongs"]),
        }
        for field, (expected, got) in pairs.items():
            if expected == got:
                matched[field] += 1
            else:
                bad.append((field, key, t.get("scenario"), expected, got))
    for f in fields:
        print(f"{f:<10} {matched[f]}/{len(truth)}")
    for field, key, scenario, expected, got in bad[:show]:
        print(f"DISAGREE {field} {key[0]} -> {key[1]} ({scenario}): truth {expected!r}, tshark {got!r}")
    print("tshark AGREES with the truth" if not bad else f"tshark DISAGREES on {len(bad)} fields")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
