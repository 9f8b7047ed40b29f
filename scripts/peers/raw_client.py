#!/usr/bin/env python3
"""A deliberately broken WebSocket client on a raw socket (standard library only).

It performs the opening handshake itself, sends one masked text frame, then
reads and logs every frame the server sends but never answers anything: no
pong, no close reply.  It closes its own socket only after the server's FIN
(recv() returns b"") or after --max-seconds.

    raw_client.py --host 127.0.0.1 --port 9109 --log LOG [--text hello]
"""

import argparse
import base64
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import ep, log  # noqa: E402

OPNAMES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(buf: bytearray):
    """Yield (opcode, payload) for complete frames, consuming them from buf."""
    while len(buf) >= 2:
        b0, b1 = buf[0], buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return
            n, off = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                return
            n, off = struct.unpack("!Q", buf[2:10])[0], 10
        if b1 & 0x80:
            off += 4  # servers never mask, but be tolerant
        if len(buf) < off + n:
            return
        payload = bytes(buf[off:off + n])
        del buf[:off + n]
        yield b0 & 0x0F, payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="raw-client")
    ap.add_argument("--text", default="hello")
    ap.add_argument("--max-seconds", type=float, default=30)
    a = ap.parse_args()
    wsclog.setup(a.log, a.name)

    s = socket.create_connection((a.host, a.port))
    conn = {"client": ep(s.getsockname()), "server": ep(s.getpeername())}
    log("tcp_connected", by="client", conn=conn)
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           "User-Agent: wsclose-raw-client\r\n\r\n")
    s.sendall(req.encode())
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            log("eof_during_handshake", by="client", conn=conn)
            return
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    log("ws_open" if status == 101 else "handshake_failed", by="client", conn=conn, status=status)
    buf = bytearray(rest)
    if status != 101:
        s.close()
        return
    payload = a.text.encode()
    log("frame_sent", by="client", conn=conn, opcode=1, opcode_name="text", fin=True,
        payload_length=len(payload), text=a.text)
    s.sendall(masked_frame(1, payload))

    deadline = time.time() + a.max_seconds
    s.settimeout(0.2)
    while time.time() < deadline:
        for opcode, data in parse_frames(buf):
            rec = {"opcode": opcode, "opcode_name": OPNAMES.get(opcode, "?"), "fin": True,
                   "payload_length": len(data)}
            if opcode == 8:
                rec["close_code"] = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                rec["close_reason"] = data[2:].decode("utf-8", "replace") if len(data) >= 2 else None
            log("frame_recv", by="client", conn=conn, ignored=True, **rec)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        if not chunk:
            log("eof_received", by="client", conn=conn, note="server's FIN; never replied to its close frame")
            break
        buf += chunk
    log("socket_closed", by="client", conn=conn, unread_bytes=0,
        note="close(): kernel sends FIN unless already sent")
    s.close()
    log("exit")


if __name__ == "__main__":
    main()
