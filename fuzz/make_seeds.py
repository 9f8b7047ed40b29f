#!/usr/bin/env python3
"""Regenerates the committed seed corpora under fuzz/seeds/<target>/ from small real captures.

Sources: the repository's fixtures/*.pcap* and ../shared/corpus/public/*/*.pcap* (when present),
at most MAX_FILE bytes each. Run from anywhere: python3 fuzz/make_seeds.py
"""
import glob
import gzip
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")
MAX_FILE = 12 * 1024

# Link types in the order the analyzer/decode targets pick them (see their sources).
ANALYZER_LT = [1, 101, 0, 108, 113, 276, 228, 229]
DECODE_LT = [0, 1, 101, 108, 113, 228, 229, 276, 147]


def captures():
    paths = sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.pcap*")))
    paths += sorted(glob.glob(os.path.join(ROOT, "..", "shared", "corpus", "public", "*", "*.pcap*")))
    return [p for p in paths if os.path.getsize(p) <= MAX_FILE and not p.endswith(".json")]


def packets(data):
    """(linktype, ts_ns, bytes) of a classic pcap or a pcapng (EPB/SPB only)."""
    magic = data[:4]
    out = []
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic[0] in (0xD4, 0x4D) else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        lt = struct.unpack(e + "I", data[20:24])[0]
        off = 24
        while off + 16 <= len(data):
            s, frac, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
            off += 16
            out.append((lt, s * 10**9 + (frac if nano else frac * 1000), data[off:off + incl]))
            off += incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        ifaces = []
        off = 0
        while off + 12 <= len(data):
            btype, blen = struct.unpack(e + "II", data[off:off + 8])
            body = data[off + 8:off + blen - 4]
            if btype == 0x0A0D0D0A:
                ifaces = []
            elif btype == 1:
                ifaces.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6:
                iface, hi, lo, cap = struct.unpack(e + "IIII", body[:16])
                lt = ifaces[iface] if iface < len(ifaces) else 1
                out.append((lt, ((hi << 32) | lo) * 1000, body[20:20 + cap]))
            elif btype == 3:
                out.append((ifaces[0] if ifaces else 1, 0, body[4:]))
            if blen < 12:
                break
            off += blen
    return out


def tcp_payload(lt, pkt):
    """(flow key, payload) of an Ethernet/SLL/raw IPv4/IPv6 TCP packet, or None."""
    if lt == 1:
        off, et = 14, struct.unpack(">H", pkt[12:14])[0]
        while et in (0x8100, 0x88A8):
            et = struct.unpack(">H", pkt[off + 2:off + 4])[0]
            off += 4
        ip = pkt[off:]
    elif lt == 113:
        ip = pkt[16:]
    elif lt in (101, 228, 229):
        ip = pkt
    else:
        return None
    if not ip:
        return None
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6:
            return None
        total = struct.unpack(">H", ip[2:4])[0] or len(ip)
        src, dst, tcp = ip[12:16], ip[16:20], ip[ihl:total]
    elif ip[0] >> 4 == 6:
        if ip[6] != 6:
            return None
        src, dst, tcp = ip[8:24], ip[24:40], ip[40:40 + struct.unpack(">H", ip[4:6])[0]]
    else:
        return None
    if len(tcp) < 20:
        return None
    return (src, tcp[0:2], dst, tcp[2:4]), tcp[(tcp[12] >> 4) * 4:]


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def escape_ff(b):
    return b.replace(b"\xff", b"\xff\xff")


