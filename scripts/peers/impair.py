#!/usr/bin/env python3
"""A tiny user-space "netem" bridge between two interfaces (standard library only).

This kernel has no sch_netem, so record-fixtures.sh builds
    client netns [wsc-c0] <-veth-> [wsc-c1] middle netns [wsc-s1] <-veth-> [wsc-s0] server netns
and runs this bridge in the middle namespace.  Every Ethernet frame read on one
side is written to the other side after --delay-ms, except that, for TCP
segments of --port that carry payload (no SYN/FIN/RST):
  * --loss-pct percent are dropped (the sender retransmits them later), and
  * --reorder-pct percent are sent at once, overtaking the delayed ones
    (netem's "delay D reorder P%" semantics; --corr-pct correlation).
A seeded RNG makes the choices repeatable for the same traffic.  Every drop
and every reordering is logged with its direction and TCP sequence number.
TCP/IPv4 checksums are recomputed (frames read from a veth may carry partial
checksums because of checksum offload).
"""

import argparse
import heapq
import os
import random
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import log  # noqa: E402

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_info(frame: bytes):
    """(ip_header_offset, ihl, tcp_offset, flags, sport, dport, seq, payload_len) or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    if frame[ip + 9] != 6:
        return None
    total = struct.unpack("!H", frame[ip + 2:ip + 4])[0]
    t = ip + ihl
    sport, dport, seq = struct.unpack("!HHI", frame[t:t + 8])
    doff = (frame[t + 12] >> 4) * 4
    flags = frame[t + 13]
    return ip, ihl, t, flags, sport, dport, seq, total - ihl - doff, total


def fix_checksums(frame: bytes) -> bytes:
    info = tcp_info(frame)
    if info is None:
        return frame
    ip, ihl, t, _f, _s, _d, _q, _pl, total = info
    b = bytearray(frame[:ip + total])
    b[ip + 10:ip + 12] = b"\0\0"
    b[ip + 10:ip + 12] = struct.pack("!H", csum(bytes(b[ip:ip + ihl])))
    b[t + 16:t + 18] = b"\0\0"
    pseudo = bytes(b[ip + 12:ip + 20]) + struct.pack("!BBH", 0, 6, total - ihl)
    b[t + 16:t + 18] = struct.pack("!H", csum(pseudo + bytes(b[t:ip + total])))
    return bytes(b) + frame[ip + total:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="client-side interface")
    ap.add_argument("--b", required=True, help="server-side interface")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=10)
    ap.add_argument("--reorder-pct", type=float, default=25)
    ap.add_argument("--corr-pct", type=float, default=50)
    ap.add_argument("--loss-pct", type=float, default=5)
    ap.add_argument("--seed", type=int, default=6455)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    wsclog.setup(a.log, "impair")
    rng = random.Random(a.seed)

    socks = {}
    for name in (a.a, a.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        socks[name] = s
    out_of = {a.a: socks[a.b], a.b: socks[a.a]}
    direction = {a.a: "client->server", a.b: "server->client"}
    queue = []  # (release_time, n, sock, frame)
    n = 0
    last_reorder = False
    log("listening", delay_ms=a.delay_ms, reorder_pct=a.reorder_pct, corr_pct=a.corr_pct,
        loss_pct=a.loss_pct, seed=a.seed, port=a.port)
    fd_to_name = {s.fileno(): name for name, s in socks.items()}
    while True:
        timeout = None
        if queue:
            timeout = max(0.0, queue[0][0] - time.monotonic())
        r, _, _ = select.select(list(socks.values()), [], [], timeout)
        for s in r:
            name = fd_to_name[s.fileno()]
            frame, addr = s.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue
            info = tcp_info(frame)
            now = time.monotonic()
            release = now + a.delay_ms / 1000
            if info and a.port in (info[4], info[5]) and not info[3] & 0x07 and info[7] > 0:
                _ip, _ihl, _t, flags, sport, dport, seq, plen, _tot = info
                if rng.random() * 100 < a.loss_pct:
                    log("impair", action="drop", dir=direction[name], sport=sport, dport=dport,
                        seq_raw=seq, payload_len=plen)
                    continue
                p = a.reorder_pct
                if last_reorder:  # simple correlation, as netem's
                    p = a.corr_pct + (100 - a.corr_pct) * p / 100
                last_reorder = rng.random() * 100 < p
                if last_reorder:
                    release = now
                    ahead = sum(1 for q in queue if q[2] is out_of[name])
                    if ahead:
                        log("impair", action="send-early", dir=direction[name], sport=sport, dport=dport,
                            seq_raw=seq, payload_len=plen, overtakes=ahead)
            n += 1
            heapq.heappush(queue, (release, n, out_of[name], fix_checksums(frame)))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            out.send(frame)


if __name__ == "__main__":
    main()
