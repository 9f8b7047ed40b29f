#!/usr/bin/env python3
"""A user-space bridge between two interfaces that can cut one direction
(standard library only).  Every Ethernet frame read on one side is written to
the other side at once, until --trigger exists; from then on every frame from
the server side (--b) to the client side (--a) is dropped (and logged), while
client -> server keeps flowing: the path from the server to the client is cut.

    diag_cut_bridge.py --a wsd-c1 --b wsd-s1 --port 9216 --trigger FILE --log LOG
"""

import argparse
import os
import select
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import log  # noqa: E402
from impair import fix_checksums, tcp_info  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="client-side interface")
    ap.add_argument("--b", required=True, help="server-side interface")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--trigger", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    wsclog.setup(a.log, "path")
    socks = {}
    for name in (a.a, a.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((name, 0))
        socks[name] = s
    out_of = {a.a: socks[a.b], a.b: socks[a.a]}
    fd_to_name = {s.fileno(): n for n, s in socks.items()}
    cut = False
    log("listening", port=a.port)
    while True:
        r, _, _ = select.select(list(socks.values()), [], [], 0.02)
        if not cut and os.path.exists(a.trigger):
            cut = True
            log("path_cut", direction="server->client", how="every frame from the server side is dropped from now on")
        for s in r:
            name = fd_to_name[s.fileno()]
            frame, addr = s.recvfrom(65535)
            if addr[2] == 4:
                continue
            if cut and name == a.b:
                info = tcp_info(frame)
                if info:
                    _ip, _ihl, _t, flags, sport, dport, seq, plen, _tot = info
                    log("impair", action="drop", dir="server->client", sport=sport, dport=dport,
                        seq_raw=seq, payload_len=plen, tcp_flags=flags)
                else:
                    log("impair", action="drop", dir="server->client", what="non-TCP frame")
                continue
            out_of[name].send(fix_checksums(frame))


if __name__ == "__main__":
    main()
