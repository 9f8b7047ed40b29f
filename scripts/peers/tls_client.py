#!/usr/bin/env python3
"""Python `websockets` client over TLS (wss://), for record-tls-fixtures.sh.

    tls_client.py --url wss://127.0.0.1:9121/ --log LOG [--tls-version 1.2|1.3]
                  [--ciphers SUITES] --keylog KEYLOG ACTION...

Opens the connection exactly as py_client.py does (its own TCP socket first,
then websockets.connect(), keepalive pings off) -- it reuses py_client.open_ws
-- with an SSLContext that pins the version (minimum_version =
maximum_version), optionally the TLS 1.2 suites (set_ciphers), does not verify
the self-signed test certificate, and writes an NSS key log
(keylog_filename, the code path of SSLKEYLOGFILE).

Actions, run in order (the same as py_client.py, plus `reset`):

  send:text:WORDS  send:bin:HEX  recv  ping  close:CODE:REASON  sleep:S
  wait-file:PATH   touch:PATH    wait-closed:S
  reset            abort the connection with an RST: setsockopt(SO_LINGER,
                   {on, 0}) then close(); no close frame, no close_notify
"""

import argparse
import asyncio
import os
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import py_client  # noqa: E402
import tls_wsclog  # noqa: E402
import wsclog  # noqa: E402
from wsclog import log  # noqa: E402

from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402


async def run(url, actions, ctx, **kw):
    try:
        ws, conn = await py_client.open_ws(url, ssl=ctx, server_hostname="localhost", **kw)
    except (InvalidStatus, OSError) as exc:
        log("connect_failed", by="client", exc=repr(exc))
        return 1
    try:
        for act in actions:
            kind, _, arg = act.partition(":")
            if kind == "send":
                typ, _, val = arg.partition(":")
                if typ == "text":
                    await ws.send(val)
                elif typ == "bin":
                    await ws.send(bytes.fromhex(val))
                else:
                    raise SystemExit(f"unknown send type {typ}")
            elif kind == "recv":
                await ws.recv()
            elif kind == "ping":
                waiter = await ws.ping(b"wsclose")
                latency = await waiter
                log("pong_received", by="client", conn=conn, latency_s=round(latency, 6))
            elif kind == "close":
                code, _, reason = arg.partition(":")
                log("app_close", by="client", conn=conn, code=int(code), reason=reason)
                await ws.close(int(code), reason)
            elif kind == "sleep":
                await asyncio.sleep(float(arg))
            elif kind == "wait-file":
                while not os.path.exists(arg):
                    await asyncio.sleep(0.05)
            elif kind == "touch":
                open(arg, "w").close()
            elif kind == "wait-closed":
                try:
                    await asyncio.wait_for(ws.wait_closed(), float(arg))
                except asyncio.TimeoutError:
                    log("still_open", by="client", conn=conn)
            elif kind == "reset":
                sock = ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                log("rst_sent", by="client", conn=conn,
                    how="setsockopt(SO_LINGER, {on, 0}) then close(): the kernel sends RST; "
                        "no close frame, no TLS close_notify")
                ws.transport.abort()
            else:
                raise SystemExit(f"unknown action {act}")
    except ConnectionClosed as exc:
        log("connection_closed_exc", by="client", conn=conn, exc=repr(exc))
    await py_client.finish(ws, conn)
    return 0


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="client")
    ap.add_argument("--no-compression", action="store_true")
    tls_wsclog.add_tls_args(ap)
    ap.add_argument("actions", nargs="*")
    a = ap.parse_args()
    wsclog.setup(a.log, a.name)
    tls_wsclog.patch_all()
    tls_wsclog.log_config("client", a, url=a.url)
    ctx = tls_wsclog.client_context(a)
    kw = {"compression": None} if a.no_compression else {}
    rc = await run(a.url, a.actions, ctx, **kw)
    log("exit")
    return rc


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
