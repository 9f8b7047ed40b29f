#!/usr/bin/env python3
"""A WebSocket server that completes the opening handshake and then never
sends another byte: no pong, no message, no close (standard library only).

It reads and logs every frame the client (or proxy) sends and ignores it.  It
closes its socket only when the other side ends TCP (EOF).  Used by
scripts/record-diagnosis-fixtures.sh behind nginx (one-way heartbeat).

    diag_silent_server.py --port 9207 --log LOG
"""

import argparse
import base64
import hashlib
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import ep, log  # noqa: E402
from raw_client import OPNAMES, parse_frames  # noqa: E402

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def serve(s):
    conn = {"client": ep(s.getpeername()), "server": ep(s.getsockname())}
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            s.close()
            return
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdr = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    log("http_request", by="server", conn=conn, path=lines[0].split(" ")[1],
        x_client_port=hdr.get("x-client-port"))
    accept = base64.b64encode(hashlib.sha1((hdr["sec-websocket-key"] + GUID).encode()).digest()).decode()
    s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    log("ws_open", by="server", conn=conn, response_status=101,
        note="from now on this server never sends anything (no pong, no data, no close)")
    buf = bytearray(rest)
    while True:
        for opcode, data in parse_frames(buf):
            rec = {"opcode": opcode, "opcode_name": OPNAMES.get(opcode, "?"), "payload_length": len(data)}
            if opcode in (9, 10) and len(data) <= 32:
                rec["data_hex"] = data.hex()
            log("frame_recv", by="server", conn=conn, ignored=True, **rec)
        chunk = s.recv(65536)
        if not chunk:
            log("eof_received", by="server", conn=conn)
            break
        buf += chunk
    log("socket_closed", by="server", conn=conn, unread_bytes=0,
        note="close() after the peer's FIN: kernel sends FIN")
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="silent-server")
    a = ap.parse_args()
    wsclog.setup(a.log, a.name)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(16)
    log("listening", addr=ep((a.host, a.port)))
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
