#!/usr/bin/env python3
"""Puts each FILE in the page cache in one known state before it is timed.

Drops the file's cached pages (posix_fadvise DONTNEED), then reads it once from start to end in
4 MiB reads, so that the kernel's readahead brings it back in large blocks.

Why: how pages got into the cache changes how fast they are read back. On this machine (Linux 6.18)
the floor read a 1 GiB capture in 0.214 s when its pages had come in piecemeal (left over from
earlier runs under memory pressure), and in 0.075 s once they were dropped and read back in one
pass, or just after the file was written. A plain `cat` keeps whatever state the cache is in. The
floor, being mostly the kernel's copy, is the one that changes: wsclose/floor read 2.4x on the
first state and about 5x on the second. This script makes every run use the second, the state of
a capture that was just written or copied, and so the least flattering ratio for wsclose.

    bench/recache.py FILE...
"""
import os
import sys

CHUNK = 4 << 20

for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, CHUNK):
            pass
    finally:
        os.close(fd)
