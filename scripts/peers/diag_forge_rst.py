#!/usr/bin/env python3
"""Inject a forged TCP RST into an established loopback connection, as a
firewall or load balancer in the middle would (standard library only).

It sniffs lo (AF_PACKET) for --port, remembers the last segment the client
sent to the server (its ACK number is exactly the next sequence number the
client expects from the server), and when --trigger exists it sends, through
a raw IPv4 socket (IP_HDRINCL), one RST "from" the server's address and port
to the client with that sequence number and IP TTL --ttl (the real peers'
kernels use 64).  The client's kernel accepts it (RFC 5961: seq == RCV.NXT)
and believes the server reset the connection.

    diag_forge_rst.py --port 9215 --trigger FILE --ttl 255 --log LOG
"""

import argparse
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import log  # noqa: E402
from impair import csum  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--trigger", required=True)
    ap.add_argument("--ttl", type=int, default=255)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    wsclog.setup(a.log, "middlebox")
    sn = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sn.bind(("lo", 0))
    last = None  # (client_ip, client_port, server_ip, server_port, seq, ack, win)
    log("listening", port=a.port, ttl=a.ttl)
    while not os.path.exists(a.trigger):
        r, _, _ = select.select([sn], [], [], 0.02)
        if not r:
            continue
        frame, addr = sn.recvfrom(65535)
        if addr[2] == 4:  # PACKET_OUTGOING: on lo every packet is seen twice
            continue
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        t = 14 + ihl
        sport, dport, seq, ack = struct.unpack("!HHII", frame[t:t + 12])
        flags = frame[t + 13]
        if dport == a.port and flags & 0x10 and not flags & 0x07:
            last = (socket.inet_ntoa(frame[26:30]), sport, socket.inet_ntoa(frame[30:34]), dport, seq, ack)
    if last is None:
        log("no_connection_seen")
        return 1
    cip, cport, sip, sport, cseq, cack = last
    tcp = struct.pack("!HHIIBBHHH", sport, cport, cack, 0, 5 << 4, 0x04, 0, 0, 0)
    pseudo = socket.inet_aton(sip) + socket.inet_aton(cip) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1234, 0, a.ttl, 6, 0,
                      socket.inet_aton(sip), socket.inet_aton(cip))
    iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    conn = {"client": f"{cip}:{cport}", "server": f"{sip}:{sport}"}
    log("rst_injected", by="middlebox", conn=conn, spoofed_sender="server", ip_ttl=a.ttl,
        tcp_seq_raw=cack, how="raw IPv4 socket (IP_HDRINCL), source address and port of the server")
    raw.sendto(iph + tcp, (cip, 0))
    time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