def main():
    for path in captures():
        name = os.path.basename(path).replace(".", "_")
        data = open(path, "rb").read()
        pkts = packets(data)
        # capture_file: plain, gzip-wrapped by the harness, merged; and a real gzip file.
        write("capture_file", name, b"\x00" + data)
        write("capture_file", name + "_merge", b"\x0c" + data)
        write("capture_file", name + "_gz", b"\x00" + gzip.compress(data, mtime=0))
        # analyzer: the file, and the same packets as in-memory records.
        write("analyzer", name, b"\x02" + data)
        recs = bytearray(b"\x03")
        prev = None
        for lt, ts, pkt in pkts:
            if lt not in ANALYZER_LT:
                continue
            delta = 0 if prev is None else max(-32768, min(32767, (ts - prev) // 10**6))
            prev = ts
            recs += struct.pack(">BhH", ANALYZER_LT.index(lt), delta, len(pkt)) + pkt
        write("analyzer", name + "_records", bytes(recs))
        # decode: a few packets of each capture.
        for i, (lt, _ts, pkt) in enumerate(pkts[:6]):
            if lt in DECODE_LT:
                write("decode", f"{name}_{i}", bytes([DECODE_LT.index(lt)]) + pkt)
        # handshake and stream_decoder: each direction's TCP payloads.
        flows = {}
        for lt, _ts, pkt in pkts:
            r = tcp_payload(lt, pkt)
            if r and r[1]:
                flows.setdefault(r[0], []).append(r[1])
        for i, (key, segs) in enumerate(sorted(flows.items())):
            stream = b"".join(segs)
            if stream.startswith((b"GET ", b"HTTP/1.")):
                end = stream.find(b"\r\n\r\n")
                if end > 0:
                    write("handshake", f"{name}_{i}", stream[:end + 4])
            framed = b"\xff\x00".join(escape_ff(s) for s in segs)[:4096]
            write("stream_decoder", f"{name}_{i}", b"\x01" + framed)
            write("stream_decoder", f"{name}_{i}_mid", b"\x00" + b"\xff\x00".join(escape_ff(s) for s in segs[1:])[:4096])
    # reassembly: hand-written programs (see fuzz_targets/reassembly.rs for the encoding).
    progs = {
        "in_order": b"\xff\xff" + b"\x00\x00\x00\x03\xe7" + b"\x01\x00\x00\x10\x00" * 4 + b"\x05",
        "out_of_order": b"\x10\x08" + b"\x00\xff\xff\xff\xf0" + b"\x01\x00\x20\x10\x00\x01\x00\x00\x10\x00\x03\x00\x40",
        "snaplen_cut": b"\xff\xff" + b"\x01\x00\x00\x08\x40" + b"\x01\x00\x00\x08\x00",
        "huge_gap": b"\xff\xff" + b"\x00\x00\x00\x00\x00" + b"\x06\x00\x10\x00\x00\x04\xff\xff\xff\xff\x04\x00\x10\x00\x10\x05",
        "retrans": b"\x02\x02" + b"\x02\x00\x00\x00\x01\x10\x00\x10" * 3 + b"\x01\xff\xf0\x20\x00",
    }
    for n, p in progs.items():
        write("reassembly", n, p)
    # stream_decoder: a client request answered, frames, gaps, a huge length.
    req = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    write("stream_decoder", "client_answered", b"\x01" + req + b"\xff\x00\x81\x85\x01\x02\x03\x04abcde\xff\x03\x88\x82\x00\x00\x00\x00\x03\xe8")
    write("stream_decoder", "gaps", b"\x00\x82\x7e\x03\xe8" + b"x" * 50 + b"\xff\x01\x10\x88\x02\x03\xe8\xff\x02\x00\x01\x00\x00\x81\x00")
    write("stream_decoder", "huge_len", b"\x00\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff\xff\xff" + b"\x00" * 64 + b"\xff\x02\xff\xff\xff\xff")
    write("handshake", "rfc6455", req.replace(b"Host: a", b"Host: server.example.com\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"))
    write("handshake", "response", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nContent-Length: 5\r\n\r\n")
    # decode: hand-made GTP-U and IPv6 packets are in the captures; add an empty one per link type.
    for i in range(len(DECODE_LT)):
        write("decode", f"empty_{i}", bytes([i]))


if __name__ == "__main__":
    main()
