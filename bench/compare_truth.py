#!/usr/bin/env python3
"""Compares a wsclose JSON report with a gen_capture truth file, field by field.

Usage: bench/compare_truth.py REPORT.json TRUTH.json [--show N]

Prints matched/total per field and exits 1 on any mismatch (2 on bad input). Fields compared
(docs/json.md semantics): presence, outcome, first_close (by, at, code, reason), close_reply (by, at,
code, reason), first_fin (by, at), first_rst (by, at), pings and pongs per side. Standard library only.
"""

import json
import sys

CLOSE_KEYS = ("by", "at", "code", "reason")
FLAG_KEYS = ("by", "at")


def pick(obj, keys):
    if obj is None:
        return None
    return {k: obj.get(k) for k in keys}


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    show = 10
    if "--show" in argv:
        show = int(argv[argv.index("--show") + 1])
        args = [a for a in args if a != str(show)]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        report = json.load(f)
    with open(args[1], encoding="utf-8") as f:
        truth = json.load(f)

    by_key = {}
    for c in report["connections"]:
        by_key.setdefault((c["client"], c["server"]), []).append(c)

    fields = ["present", "outcome", "first_close", "close_reply", "first_fin", "first_rst", "pings", "pongs"]
    matched = {f: 0 for f in fields}
    total = {f: 0 for f in fields}
    mismatches = []

    def check(field, expected, got, t):
        total[field] += 1
        if expected == got:
            matched[field] += 1
        else:
            mismatches.append((field, t, expected, got))

    for t in truth["connections"]:
        found = by_key.get((t["client"], t["server"]), [])
        total["present"] += 1
        if len(found) != 1:
            mismatches.append(("present", t, 1, len(found)))
            continue
        matched["present"] += 1
        r = found[0]
        check("outcome", t["outcome"], r["outcome"], t)
        check("first_close", pick(t["first_close"], CLOSE_KEYS), pick(r["first_close"], CLOSE_KEYS), t)
        check("close_reply", pick(t["close_reply"], CLOSE_KEYS), pick(r["close_reply"], CLOSE_KEYS), t)
        check("first_fin", pick(t["first_fin"], FLAG_KEYS), pick(r["first_fin"], FLAG_KEYS), t)
        check("first_rst", pick(t["first_rst"], FLAG_KEYS), pick(r["first_rst"], FLAG_KEYS), t)
        check("pings", t["pings"], r["pings"], t)
        check("pongs", t["pongs"], r["pongs"], t)

    truth_keys = {(t["client"], t["server"]) for t in truth["connections"]}
    extra = [k for k in by_key if k not in truth_keys]

    width = max(len(f) for f in fields)
    for f in fields:
        print(f"{f:<{width}}  {matched[f]}/{total[f]}")
    print(f"{'extra':<{width}}  {len(extra)} connection(s) in the report but not in the truth")
    for field, t, expected, got in mismatches[:show]:
        print(f"MISMATCH {field} {t['client']} -> {t['server']} ({t.get('scenario')}): expected {expected!r}, got {got!r}")
    if len(mismatches) > show:
        print(f"... and {len(mismatches) - show} more mismatches")
    wrong = {(t["client"], t["server"]): t for _, t, _, _ in mismatches}
    if wrong:
        tags = {}
        for t in wrong.values():
            for tag in t.get("awkward") or ["(untagged)"]:
                tags[tag] = tags.get(tag, 0) + 1
        print(f"connections with a mismatch: {len(wrong)}, by the truth's awkward tags: {tags}")
    ok = not mismatches and not extra
    print("EXACT" if ok else f"NOT EXACT: {len(mismatches)} mismatches, {len(extra)} extra")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
