#!/usr/bin/env python3
"""Runs a command with its stdout to /dev/null and prints "WALL_S CPU_S": wall time from start to exit
(time.perf_counter) and user + system CPU time of the command and everything it waited for
(getrusage(RUSAGE_CHILDREN), microsecond resolution, unlike GNU time's 10 ms). Standard library only.

Usage: bench/measure.py [--out FILE] CMD [ARGS...]   (--out: the command's stdout goes to FILE)
"""

import resource
import subprocess
import sys
import time


def main(argv):
    args = argv[1:]
    out = None
    if args[:1] == ["--out"] and len(args) >= 2:
        out, args = args[1], args[2:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    sink = open(out, "wb") if out else subprocess.DEVNULL
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.call(args, stdout=sink)
    wall = time.perf_counter() - t0
    if out:
        sink.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{wall:.6f} {cpu:.6f}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
