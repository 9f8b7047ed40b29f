#!/usr/bin/env python3
"""Independent synthetic WebSocket capture generator with exact truth (cross-check for wsclose).

Usage: bench/crosscheck/gen.py --out DIR [--seed N] [--conns N] [--only NAME] [--probes]

Writes 7 captures (x1..x7; with --probes also p1..pd) to DIR, and beside each CAPTURE a
CAPTURE.truth.json: a JSON list of connections in order of their first packet with client, server,
first_close, close_reply, first_fin, first_rst, pings, pongs (docs/json.md semantics), "scenario",
"ambiguous" (always false: no generated connection has an ambiguous truth) and "extra" (more documented
fields: outcome, fin, rst, frames, data_frames, data_bytes, largest_message, unanswered pings,
unsolicited pongs, last_frame, upgrade_at, gaps, handshake and protocol counters...). A
CAPTURE.coverage.json counts the edge cases the capture really exercises.

Written from RFC 6455, RFC 9293, RFC 7413, the pcap/pcapng formats and docs/json.md only (not from
examples/gen_capture).

Model: each connection is a script, a list of packets in CAPTURE order (perturbations such as
reordering, loss-and-retransmit, overlaps are done by permuting/editing that list, so the list order
is what the capture shows). Times are assigned to list positions afterwards; scripts are merged by
time, and timestamps made strictly increasing (x7: non-decreasing, equal times across connections).
The truth is then computed by replaying every packet in capture order through an in-order receiver: a
stream byte becomes available at the time of the packet whose arrival makes it contiguous with
everything before it; a frame's time is the availability time of its last byte. A FIN's/RST's time is
that of the first packet (in capture order) carrying the flag. Standard library only.
"""

import argparse
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import random
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MS = 1_000_000
US = 1_000
SEC = 1_000_000_000
CODES = [1000, 1001, 1002, 1008, 1009, 1011, 4000]
REASONS = {
    1000: "normal", 1001: "going away", 1002: "protocol error", 1008: "policy violation",
    1009: "message too big", 1011: "internal error", 4000: "app: session expired",
}
UTF8_REASONS = ["Сервер закрыт — 再见 🚀", "déconnexion: délai dépassé ✓", "ばいばい 👋 ok", "Ωmega→∞"]
TEXT_SAMPLE = "héllo wörld ✓ 🚀 Привет 世界 — ascii tail. ".encode("utf-8")


def other(d):
    return "s" if d == "c" else "c"


# --------------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455 §5.2)

