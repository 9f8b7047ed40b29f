#!/usr/bin/env python3
"""Runs wsclose on every capture of a gen.py output directory and compares with the truth.

Usage: bench/crosscheck/check.py CAPTURE_DIR [--threads 1,2] [--core-only] [--show N]

For each CAPTURE with a CAPTURE.truth.json beside it, runs
`$WSCLOSE analyze --format json --threads T CAPTURE` (WSCLOSE defaults to the repository's
target/release/wsclose) for each T, matches connections by (client, server) and, for a
4-tuple used more than once, by order, and compares field by field:
  core:  first_close {by, at, code, reason}, close_reply {same}, first_fin {by, at},
         first_rst {by, at}, pings, pongs
  extra: outcome, path, syn_at, start, end, fin, rst, frames, data_frames, data_bytes,
         largest_message, unanswered_pings (documented in docs/json.md too; --core-only skips them)
Connections marked "ambiguous" in the truth are compared but not counted in the verdict.
Prints matched/total per capture and every mismatch; exits 1 on any mismatch. Standard library only.
"""

import json
import os
import subprocess
import sys

CLOSE_KEYS = ("by", "at", "code", "reason")
FLAG_KEYS = ("by", "at")
CORE = ["first_close", "close_reply", "first_fin", "first_rst", "pings", "pongs"]
EXTRA = ["outcome", "path", "syn_at", "start", "end", "fin", "rst", "frames", "data_frames", "data_bytes",
         "largest_message", "unanswered_pings", "unanswered_pings_by", "unsolicited_pongs", "last_frame",
         "upgrade_at", "gaps", "mid_stream", "roles_from", "handshake.accept_valid",
         "handshake.missing_upgrade_headers", "handshake.status", "protocol.masked_client_frames",
         "protocol.unmasked_client_frames", "protocol.masked_server_frames", "protocol.reserved_opcodes",
         "protocol.rsv_without_extension", "protocol.bad_control_frames", "protocol.fragmentation_errors"]


def pick(obj, keys):
    return None if obj is None else {k: obj.get(k) for k in keys}


def get(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def norm(field, v):
    if field == "last_frame" and v is not None:
        return {k: (None if x is None else {"at": x.get("at"), "opcode": x.get("opcode")}) for k, x in v.items()}
    if field in ("first_close", "close_reply"):
        return pick(v, CLOSE_KEYS)
    if field in ("first_fin", "first_rst"):
        return pick(v, FLAG_KEYS)
    return v


def run(binary, paths, threads):
    r = subprocess.run([binary, "analyze", "--format", "json", "--threads", str(threads)] + paths,
                       capture_output=True, text=True)
    if not r.stdout.strip():
        raise SystemExit(f"wsclose printed nothing for {path} (exit {r.returncode}): {r.stderr[:500]}")
    return json.loads(r.stdout)


def compare(truth, report, core_only):
    fields = CORE if core_only else CORE + EXTRA
    by_key = {}
    for c in report["connections"]:
        by_key.setdefault((c["client"], c["server"]), []).append(c)
    seen = {}
    mism = []
    ok_conns = 0
    counted = 0
    for t in truth:
        key = (t["client"], t["server"])
        n = seen.get(key, 0)
        seen[key] = n + 1
        lst = by_key.get(key, [])
        amb = t.get("ambiguous")
        if not amb:
            counted += 1
        if n >= len(lst):
            mism.append((t, "present", "yes", "missing", amb))
            continue
        r = lst[n]
        bad = False
        for f in fields:
            if f not in CORE and f not in t["extra"]:
                continue  # truth from an older gen.py
            exp = t[f] if f in CORE else t["extra"][f]
            got = norm(f, get(r, f))
            exp = norm(f, exp)
            if exp != got:
                mism.append((t, f, exp, got, amb))
                bad = True
        if not bad and not amb:
            ok_conns += 1
    extra = []
    for key, lst in by_key.items():
        if len(lst) > seen.get(key, 0):
            for r in lst[seen.get(key, 0):]:
                extra.append(r)
    return ok_conns, counted, mism, extra


def main(argv):
    args = [a for a in argv[1:]]
    core_only = "--core-only" in args
    threads = [1, 2]
    show = 1000
    if "--threads" in args:
        threads = [int(x) for x in args[args.index("--threads") + 1].split(",")]
    if "--show" in args:
        show = int(args[args.index("--show") + 1])
    pos = [a for i, a in enumerate(args) if not a.startswith("--") and (i == 0 or args[i - 1] not in ("--threads", "--show"))]
    if len(pos) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    d = pos[0]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = os.environ.get("WSCLOSE", os.path.join(repo, "target", "release", "wsclose"))
    # CAPTURE.truth.json beside CAPTURE, or beside CAPTURE.part0, CAPTURE.part1... (rotated files,
    # given to one wsclose run in order)
    caps = sorted(f[: -len(".truth.json")] for f in os.listdir(d) if f.endswith(".truth.json"))
    if not caps:
        print(f"no CAPTURE + CAPTURE.truth.json in {d}", file=sys.stderr)
        return 2
    failed = False
    summary = []
    for cap in caps:
        path = os.path.join(d, cap)
        with open(path + ".truth.json", encoding="utf-8") as f:
            truth = json.load(f)
        if os.path.exists(path):
            paths = [path]
        else:
            paths = sorted((os.path.join(d, f) for f in os.listdir(d) if f.startswith(cap + ".part")),
                           key=lambda p: int(p.rsplit("part", 1)[1]))
        for th in threads:
            report = run(binary, paths, th)
            ok, counted, mism, extra = compare(truth, report, core_only)
            capinfo = report.get("capture", {})
            for k in ("skipped", "warnings", "errors"):
                if capinfo.get(k):  # every generated packet is a well-formed TCP/IP packet
                    mism.append(({"client": "-", "server": "-", "scenario": "capture"}, "capture." + k,
                                 {} if k == "skipped" else [], capinfo.get(k), False))
            verdict_mism = [m for m in mism if not m[4]]
            summary.append((cap, th, ok, counted, len(verdict_mism), len(extra)))
            print(f"{cap} threads={th}: {ok}/{counted} connections exact, {len(verdict_mism)} mismatches, "
                  f"{len(extra)} extra connections in the report"
                  + (f", {sum(1 for t in truth if t.get('ambiguous'))} ambiguous" if any(t.get('ambiguous') for t in truth) else ""))
            for t, field, exp, got, amb in mism[:show]:
                print(f"  MISMATCH{' (ambiguous)' if amb else ''} {t['client']} -> {t['server']} [{t['scenario']}] "
                      f"{field}: expected {json.dumps(exp, ensure_ascii=False)}, got {json.dumps(got, ensure_ascii=False)}")
            for r in extra[:show]:
                print(f"  EXTRA id={r['id']} {r['client']} -> {r['server']} outcome={r['outcome']}")
            if verdict_mism or extra:
                failed = True
    print()
    for cap, th, ok, counted, nm, ne in summary:
        print(f"{cap:36s} threads={th}  {ok}/{counted}  mismatches={nm}  extra={ne}")
    print("EXACT" if not failed else "NOT EXACT")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