def ws_frame(opcode, payload, fin=True, mask_key=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask_key is not None else 0
    if n <= 125:
        hdr = bytes([b0, m | n])
    elif n <= 0xFFFF:
        hdr = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask_key is not None:
        hdr += mask_key
        k = (mask_key * ((n + 3) // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return hdr + payload


def close_payload(code, reason):
    if code is None:
        return b""
    return struct.pack(">H", code) + reason.encode("utf-8")


def text_payload(rng, n):
    """n bytes of text; whole message valid UTF-8 only when cut at a char boundary (we only use
    text opcode for the whole message, fragments may split characters, which RFC 6455 allows)."""
    out = bytearray()
    while len(out) < n:
        out += TEXT_SAMPLE
    b = bytes(out[:n])
    # make it valid UTF-8 as a whole: trim a partial char at the end and pad with ASCII
    while True:
        try:
            b.decode("utf-8")
            return b
        except UnicodeDecodeError as e:
            b = b[: e.start] + b"x" * (n - e.start)


# --------------------------------------------------------------------------------------------------
# Connection script model

class LConn:
    """One logical TCP connection (a script can hold two on the same 4-tuple)."""

    def __init__(self, client, server, mss, ts_opt, scenario):
        self.client = client  # (ip, port)
        self.server = server
        self.mss = mss
        self.ts_opt = ts_opt
        self.scenario = scenario
        self.stream = {"c": bytearray(), "s": bytearray()}
        self.frames = {"c": [], "s": []}
        self.fin_sent = {"c": False, "s": False}
        self.rst_sent = {"c": False, "s": False}
        self.isn = {"c": 0, "s": 0}
        self.path = None
        self.host = None
        self.ping_payloads = {"c": [], "s": []}
        self.ambiguous = False


class Script:
    def __init__(self, rng, tick):
        self.rng = rng
        self.tick = tick
        self.pkts = []
        self.lconns = []
        self.cur = None

    # ---- low level -------------------------------------------------------------------------------
    def g(self, lo, hi):
        """random gap in [lo, hi] ns rounded to the tick, at least one tick"""
        v = self.rng.randint(lo, max(lo, hi))
        v -= v % self.tick
        return max(v, self.tick)

    def small(self):
        return self.g(5 * US, 400 * US) if self.rng.random() < 0.8 else self.g(self.tick, 5 * US)

    def rtt(self):
        return self.g(300 * US, 60 * MS)

    def emit(self, d, off, data, flags, gap, stale_ack=False):
        p = {"lc": self.cur, "d": d, "off": off, "data": bytes(data), "flags": flags, "gap": gap,
             "stale_ack": stale_ack}
        self.pkts.append(p)
        return len(self.pkts) - 1

    def swap(self, i, j):
        """swap packets i and j keeping the gaps at their positions (capture order changes)."""
        gi, gj = self.pkts[i]["gap"], self.pkts[j]["gap"]
        self.pkts[i], self.pkts[j] = self.pkts[j], self.pkts[i]
        self.pkts[i]["gap"], self.pkts[j]["gap"] = gi, gj

    def move_to_end(self, i, gap):
        p = self.pkts.pop(i)
        p["gap"] = gap
        self.pkts.append(p)
        return len(self.pkts) - 1

    def insert_copy(self, pos, pkt, gap, **changes):
        p = dict(pkt)
        p["gap"] = gap
        p.update(changes)
        self.pkts.insert(pos, p)
        return pos

    # ---- TCP -------------------------------------------------------------------------------------
    def new_conn(self, client, server, scenario):
        lc = LConn(client, server, self.rng.choice([1448, 1448, 1460, 536, 536, 1000, 1371, 777]),
                   self.rng.random() < 0.5, scenario)
        self.lconns.append(lc)
        self.cur = lc
        return lc

    def handshake(self, first_gap, tfo=False):
        lc = self.cur
        rng = self.rng
        key = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(16))).decode()
        lc.path = rng.choice(["/", "/ws", "/socket?room=42&x=%20y", "/chat/v2", "/api/stream"])
        port = lc.server[1]
        lc.host = "example.test" if port == 80 else f"example.test:{port}"
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        style = rng.randrange(3)
        if style == 0:
            req = (f"GET {lc.path} HTTP/1.1\r\nHost: {lc.host}\r\nUser-Agent: xcheck/1.0\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   "Origin: http://example.test\r\n\r\n")
            resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\nServer: xcheck-srv\r\n\r\n")
        elif style == 1:  # browser style: keep-alive, Upgrade; extensions offered and declined
            req = (f"GET {lc.path} HTTP/1.1\r\nHost: {lc.host}\r\nConnection: keep-alive, Upgrade\r\n"
                   "Pragma: no-cache\r\nUpgrade: websocket\r\nOrigin: http://example.test\r\n"
                   "Sec-WebSocket-Version: 13\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
                   f"Sec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
            resp = ("HTTP/1.1 101 Web Socket Protocol Handshake\r\nConnection: upgrade\r\n"
                    f"Upgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
        else:  # lower-case names (HTTP/2-era proxies), odd value case
            req = (f"GET {lc.path} HTTP/1.1\r\nhost: {lc.host}\r\nupgrade: WebSocket\r\n"
                   f"connection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n")
            resp = ("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                    f"sec-websocket-accept: {accept}\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n")
        req, resp = req.encode(), resp.encode()
        if tfo:
            # TCP Fast Open (RFC 7413): the upgrade request rides in the SYN (first data byte = ISN+1)
            lc.stream["c"] += req
            self.emit("c", 0, req, "S", first_gap)
            self.emit("s", -1, b"", "SA", self.rtt())
            self.emit("c", len(req), b"", "A", self.rtt())
        else:
            self.emit("c", -1, b"", "S", first_gap)
            if rng.random() < 0.15:  # SYN retransmitted (the first SYN's time is syn_at)
                self.emit("c", -1, b"", "S", self.g(200 * MS, 1 * SEC))
            self.emit("s", -1, b"", "SA", self.rtt())
            if rng.random() < 0.2:
                self.emit("s", -1, b"", "SA", self.g(200 * MS, 1 * SEC))  # SYN-ACK retransmitted
            if rng.random() < 0.8:  # else the request itself is the third packet of the handshake
                self.emit("c", 0, b"", "A", self.rtt())
            cuts = [rng.randint(10, len(req) - 10)] if rng.random() < 0.2 else None
            self.write_raw("c", req, cuts=cuts, gap=self.small())
        # sometimes the server's first frame rides in the same segment as the 101 response
        lc.resp_len = len(resp)
        rcuts = [rng.randint(5, len(resp) - 3)] if rng.random() < 0.2 else None
        if rng.random() < 0.3:
            self.write("s", [self.data_frame("s", rng.randint(0, 60))], gap=self.rtt(), prefix=resp, cuts=rcuts)
        else:
            self.write_raw("s", resp, gap=self.rtt(), cuts=rcuts)

    def write_raw(self, d, data, cuts=None, gap=None, ack=True):
        return self.write(d, [], gap=gap, prefix=data, cuts=cuts, ack=ack, plan="mss")

    def data_frame(self, d, size, opcode=None, fin=True):
        rng = self.rng
        if opcode is None:
            opcode = rng.choice([1, 2])
        payload = text_payload(rng, size) if opcode == 1 else bytes(rng.getrandbits(8) for _ in range(size))
        return (opcode, payload, fin)

    def mask(self, d):
        if d == "c":
            return bytes(self.rng.getrandbits(8) for _ in range(4))
        return None

    def append_frames(self, d, frames):
        lc = self.cur
        st = lc.stream[d]
        for opcode, payload, fin in frames:
            start = len(st)
            st += ws_frame(opcode, payload, fin, self.mask(d))
            lc.frames[d].append({"start": start, "end": len(st), "opcode": opcode, "fin": fin,
                                 "payload": payload})

    def segment(self, start, end, plan, cuts, mss):
        """list of (a, b) stream ranges covering [start, end)."""
        rng = self.rng
        pieces = []
        pts = [start]
        if cuts:
            for c in sorted(cuts):
                if start < start + c < end and start + c > pts[-1]:
                    pts.append(start + c)
        pts.append(end)
        for a, b in zip(pts, pts[1:]):
            if plan == "tiny" and b - a <= 400:  # 1..5-byte segments
                x = a
                while x < b:
                    n = min(b - x, rng.randint(1, 5))
                    pieces.append((x, x + n))
                    x += n
            elif plan == "random":
                x = a
                while x < b:
                    n = min(b - x, rng.randint(1, max(1, min(mss, 300))))
                    pieces.append((x, x + n))
                    x += n
            else:
                x = a
                while x < b:
                    n = min(b - x, mss)
                    pieces.append((x, x + n))
                    x += n
        return pieces

    def write(self, d, frames, plan="mss", cuts=None, fin=False, gap=None, ack=True, pert=None,
              prefix=b"", stale_ack=False, psh_last=True):
        """d writes prefix + frames; returns list of packet indices of the data segments."""
        lc = self.cur
        st = lc.stream[d]
        start = len(st)
        st += prefix
        self.append_frames(d, frames)
        end = len(st)
        bounds = self.segment(start, end, plan, cuts, lc.mss)
        idxs = []
        for i, (a, b) in enumerate(bounds):
            flags = "A"
            if i == len(bounds) - 1:
                if psh_last:
                    flags += "P"
                if fin:
                    flags += "F"
            g = (gap if gap is not None else self.small()) if i == 0 else self.small()
            idxs.append(self.emit(d, a, st[a:b], flags, g, stale_ack=stale_ack))
        if fin:
            lc.fin_sent[d] = True
        if pert:
            idxs = self.perturb(d, idxs, pert)
        if ack:
            self.ack(other(d))
            if pert == "dupack":
                for _ in range(self.rng.randint(1, 3)):
                    self.insert_copy(len(self.pkts), self.pkts[-1], self.small())
        return idxs

    def perturb(self, d, idxs, pert):
        rng = self.rng
        P = self.pkts
        if pert == "swap" and len(idxs) >= 2:
            k = rng.randrange(len(idxs) - 1)
            self.swap(idxs[k], idxs[k + 1])
            idxs[k], idxs[k + 1] = idxs[k + 1], idxs[k]
        elif pert == "swap_last" and len(idxs) >= 2:
            self.swap(idxs[-2], idxs[-1])
            idxs[-2], idxs[-1] = idxs[-1], idxs[-2]
        elif pert in ("hole", "hole_repack") and len(idxs) >= 3 and idxs[-1] == len(P) - 1 \
                and idxs == list(range(idxs[0], idxs[0] + len(idxs))):
            # segment k is missing at its place (lost upstream of the capture point); the receiver
            # sends duplicate ACKs; after an RTO the sender retransmits it (possibly repacketized
            # together with the first half of the next segment: old + already-captured bytes)
            segs = P[idxs[0]:]
            del P[idxs[0]:]
            k = rng.randrange(len(segs) - 1)
            lost = segs.pop(k)
            nxt = segs[k]
            for p in segs:
                P.append(p)
            for _ in range(rng.randint(1, 3)):
                self.ack(other(d), self.small())
            st = self.cur.stream[d]
            if pert == "hole_repack":
                hi = nxt["off"] + max(1, len(nxt["data"]) // 2)
                self.emit(d, lost["off"], st[lost["off"]:hi], "A", self.g(200 * MS, 1 * SEC))
            else:
                self.insert_copy(len(P), lost, self.g(200 * MS, 1 * SEC))
            idxs = list(range(idxs[0], len(P)))
        elif pert == "rotate" and len(idxs) >= 3 and idxs == list(range(idxs[0], idxs[0] + len(idxs))):
            # the last segment is captured first, then the others in order
            segs = P[idxs[0]:idxs[-1] + 1]
            gaps = [p["gap"] for p in segs]
            segs = [segs[-1]] + segs[:-1]
            for i, p in enumerate(segs):
                p["gap"] = gaps[i]
            P[idxs[0]:idxs[-1] + 1] = segs
        elif pert == "shuffle" and len(idxs) >= 2 and idxs == list(range(idxs[0], idxs[0] + len(idxs))):
            # any permutation of the write's segments, some captured twice
            segs = P[idxs[0]:idxs[-1] + 1]
            gaps = [p["gap"] for p in segs]
            rng.shuffle(segs)
            for i, p in enumerate(segs):
                p["gap"] = gaps[i]
            P[idxs[0]:idxs[-1] + 1] = segs
            for _ in range(rng.randint(0, 2)):
                self.insert_copy(rng.randint(idxs[0] + 1, len(P)), rng.choice(segs), self.small())
            idxs = list(range(idxs[0], len(P)))
        elif pert == "retx":
            k = rng.choice(idxs)
            self.insert_copy(len(P), P[k], self.g(1 * MS, 250 * MS))
        elif pert == "overlap_old" and len(idxs) >= 2:
            k = rng.randrange(len(idxs) - 1)
            p1, p2 = P[idxs[k]], P[idxs[k + 1]]
            lo = p1["off"] + len(p1["data"]) // 2
            hi = p2["off"] + max(1, len(p2["data"]) // 2)
            st = self.cur.stream[d]
            self.insert_copy(len(P), p2, self.g(1 * MS, 200 * MS), off=lo, data=bytes(st[lo:hi]), flags="A")
        elif pert == "overlap_new" and len(idxs) >= 2 and len(P[idxs[-1]]["data"]) >= 2:
            # the last segment is sent as: R = [mid(prev), mid(last)) (old + new bytes), then the rest
            p1, p2 = P[idxs[-2]], P[idxs[-1]]
            if p1["off"] + len(p1["data"]) != p2["off"] or idxs[-1] != len(P) - 1:
                return idxs
            st = self.cur.stream[d]
            lo = p1["off"] + len(p1["data"]) // 2
            mid = p2["off"] + len(p2["data"]) // 2
            end = p2["off"] + len(p2["data"])
            last_flags = p2["flags"]
            P[idxs[-1]] = dict(p2, off=lo, data=bytes(st[lo:mid]), flags="A")
            P[idxs[-1]]["gap"] = self.g(1 * MS, 200 * MS)
            idxs.append(self.emit(d, mid, st[mid:end], last_flags, self.small()))
        elif pert == "fin_first":
            # the last data segment is overtaken by the (separate) FIN segment
            if "F" in P[idxs[-1]]["flags"] or idxs[-1] != len(P) - 1:
                return idxs
            lc = self.cur
            fi = self.emit(d, len(lc.stream[d]), b"", "AF", self.small())
            lc.fin_sent[d] = True
            self.swap(idxs[-1], fi)
            idxs[-1] = fi
        return idxs

    def ack(self, d, gap=None):
        lc = self.cur
        return self.emit(d, len(lc.stream[d]) + (1 if lc.fin_sent[d] else 0), b"", "A",
                         gap if gap is not None else self.rtt())

    def fin(self, d, gap=None, retx=False):
        lc = self.cur
        i = self.emit(d, len(lc.stream[d]), b"", "AF", gap if gap is not None else self.small())
        lc.fin_sent[d] = True
        if retx:
            self.insert_copy(len(self.pkts), self.pkts[i], self.g(200 * MS, 400 * MS))
        return i

    def rst(self, d, gap=None, with_ack=True):
        lc = self.cur
        lc.rst_sent[d] = True
        return self.emit(d, len(lc.stream[d]) + (1 if lc.fin_sent[d] else 0), b"", "RA" if with_ack else "R",
                         gap if gap is not None else self.small())

    def keepalive(self, d, gap, one_byte):
        lc = self.cur
        n = len(lc.stream[d])
        if one_byte and n > 0:
            self.emit(d, n - 1, lc.stream[d][n - 1:n], "A", gap)
        else:
            self.emit(d, n - 1, b"", "A", gap)
        self.ack(other(d), self.rtt())

    # ---- WebSocket level helpers ------------------------------------------------------------------
    def ws(self, d, frames, **kw):
        if "plan" not in kw:
            r = self.rng.random()
            if r < 0.04:
                kw["plan"] = "tiny"
            elif r < 0.12:
                kw["plan"] = "random"
            elif r < 0.3:
                kw["cuts"] = [self.rng.choice([1, 2, 3, 4, 6])]  # frame header split
        if "pert" not in kw and self.rng.random() < 0.3:
            kw["pert"] = self.rng.choice(["swap", "retx", "overlap_old", "overlap_new", "dupack", "hole",
                                          "hole_repack", "rotate", "shuffle", "shuffle"])
        return self.write(d, frames, **kw)

    def ping(self, d, payload=None, answer=True):
        lc = self.cur
        if payload is None:
            r = self.rng.random()
            if r < 0.1:
                payload = b""
            elif r < 0.2:
                payload = bytes([len(lc.ping_payloads[d])]) + bytes(self.rng.getrandbits(8) for _ in range(124))
            else:
                payload = self.rng.getrandbits(48).to_bytes(6, "big") + bytes([len(lc.ping_payloads[d])])
        lc.ping_payloads[d].append(payload)
        self.ws(d, [(9, payload, True)], gap=self.g(1 * MS, 3 * SEC))
        if answer:
            self.ws(other(d), [(10, payload, True)], gap=self.rtt())

    def pick_size(self):
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice([65535, 65536, 70000])
        if r < 0.25:
            return self.rng.choice([0, 1, 2, 125, 126, 127, 1447, 1448, 1449, 4096])
        if r < 0.85:
            return self.rng.randint(0, 600)
        return self.rng.randint(600, 12000)


# --------------------------------------------------------------------------------------------------
# Scenarios

BODY_KINDS = ["msg", "msg", "echo", "multi", "frag", "ping", "pong", "idle"]


def body(sc, n_items):
    rng = sc.rng
    for _ in range(n_items):
        k = rng.choice(BODY_KINDS)
        d = rng.choice("cs")
        if k == "msg":
            sc.ws(d, [sc.data_frame(d, sc.pick_size())], gap=sc.g(1 * MS, 2 * SEC))
        elif k == "echo":
            f = sc.data_frame("c", sc.pick_size())
            sc.ws("c", [f], gap=sc.g(1 * MS, 2 * SEC))
            sc.ws("s", [f], gap=sc.rtt())
        elif k == "multi":  # several frames in one write -> several frames in one segment
            frames = [sc.data_frame(d, rng.randint(0, 90)) for _ in range(rng.randint(2, 6))]
            if rng.random() < 0.4:
                frames.insert(rng.randrange(len(frames) + 1), (9, b"mp%d" % rng.randint(0, 999), True))
                sc.cur.ping_payloads[d].append(frames[[f[0] for f in frames].index(9)][1])
                sc.ws(d, frames, gap=sc.g(1 * MS, 2 * SEC), plan="mss")
                sc.ws(other(d), [(10, [f for f in frames if f[0] == 9][0][1], True)], gap=sc.rtt())
                continue
            sc.ws(d, frames, gap=sc.g(1 * MS, 2 * SEC), plan="mss")
        elif k == "frag":
            frag_message(sc, d)
        elif k == "ping":
            sc.ping(d)
        elif k == "pong":  # unsolicited pong (heartbeat)
            sc.ws(d, [(10, b"hb-%d" % rng.randint(0, 99999), True)], gap=sc.g(1 * MS, 3 * SEC))
        elif k == "idle":
            idle(sc, rng.randint(2, 20) * SEC)


def frag_message(sc, d):
    rng = sc.rng
    opcode = rng.choice([1, 2])
    total = rng.choice([rng.randint(2, 400), rng.randint(400, 5000)])
    payload = text_payload(rng, total) if opcode == 1 else bytes(rng.getrandbits(8) for _ in range(total))
    nfr = rng.randint(2, 5)
    cuts = sorted(rng.sample(range(1, total), min(nfr - 1, total - 1)))
    parts = [payload[a:b] for a, b in zip([0] + cuts, cuts + [total])]
    if rng.random() < 0.2:
        parts.insert(rng.randint(1, len(parts)), b"")  # an empty continuation frame
    for i, part in enumerate(parts):
        op = opcode if i == 0 else 0
        fr = (op, part, i == len(parts) - 1)
        if i > 0 and rng.random() < 0.5:
            # a ping between fragments, from the fragmenting side (same direction), answered
            r = rng.random()
            if r < 0.5:
                pl = b"fp%d" % rng.randint(0, 99999)
                sc.cur.ping_payloads[d].append(pl)
                sc.ws(d, [(9, pl, True), fr], gap=sc.g(1 * MS, 500 * MS))
                sc.ws(other(d), [(10, pl, True)], gap=sc.rtt())
                continue
            else:
                # the peer pings while the message is in progress; the fragmenter answers
                # between its own fragments
                sc.ping(other(d))
        sc.ws(d, [fr], gap=sc.g(1 * MS, 500 * MS))


def idle(sc, dur):
    """dur ns of silence, possibly with TCP keep-alives (not activity)"""
    rng = sc.rng
    if rng.random() < 0.5:
        n = rng.randint(1, 3)
        step = dur // (n + 1)
        for _ in range(n):
            sc.keepalive(rng.choice("cs"), sc.g(step - 5 * MS, step), rng.random() < 0.5)
        return sc.g(step // 2, step)
    return dur


def close_frame(sc, d, code, reason):
    return (8, close_payload(code, reason), True)


def end_clean(sc, init, code, reason, reply_code=None, reply_reason=None, variant=None):
    """RFC 6455 §7.1.1/§5.5.1: close, close reply, the server closes TCP first, then the client."""
    rng = sc.rng
    resp = other(init)
    variant = variant or rng.choice(["plain", "split", "with_data", "swap_prev", "fin_same", "retx"])
    if reply_code is None and reply_reason is None:
        reply_code, reply_reason = code, (reason if rng.random() < 0.5 else "")
    cf = close_frame(sc, init, code, reason)
    g0 = sc.g(10 * MS, 4 * SEC)
    if variant == "split":
        flen = len(ws_frame(8, cf[1], True, None if init == "s" else b"0000"))
        k = rng.choice([2, 3]) if flen >= 3 else 2
        cuts = sorted(rng.sample(range(1, flen), min(k - 1, flen - 1)))
        sc.write(init, [cf], cuts=cuts, gap=g0, ack=False, plan="mss",
                 pert=rng.choice([None, "swap", "swap_last"]))
        sc.ack(resp)
    elif variant == "with_data":
        # data frame(s) and the close frame in the same segment
        frs = [sc.data_frame(init, rng.randint(0, 200)) for _ in range(rng.randint(1, 2))]
        sc.write(init, frs + [cf], gap=g0, plan="mss")
    elif variant == "swap_prev":
        # a data segment then the close segment, captured in the reverse order
        sc.write(init, [sc.data_frame(init, rng.randint(10, 1000))], gap=g0, ack=False, plan="mss",
                 cuts=None)
        j = sc.write(init, [cf], gap=sc.small(), ack=False, plan="mss")
        sc.swap(j[-1] - 1, j[-1])
        sc.ack(resp)
    elif variant == "retx":
        sc.write(init, [cf], gap=g0, pert="retx")
    else:
        sc.write(init, [cf], gap=g0, ack=rng.random() < 0.7)
    # the responder may still send a data frame before its close reply (allowed)
    if rng.random() < 0.2:
        sc.write(resp, [sc.data_frame(resp, rng.randint(0, 100))], gap=sc.small())
    rf = close_frame(sc, resp, reply_code, reply_reason)
    if resp == "s":
        if variant == "fin_same" or rng.random() < 0.4:
            # close reply in a FIN+PSH+ACK segment
            sc.write("s", [rf], fin=True, gap=sc.rtt(), ack=False)
            if rng.random() < 0.3:
                sc.fin("s", sc.g(200 * MS, 300 * MS))  # the FIN retransmitted alone (seq = end of data)
        elif rng.random() < 0.15:
            # the server resets after its close reply (SO_LINGER 0) instead of a FIN
            sc.write("s", [rf], gap=sc.rtt(), ack=False)
            sc.rst("s", sc.g(US, 5 * MS), with_ack=rng.random() < 0.5)
            return
        elif rng.random() < 0.15:
            # the client half-closes right after its close frame; the server still answers
            sc.fin("c", sc.g(US, 2 * MS))
            sc.write("s", [rf], gap=sc.rtt(), ack=False)
            sc.fin("s", sc.small())
            sc.ack("c")
            return
        elif rng.random() < 0.25:
            # the client closes TCP first after the close handshake (common, though RFC 6455
            # §7.1.1 says the server SHOULD)
            sc.write("s", [rf], gap=sc.rtt(), ack=False)
            sc.fin("c", sc.rtt())
            sc.ack("s")
            sc.fin("s", sc.g(1 * MS, 30 * MS))
            sc.ack("c")
            return
        else:
            sc.write("s", [rf], gap=sc.rtt(), ack=False)
            sc.fin("s", sc.small(), retx=rng.random() < 0.25)
        sc.ack("c")
        sc.fin("c", sc.g(1 * MS, 30 * MS))
        sc.ack("s")
    else:
        sc.write("c", [rf], gap=sc.rtt(), ack=rng.random() < 0.5)
        sc.fin("s", sc.rtt(), retx=rng.random() < 0.2)
        sc.ack("c")
        sc.fin("c", sc.g(1 * MS, 30 * MS))
        sc.ack("s")


def both_fin_after_closes(sc):
    """Both closes were sent: each side ACKs the other's, then the server's FIN, then the client's."""
    sc.ack("c")
    sc.ack("s", sc.small())
    sc.fin("s", sc.rtt())
    sc.ack("c")
    sc.fin("c", sc.small())
    sc.ack("s")


def end_simultaneous(sc, code):
    rng = sc.rng
    sc.write("c", [close_frame(sc, "c", code, REASONS[code])], gap=sc.g(10 * MS, 2 * SEC), ack=False)
    # the server's close was sent before the client's close reached it: its ACK does not cover it
    sc.write("s", [close_frame(sc, "s", 1001, "shutting down")], gap=sc.g(US, 200 * US), ack=False,
             stale_ack=True)
    both_fin_after_closes(sc)


def end_close_then_rst(sc, init, code):
    rng = sc.rng
    sc.ws(init, [close_frame(sc, init, code, REASONS[code])], gap=sc.g(10 * MS, 2 * SEC), ack=False)
    if rng.random() < 0.5:
        sc.rst(other(init), sc.rtt(), with_ack=rng.random() < 0.5)  # the peer resets instead of replying
    else:
        sc.ack(other(init))
        sc.rst(init, sc.g(1 * MS, 100 * MS), with_ack=rng.random() < 0.5)  # the closer gives up waiting


def end_idle_rst(sc):
    rng = sc.rng
    rest = idle(sc, 60 * SEC)
    sc.rst("s", rest, with_ack=rng.random() < 0.5)
    if rng.random() < 0.3:
        sc.rst("s", sc.g(10 * MS, 50 * MS))  # a second RST (answering a late packet)


def end_fin_no_close(sc, who, both=False):
    rng = sc.rng
    if rng.random() < 0.4:
        # last data and FIN in the same segment
        sc.write(who, [sc.data_frame(who, rng.randint(0, 300))], fin=True, gap=sc.g(10 * MS, 3 * SEC),
                 ack=False)
    else:
        sc.fin(who, sc.g(10 * MS, 3 * SEC))
    sc.ack(other(who))
    if both or rng.random() < 0.7:
        sc.fin(other(who), sc.g(1 * MS, 20 * MS))
        sc.ack(who)


def end_fin_overtakes(sc, code):
    """server: data + close frame, then FIN as a separate segment captured BEFORE the last data"""
    rng = sc.rng
    fr = [sc.data_frame("s", rng.randint(0, 500))] if rng.random() < 0.5 else []
    sc.write("s", fr + [close_frame(sc, "s", code, REASONS[code])], gap=sc.g(10 * MS, 2 * SEC),
             ack=False, pert="fin_first")
    sc.ack("c")
    sc.write("c", [close_frame(sc, "c", code, "")], gap=sc.rtt(), ack=False)
    sc.ack("s")
    sc.fin("c", sc.small())
    sc.ack("s")


def end_data_close_fin(sc, code):
    """client close first; the server's last data + close reply + FIN in ONE segment"""
    rng = sc.rng
    sc.write("c", [close_frame(sc, "c", code, REASONS[code])], gap=sc.g(10 * MS, 2 * SEC))
    frs = [sc.data_frame("s", rng.randint(0, 120)) for _ in range(rng.randint(1, 3))]
    sc.write("s", frs + [close_frame(sc, "s", code, "bye")], fin=True, gap=sc.rtt(), ack=False, plan="mss",
             cuts=None)
    sc.ack("c")
    sc.fin("c", sc.small())
    sc.ack("s")


def end_close_split_ooo(sc, code):
    """server close frame (with a UTF-8 reason) in 3 segments, the last two swapped; the client's
    close reply then goes out header byte first"""
    rng = sc.rng
    cf = close_frame(sc, "s", code, rng.choice(UTF8_REASONS))
    flen = 2 + len(cf[1])
    cuts = sorted(rng.sample(range(1, flen), 2))
    sc.write("s", [cf], cuts=cuts, gap=sc.g(10 * MS, 2 * SEC), ack=False, plan="mss", pert="swap_last")
    sc.ack("c")
    sc.write("c", [close_frame(sc, "c", code, "")], cuts=[1], gap=sc.rtt(), ack=False, plan="mss")
    sc.ack("s")
    sc.fin("s", sc.small())
    sc.ack("c")
    sc.fin("c", sc.small())
    sc.ack("s")


def end_simultaneous_reordered(sc, code):
    """both sides close at once; the server's close segment is split and its tail is captured
    first, then the client's close, then the head: the client's close COMPLETES first"""
    rng = sc.rng
    cf = close_frame(sc, "s", code, rng.choice(UTF8_REASONS))
    k = rng.randint(1, 1 + len(cf[1]))
    j = sc.write("s", [cf], cuts=[k], gap=sc.g(10 * MS, 2 * SEC), ack=False, plan="mss")
    assert len(j) == 2
    sc.swap(j[0], j[1])  # tail first
    head = j[1]
    sc.write("c", [close_frame(sc, "c", 1000, "")], gap=sc.g(20 * US, 300 * US), ack=False, stale_ack=True)
    sc.move_to_end(head, sc.g(1 * MS, 300 * MS))
    both_fin_after_closes(sc)


def end_fin_then_rst(sc, code):
    """server close + FIN; a buggy client sends data instead of a close; the server answers RST"""
    rng = sc.rng
    sc.write("s", [close_frame(sc, "s", code, REASONS[code])], fin=True, gap=sc.g(10 * MS, 2 * SEC), ack=False)
    sc.ack("c")
    sc.write("c", [sc.data_frame("c", rng.randint(1, 50))], gap=sc.g(1 * MS, 50 * MS), ack=False)
    sc.rst("s", sc.rtt(), with_ack=False)


def end_close_then_fin(sc, init, code):
    """a close frame answered by a FIN, not by a close frame (close-unanswered)"""
    rng = sc.rng
    sc.ws(init, [close_frame(sc, init, code, REASONS[code])], gap=sc.g(10 * MS, 2 * SEC), ack=False)
    sc.fin(other(init), sc.rtt())
    sc.ack(init)
    sc.fin(init, sc.g(1 * MS, 50 * MS))
    sc.ack(other(init))


def end_halfclose_then_close(sc, code):
    """the client half-closes TCP (FIN, no close frame); the server still sends data, then its close
    frame and FIN"""
    rng = sc.rng
    sc.fin("c", sc.g(10 * MS, 2 * SEC))
    sc.ack("s")
    for _ in range(rng.randint(0, 2)):
        sc.ws("s", [sc.data_frame("s", sc.pick_size())], gap=sc.g(1 * MS, 100 * MS), ack=True)
    sc.write("s", [close_frame(sc, "s", code, REASONS[code])], fin=rng.random() < 0.5, gap=sc.g(1 * MS, 100 * MS),
             ack=False)
    if not sc.cur.fin_sent["s"]:
        sc.fin("s", sc.small())
    sc.ack("c")


def end_open(sc):
    rng = sc.rng
    for _ in range(rng.randint(0, 2)):
        sc.ping(rng.choice("cs"))


def build_conn(sc, client, server, ending, code, start_gap, wrap, reused_later=False, tfo=False):
    rng = sc.rng
    lc = sc.new_conn(client, server, ending)
    sc.handshake(start_gap, tfo)
    body(sc, rng.randint(1, 7))
    if ending == "clean_client":
        end_clean(sc, "c", code, REASONS[code])
    elif ending == "clean_server":
        end_clean(sc, "s", code, REASONS[code])
    elif ending == "clean_empty":
        end_clean(sc, rng.choice("cs"), None, "", None, "")
    elif ending == "clean_code_only":
        end_clean(sc, rng.choice("cs"), code, "")
    elif ending == "clean_utf8":
        end_clean(sc, rng.choice("cs"), code, rng.choice(UTF8_REASONS))
    elif ending == "close_then_rst":
        end_close_then_rst(sc, rng.choice("cs"), code)
    elif ending == "idle_rst":
        end_idle_rst(sc)
    elif ending == "fin_no_close":
        # a 4-tuple is only reused after BOTH directions closed (else the SYN hits a half-open one)
        end_fin_no_close(sc, rng.choice("cs"), both=reused_later)
    elif ending == "rst_client":
        sc.rst("c", sc.g(10 * MS, 2 * SEC))
    elif ending == "simultaneous":
        end_simultaneous(sc, code)
    elif ending == "open":
        end_open(sc)
    elif ending == "simultaneous_reordered":
        end_simultaneous_reordered(sc, code)
    elif ending == "fin_then_rst":
        end_fin_then_rst(sc, code)
    elif ending == "close_then_fin":
        end_close_then_fin(sc, rng.choice("cs"), code)
    elif ending == "halfclose_then_close":
        end_halfclose_then_close(sc, code)
    elif ending == "weird_close":
        bad = rng.choice([1005, 1006, 1015, 999, 5000, 2999, 1004, 1016, 65535, 0])
        reason = rng.choice(["", "x" * 123, "é" * 61 + "x"])  # up to the 123-byte maximum
        end_clean(sc, rng.choice("cs"), bad, reason, 1002, "")
    elif ending == "fin_overtakes":
        end_fin_overtakes(sc, code)
    elif ending == "data_close_fin":
        end_data_close_fin(sc, code)
    elif ending == "close_split_ooo":
        end_close_split_ooo(sc, code)
    else:
        raise ValueError(ending)
    # ISNs: random, or close to 2^32 so that the sequence numbers wrap inside the connection
    for d in "cs":
        n = len(lc.stream[d])
        if wrap and n > 2:
            r = rng.random()
            if r < 0.15:
                lc.isn[d] = 2**32 - 1 - n  # last data byte at seq 2^32-1, the FIN at seq 0
            elif r < 0.3:
                lc.isn[d] = 2**32 - 2 - n  # the FIN at seq 2^32-1
            elif r < 0.4:
                lc.isn[d] = 2**32 - 1  # SYN at 2^32-1, first data byte at seq 0
            else:
                lc.isn[d] = (2**32 - 1 - rng.randint(0, n - 2)) & 0xFFFFFFFF
        else:
            lc.isn[d] = rng.getrandbits(32)
    return lc


ENDINGS = ["clean_client", "clean_server", "clean_empty", "clean_code_only", "clean_utf8",
           "close_then_rst", "idle_rst", "fin_no_close", "rst_client", "simultaneous", "open",
           "fin_overtakes", "data_close_fin", "close_split_ooo", "reuse", "simultaneous_reordered",
           "fin_then_rst", "close_then_fin", "halfclose_then_close"]


# --------------------------------------------------------------------------------------------------
# Packet encoding

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload, opts, v6):
    fl = 0
    for ch, bit in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16)):
        if ch in flags:
            fl |= bit
    while len(opts) % 4:
        opts += b"\x01"
    doff = (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, fl,
                      64240, 0, 0) + opts
    seg = hdr + payload
    if v6:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(seg), 6)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!xBH", 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def ip_packet(src, dst, tcp, ident, ipopts=False):
    if src.version == 6:
        if ipopts:  # a hop-by-hop options extension header (PadN) before TCP
            ext = bytes([6, 0, 1, 4, 0, 0, 0, 0])
            return struct.pack("!IHBB", 0x60000000, len(ext) + len(tcp), 0, 64) + src.packed + dst.packed + ext + tcp
        return struct.pack("!IHBB", 0x60000000, len(tcp), 6, 64) + src.packed + dst.packed + tcp
    opt = b"\x94\x04\x00\x00" if ipopts else b""  # Router Alert: IHL 6
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45 + len(opt) // 4, 0, 20 + len(opt) + len(tcp), ident & 0xFFFF,
                      0x4000, 64, 6, 0, src.packed, dst.packed) + opt
    c = csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + tcp


def link_frame(linktype, ippkt, from_client, lk):
    et = 0x86DD if ippkt[0] >> 4 == 6 else 0x0800
    if linktype == 1:
        smac, dmac = (lk["cmac"], lk["smac"]) if from_client else (lk["smac"], lk["cmac"])
        if lk.get("qinq"):
            fr = dmac + smac + struct.pack("!HHHHH", 0x88A8, lk["qinq"], 0x8100, lk["vlan"] or 7, et) + ippkt
        elif lk.get("vlan") is not None:
            fr = dmac + smac + struct.pack("!HHH", 0x8100, lk["vlan"], et) + ippkt
        else:
            fr = dmac + smac + struct.pack("!H", et) + ippkt
        if lk.get("pad") and len(fr) < 60:
            # Ethernet minimum frame (without FCS): trailer bytes after the IP packet
            fr += lk["pad"] * (60 - len(fr))
        return fr
    if linktype == 276:
        mac = lk["cmac"] if from_client else lk["smac"]
        return struct.pack("!HHIHBB", et, 0, lk["ifindex"], 1, 4 if from_client else 0, 6) + mac + b"\0\0" + ippkt
    if linktype == 101:
        return ippkt
    if linktype == 113:  # Linux cooked v1: packet type, ARPHRD, addr len, addr[8], protocol
        mac = lk["cmac"] if from_client else lk["smac"]
        return struct.pack("!HHH", 4 if from_client else 0, 1, 6) + mac + b"\0\0" + struct.pack("!H", et) + ippkt
    if linktype == 0:  # BSD loopback: address family in the writer's (here little-endian) byte order
        return struct.pack("<I", 30 if et == 0x86DD else 2) + ippkt
    raise ValueError(linktype)


def write_pcap(path, linktype, recs, ns, big_endian):
    e = ">" if big_endian else "<"
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", 0xA1B23C4D if ns else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for t, data in recs:
            sec, frac = divmod(t, SEC)
            sub = frac if ns else frac // US
            f.write(struct.pack(e + "IIII", sec, sub, len(data), len(data)) + data)


def write_pcapng(path, ifaces, recs, blocks=False, big_endian=False):
    """ifaces: [(linktype, tsresol)], tsresol None (option absent, default 10^-6) or 6 or 9;
    recs: (t, iface, data)"""
    e = ">" if big_endian else "<"

    def block(btype, body):
        while len(body) % 4:
            body += b"\0"
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    with open(path, "wb") as f:
        shb_opts = struct.pack(e + "HH", 4, 10) + b"xcheck/gen\0\0" + struct.pack(e + "HH", 0, 0)
        f.write(block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts))
        for i, (linktype, tsresol) in enumerate(ifaces):
            opts = b""
            if tsresol is not None:
                opts += struct.pack(e + "HHB3x", 9, 1, tsresol)
            opts += struct.pack(e + "HH", 2, 4) + b"eth%d" % i + struct.pack(e + "HH", 0, 0)
            f.write(block(1, struct.pack(e + "HHI", linktype, 0, 262144) + opts))
        if blocks:  # a Name Resolution Block, as Wireshark writes
            rec = struct.pack(e + "HH", 1, 4 + 12) + bytes([192, 0, 2, 10]) + b"srv.test\0\0\0\0"
            f.write(block(4, rec + struct.pack(e + "HH", 0, 0)))
        for n, (t, i, data) in enumerate(recs):
            ts = t // (1 if ifaces[i][1] == 9 else US)
            body = struct.pack(e + "IIIII", i, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
            if blocks and n % 7 == 3:
                while len(body) % 4:
                    body += b"\0"
                # EPB options: epb_flags (inbound), a comment
                body += struct.pack(e + "HHI", 2, 4, 1) + struct.pack(e + "HH", 1, 5) + b"hello\0\0\0" + struct.pack(e + "HH", 0, 0)
            f.write(block(6, body))
            if blocks and n % 500 == 250:  # a custom block (PEN 32473, example) to be skipped
                f.write(block(0x00000BAD, struct.pack(e + "I", 32473) + b"xcheck custom"))
        if blocks:  # Interface Statistics Blocks at the end, as dumpcap writes them
            last = recs[-1][0] // (1 if ifaces[0][1] == 9 else US)
            for i in range(len(ifaces)):
                f.write(block(5, struct.pack(e + "III", i, last >> 32, last & 0xFFFFFFFF)
                              + struct.pack(e + "HHQ", 4, 8, len(recs)) + struct.pack(e + "HHQ", 5, 8, 0) + struct.pack(e + "HH", 0, 0)))


# --------------------------------------------------------------------------------------------------
# Replay in capture order: ack numbers and truth

def rfc3339(t, ns):
    sec, frac = divmod(t, SEC)
    base = datetime.datetime.fromtimestamp(sec, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return base + (".%09d" % frac if ns else ".%06d" % (frac // US)) + "Z"


def ep_str(ep):
    ip, port = ep
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"


class RxState:
    def __init__(self, n):
        self.got = bytearray(n)
        self.avail = [None] * n
        self.nxt = 0
        self.fin_off = None
        self.syn = False
        self.log = []  # (t, off, len, flags) of every packet of this direction, capture order

    def fin_in_order(self):
        return self.fin_off is not None and self.nxt >= self.fin_off


def replay(order, ns):
    """order: list of (t, pkt). Fills per-LConn truth data and per-packet ack numbers."""
    states = {}
    for t, p in order:
        lc = p["lc"]
        if id(lc) not in states:
            states[id(lc)] = {"c": RxState(len(lc.stream["c"])), "s": RxState(len(lc.stream["s"])),
                              "last_ack": {"c": None, "s": None}, "first": {}, "t0": t}
            lc.rx = states[id(lc)]
        st = states[id(lc)]
        d, o = p["d"], other(p["d"])
        lc.t_last = t
        # ack number: what d has received in order from o, as seen at this point of the capture
        ro = st[o]
        if ro.syn:
            a = (lc.isn[o] + 1 + ro.nxt + (1 if ro.fin_in_order() else 0)) & 0xFFFFFFFF
            if p["stale_ack"] and st["last_ack"][d] is not None:
                a = st["last_ack"][d]
            p["ack"] = a
            st["last_ack"][d] = a
        else:
            p["ack"] = 0
        p["t"] = t
        r = st[d]
        for fl in "SFR":
            if fl in p["flags"] and (d, fl) not in st["first"]:
                st["first"][(d, fl)] = t
        if "S" in p["flags"]:
            r.syn = True
        data = p["data"]
        r.log.append((t, p["off"], len(data), p["flags"]))
        if data:
            a = p["off"]
            for i in range(a, a + len(data)):
                r.got[i] = 1
            while r.nxt < len(r.got) and r.got[r.nxt]:
                r.avail[r.nxt] = t
                r.nxt += 1
        if "F" in p["flags"]:
            r.fin_off = p["off"] + len(data)
    return states


def coverage(lc, cov):
    """counts the edge cases this connection really exercises (printed, not part of the truth)"""
    st = lc.rx
    add = lambda k, n=1: cov.__setitem__(k, cov.get(k, 0) + n)
    add("connections")
    wrapped = False
    for d in "cs":
        log = st[d].log
        n = len(lc.stream[d])
        if n and lc.isn[d] + 1 + n > 2**32 and lc.isn[d] + 1 < 2**32:
            wrapped = True
        seen = set()
        for t, off, ln, fl in log:
            if ln and (off, ln) in seen:
                add("exact retransmissions")
            elif ln and any(o < off + ln and off < o + l for o, l in seen):
                add("overlapping segments (partial/keep-alive)")
            if ln:
                seen.add((off, ln))
            if ln == 0 and off == n - 1 and "F" not in fl and "R" not in fl and "S" not in fl:
                add("zero-length keep-alives")
            if ln and "F" in fl:
                add("data segments with FIN")
        fin_t = st["first"].get((d, "F"))
        if fin_t is not None and n and st[d].avail[n - 1] > fin_t:
            add("FIN captured before the last data byte was in order")
        for fr in lc.frames[d]:
            done = st[d].avail[fr["end"] - 1]
            carriers = [t for t, off, ln, fl in log if off <= fr["end"] - 1 < off + ln]
            if done != carriers[0]:
                add("frames completed by a later packet than the first carrying their last byte")
                if fr["opcode"] == 8:
                    add("  ...of which close frames")
            hdr = 2 + (2 if 126 <= len(fr["payload"]) <= 0xFFFF else 8 if len(fr["payload"]) > 0xFFFF else 0) + (4 if d == "c" else 0)
            firsts = [(t, off, ln) for t, off, ln, fl in log if ln and off <= fr["start"] < off + ln]
            if firsts and firsts[0][1] + firsts[0][2] < fr["start"] + hdr:
                add("frame headers split across segments")
            if fr["opcode"] == 8 and firsts and firsts[0][1] + firsts[0][2] < fr["end"]:
                add("close frames split across segments")
            if len(fr["payload"]) > 0xFFFF:
                add("frames with 64-bit length")
            elif len(fr["payload"]) >= 126:
                add("frames with 16-bit length")
            if fr["opcode"] == 0:
                add("continuation frames")
        multi = {}
        for fr in lc.frames[d]:
            for t, off, ln, fl in log:
                if ln and off <= fr["start"] and fr["end"] <= off + ln:
                    multi[(off, ln)] = multi.get((off, ln), 0) + 1
                    break
        add("segments carrying >= 2 whole frames", sum(1 for v in multi.values() if v >= 2))
    if wrapped:
        add("connections whose sequence numbers wrap")


def conn_truth(lc, ns):
    st = lc.rx
    T = lambda t: rfc3339(t, ns)
    for d in "cs":
        if st[d].nxt != len(lc.stream[d]):
            raise AssertionError(f"{lc.scenario}: stream {d} not fully delivered")
    closes = {}
    counts = {k: {"client": 0, "server": 0} for k in ("pings", "pongs", "frames", "data_frames", "data_bytes",
                                                      "largest_message")}
    name = {"c": "client", "s": "server"}
    pings_sent = {"c": [], "s": []}
    pongs_sent = {"c": [], "s": []}
    for d in "cs":
        msg = 0
        for fr in lc.frames[d]:
            t = st[d].avail[fr["end"] - 1]
            assert t is not None
            op = fr["opcode"]
            counts["frames"][name[d]] += 1
            if op == 9:
                counts["pings"][name[d]] += 1
                pings_sent[d].append(fr["payload"])
            elif op == 10:
                counts["pongs"][name[d]] += 1
                pongs_sent[d].append(fr["payload"])
            elif op == 8:
                if d not in closes:
                    pl = fr["payload"]
                    code = struct.unpack(">H", pl[:2])[0] if len(pl) >= 2 else None
                    closes[d] = {"by": name[d], "at": T(t), "code": code, "reason": pl[2:].decode("utf-8"),
                                 "_t": t}
            elif op in (0, 1, 2):
                counts["data_frames"][name[d]] += 1
                counts["data_bytes"][name[d]] += len(fr["payload"])
                msg = (0 if op != 0 else msg) + len(fr["payload"])
                if fr["fin"]:
                    counts["largest_message"][name[d]] = max(counts["largest_message"][name[d]], msg)
                    msg = 0
    first_close = close_reply = None
    if closes:
        order = sorted(closes.values(), key=lambda c: c["_t"])
        first_close = order[0]
        close_reply = order[1] if len(order) > 1 else None
    def strip(c):
        return None if c is None else {k: v for k, v in c.items() if k != "_t"}

    def first_flag(fl):
        cand = [(st["first"][(d, fl)], d) for d in "cs" if (d, fl) in st["first"]]
        if not cand:
            return None
        t, d = min(cand)
        return {"by": name[d], "at": T(t)}

    per_side = lambda fl: {name[d]: (T(st["first"][(d, fl)]) if (d, fl) in st["first"] else None) for d in "cs"}
    ended = any((d, fl) in st["first"] for d in "cs" for fl in "FR")
    if len(closes) == 2:
        outcome = "clean"
    elif closes:
        assert ended, lc.scenario
        outcome = "close-unanswered"
    elif ended:
        outcome = "abnormal"
    else:
        outcome = "open"
    unanswered = 0
    unanswered_by = {"client": 0, "server": 0}
    unsolicited = {"client": 0, "server": 0}
    for d in "cs":
        pongs = list(pongs_sent[other(d)])
        for pl in pings_sent[d]:
            if pl in pongs:
                pongs.remove(pl)
            else:
                unanswered += 1
                unanswered_by[name[d]] += 1
        unsolicited[name[other(d)]] = len(pongs)
    last_frame = {}
    for d in "cs":
        if lc.frames[d]:
            fr = lc.frames[d][-1]
            opname = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}
            last_frame[name[d]] = {"at": T(st[d].avail[fr["end"] - 1]), "opcode": opname[fr["opcode"]]}
        else:
            last_frame[name[d]] = None
    nc = len(lc.frames["c"])
    return {
        "client": ep_str(lc.client), "server": ep_str(lc.server), "scenario": lc.scenario,
        "ambiguous": lc.ambiguous,
        "first_close": strip(first_close), "close_reply": strip(close_reply),
        "first_fin": first_flag("F"), "first_rst": first_flag("R"),
        "pings": counts["pings"], "pongs": counts["pongs"],
        "extra": {
            "outcome": outcome, "path": lc.path,
            "syn_at": T(st["first"][("c", "S")]),
            "start": T(st["t0"]), "end": T(lc.t_last),
            "fin": per_side("F"), "rst": per_side("R"),
            "frames": counts["frames"], "data_frames": counts["data_frames"],
            "data_bytes": counts["data_bytes"], "largest_message": counts["largest_message"],
            "unanswered_pings": unanswered,
            "unanswered_pings_by": unanswered_by,
            "unsolicited_pongs": unsolicited,
            "last_frame": last_frame,
            "upgrade_at": T(st["s"].avail[lc.resp_len - 1]),
            "gaps": {"client": {"count": 0, "bytes": 0}, "server": {"count": 0, "bytes": 0}},
            "mid_stream": False,
            "roles_from": "handshake",
            "handshake.accept_valid": True,
            "handshake.missing_upgrade_headers": False,
            "handshake.status": 101,
            "protocol.masked_client_frames": nc,
            "protocol.unmasked_client_frames": 0,
            "protocol.masked_server_frames": 0,
            "protocol.reserved_opcodes": 0,
            "protocol.rsv_without_extension": 0,
            "protocol.bad_control_frames": 0,
            "protocol.fragmentation_errors": 0,
        },
    }


# --------------------------------------------------------------------------------------------------
# Captures

def spec(name, fmt, ns=False, big=False, tsresol=None, linktype=1, v6=0.0, vlan=0.0, pad=0.0, ipopts=0.0,
         quantum=None, ties=False, qinq=0.0, ifaces=None, year_base=None, weird=False, v6ext=False, tfo=0.0, blocks=False, gzip=False, parts=0):
    return dict(name=name, fmt=fmt, ns=ns, big=big, tsresol=tsresol, linktype=linktype, v6=v6, vlan=vlan,
                pad=pad, ipopts=ipopts, quantum=quantum, ties=ties, qinq=qinq,
                ifaces=ifaces or [(linktype, tsresol)], year_base=year_base, weird=weird, v6ext=v6ext, tfo=tfo,
                blocks=blocks, gzip=gzip, parts=parts)


CAPTURES = [
    spec("x1_pcap_us_eth.pcap", "pcap", linktype=1, v6=0.3, vlan=0.3, pad=0.7),
    spec("x2_pcap_ns_sll2.pcap", "pcap", ns=True, linktype=276, v6=0.4),
    spec("x3_pcapng_us_raw.pcapng", "pcapng", linktype=101, v6=0.25, ipopts=0.2),
    spec("x4_pcapng_ns_eth_vlan.pcapng", "pcapng", ns=True, tsresol=9, linktype=1, v6=0.3, vlan=0.5, pad=0.5),
    spec("x5_pcap_us_bigendian_raw.pcap", "pcap", big=True, linktype=101, ipopts=0.2),
    spec("x6_pcapng_us6_sll2.pcapng", "pcapng", tsresol=6, linktype=276, v6=0.5),
    # millisecond-quantized times in a µs capture: many equal timestamps across connections
    spec("x7_pcap_us_ms_ties_eth.pcap", "pcap", linktype=1, v6=0.2, vlan=0.2, pad=1.0, quantum=MS, ties=True),
]

# --probes: link/file/format features docs/json.md and the brief do not explicitly promise, and close
# codes that must never be on the wire (reported as they are, flagged code_invalid)
PROBES = [
    spec("p1_qinq_eth.pcap", "pcap", linktype=1, v6=0.3, qinq=1.0, pad=0.5),
    spec("p2_v6_hopbyhop_raw.pcap", "pcap", ns=True, linktype=101, v6=1.0, ipopts=1.0, v6ext=True),
    spec("p3_sll1.pcap", "pcap", linktype=113, v6=0.3),
    spec("p4_bsd_loopback.pcap", "pcap", linktype=0, v6=0.4),
    spec("p5_pcapng_two_ifaces.pcapng", "pcapng", ns=True, ifaces=[(1, 9), (276, 9)], v6=0.3),
    spec("p6_after_2038.pcap", "pcap", linktype=1, year_base=2_200_000_000),
    spec("p7_invalid_close_codes.pcapng", "pcapng", linktype=1, weird=True),
    spec("p8_tcp_fast_open.pcap", "pcap", linktype=1, v6=0.3, tfo=0.7),
    spec("p9_pcapng_extra_blocks.pcapng", "pcapng", ns=True, ifaces=[(1, 9)], v6=0.3, blocks=True),
    spec("pa_pcap_ns_bigendian_sll2.pcap", "pcap", ns=True, big=True, linktype=276, v6=0.3),
    spec("pb_pcapng_bigendian.pcapng", "pcapng", big=True, linktype=1, v6=0.3, vlan=0.3),
    spec("pc_gzip.pcap", "pcap", linktype=1, v6=0.3, gzip=True),
    spec("pd_rotated.pcap", "pcap", linktype=101, v6=0.3, parts=3),
]


def make_capture(spec, seed, n_conns, outdir):
    name, fmt, ns, big, tsresol, linktype = (spec[k] for k in ("name", "fmt", "ns", "big", "tsresol", "linktype"))
    v6share, vlanshare = spec["v6"], spec["vlan"]
    rng = random.Random(f"{seed}:{name}")
    tick = spec["quantum"] or (1 if ns else US)
    base = ((spec["year_base"] or 1_705_687_731) + rng.randint(0, 10_000_000)) * SEC + rng.randint(0, SEC - 1)
    base -= base % tick
    used = set()
    scripts = []
    ends = ENDINGS + ["weird_close"] * 6 if spec["weird"] else ENDINGS
    endings = (ends * ((n_conns // len(ends)) + 1))[:n_conns]
    rng.shuffle(endings)
    for i, ending in enumerate(endings):
        sc = Script(random.Random(f"{seed}:{name}:{i}"), tick)
        r = sc.rng
        v6 = r.random() < v6share
        while True:
            loop = r.random() < 0.08  # client and server on the same host
            if v6:
                cip = ipaddress.IPv6Address(f"2001:db8:{r.randint(1, 0xffff):x}::{r.randint(1, 0xffff):x}")
                sip = ipaddress.IPv6Address(r.choice(["2001:db8:ffff::1", "2001:db8:0:1:0:0:0:80", "fd00::a:b:c"]))
                if loop:
                    cip = sip = ipaddress.IPv6Address("::1")
            else:
                cip = ipaddress.IPv4Address(f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}")
                sip = ipaddress.IPv4Address(r.choice(["192.0.2.10", "198.51.100.7", "203.0.113.99"]))
                if loop:
                    cip = sip = ipaddress.IPv4Address("127.0.0.1")
            sport = r.choice([80, 8080, 9000, 443, 80, 8080, 9000, 443, 61000])
            # mostly ephemeral client ports; some below the server's port (roles must come from the
            # handshake, not from port numbers)
            cport = r.randint(32768, 60999) if r.random() < 0.85 else r.randint(1024, 8079)
            key = (cip, cport, sip, sport)
            if key not in used:
                used.add(key)
                break
        lk = {"cmac": bytes([0x02] + [r.randint(0, 255) for _ in range(5)]),
              "smac": bytes([0x02] + [r.randint(0, 255) for _ in range(5)]),
              "vlan": r.randint(1, 4094) if r.random() < vlanshare else None,
              "ifindex": r.randint(1, 8),
              "pad": (b"\0" if r.random() < 0.6 else bytes([r.randint(1, 255)])) if r.random() < spec["pad"] else None,
              "ipopts": r.random() < spec["ipopts"] and (not v6 or spec["v6ext"]),
              "qinq": r.randint(1, 4094) if r.random() < spec["qinq"] else None,
              "iface": r.randrange(len(spec["ifaces"]))}
        code = CODES[i % len(CODES)]
        tfo = r.random() < spec["tfo"]
        start_gap = r.randint(0, 25 * SEC)
        start_gap -= start_gap % tick
        wrap = r.random() < 0.35
        if ending == "reuse":
            first_end = r.choice(["clean_server", "clean_client", "fin_no_close", "close_then_rst"])
            build_conn(sc, (cip, cport), (sip, sport), first_end, code, start_gap, wrap, reused_later=True)
            sc.cur.scenario = "reuse-first:" + first_end
            end2 = r.choice(["clean_client", "open", "idle_rst", "clean_utf8"])
            g2 = r.randint(1 * SEC, 5 * SEC)
            lc2 = build_conn(sc, (cip, cport), (sip, sport), end2, CODES[(i + 3) % 7], g2 - g2 % tick,
                             not wrap)
            lc2.scenario = "reuse-second:" + end2
        else:
            build_conn(sc, (cip, cport), (sip, sport), ending, code, start_gap, wrap, tfo=tfo)
        sc.lk = lk
        scripts.append(sc)

    # absolute model times, merge, then strictly increasing timestamps
    allp = []
    for si, sc in enumerate(scripts):
        t = base
        for pi, p in enumerate(sc.pkts):
            t += p["gap"]
            allp.append((t, si, pi, p))
    allp.sort(key=lambda x: (x[0], x[1], x[2]))
    order = []
    last = None
    for t, si, pi, p in allp:
        if last is not None and (t < last or (t == last and not spec["ties"])):
            t = last + tick
        order.append((t, p))
        last = t
    replay(order, ns)

    sc_of = {}
    for sc in scripts:
        for lc in sc.lconns:
            sc_of[id(lc)] = sc
    recs = []
    ident = {}
    for t, p in order:
        lc = p["lc"]
        sc = None
        d = p["d"]
        src, dst = (lc.client, lc.server) if d == "c" else (lc.server, lc.client)
        if "S" in p["flags"]:
            seq = lc.isn[d]
        else:
            seq = (lc.isn[d] + 1 + p["off"]) & 0xFFFFFFFF
        opts = b""
        tsval = (t // MS) & 0xFFFFFFFF
        if "S" in p["flags"]:
            opts = struct.pack("!BBH", 2, 4, lc.mss + (12 if lc.ts_opt else 0)) + b"\x04\x02"
            if lc.ts_opt:
                opts += struct.pack("!BBII", 8, 10, tsval, 0 if d == "c" else tsval - 1)
            opts += b"\x01\x03\x03\x07"
        elif lc.ts_opt:
            opts = b"\x01\x01" + struct.pack("!BBII", 8, 10, tsval, (tsval - 1) & 0xFFFFFFFF)
        ack = p.get("ack", 0) if "A" in p["flags"] else 0
        tcp = tcp_segment(src[0], dst[0], src[1], dst[1], seq, ack, p["flags"], p["data"], opts,
                          src[0].version == 6)
        k = id(lc)
        ident[k] = ident.get(k, rng.randint(0, 65535)) + 1
        pkt = ip_packet(src[0], dst[0], tcp, ident[k], sc_of[id(lc)].lk["ipopts"])
        recs.append((t, p, pkt))
    frames = []
    for t, p, pkt in recs:
        lk = sc_of[id(p["lc"])].lk
        frames.append((t, lk["iface"], link_frame(spec["ifaces"][lk["iface"]][0], pkt, p["d"] == "c", lk)))

    path = os.path.join(outdir, name)
    if fmt == "pcap":
        write_pcap(path, linktype, [(t, data) for t, _, data in frames], ns, big)
    else:
        write_pcapng(path, spec["ifaces"], frames, spec["blocks"], big)
    if spec["gzip"]:
        import gzip
        with open(path, "rb") as f:
            raw = f.read()
        os.remove(path)
        path += ".gz"
        name += ".gz"
        with open(path, "wb") as f:
            f.write(gzip.compress(raw, 6))
    if spec["parts"]:
        # rotated files (tcpdump -C style): each part a complete pcap, split at packet boundaries
        with open(path, "rb") as f:
            raw = f.read()
        os.remove(path)
        hdr, pos, cut = raw[:24], 24, []
        e = ">" if big else "<"
        offs = []
        while pos < len(raw):
            offs.append(pos)
            pos += 16 + struct.unpack(e + "I", raw[pos + 8:pos + 12])[0]
        k = len(offs) // spec["parts"]
        bounds = [offs[i * k] for i in range(spec["parts"])] + [len(raw)]
        for i in range(spec["parts"]):
            with open(f"{path}.part{i}", "wb") as f:
                f.write(hdr + raw[bounds[i]:bounds[i + 1]])

    lconns = [lc for sc in scripts for lc in sc.lconns]
    lconns.sort(key=lambda lc: lc.rx["t0"])
    truth = [conn_truth(lc, ns) for lc in lconns]
    cov = {}
    for lc in lconns:
        coverage(lc, cov)
    with open(os.path.join(outdir, name + ".coverage.json"), "w") as f:
        json.dump(cov, f, indent=1)
    with open(path + ".truth.json", "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=1, ensure_ascii=False)
    size = os.path.getsize(path) if os.path.exists(path) else sum(
        os.path.getsize(f"{path}.part{i}") for i in range(spec["parts"]))
    return name, len(truth), len(order), size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--conns", type=int, default=60, help="scripts per capture (reuse adds one more)")
    ap.add_argument("--only", help="generate only the capture with this name")
    ap.add_argument("--probes", action="store_true", help="also write the p* probe captures")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for spec in CAPTURES + (PROBES if a.probes else []):
        if a.only and spec["name"] != a.only:
            continue
        name, nconn, npkt, size = make_capture(spec, a.seed, a.conns, a.out)
        print(f"{name}: {nconn} connections, {npkt} packets, {size} bytes")


if __name__ == "__main__":
    main()
