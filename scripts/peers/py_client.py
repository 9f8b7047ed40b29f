#!/usr/bin/env python3
"""Python `websockets` client used to record wsclose fixtures.

    py_client.py --url ws://127.0.0.1:9101/ --log LOG ACTION...

The client opens its own TCP socket first (so it can log its local ip:port
even when the connection is refused), then hands it to websockets.connect()
(library keepalive pings off: ping_interval=None).  Actions run in order:

  send:text:WORDS        send a text message
  send:textn:N           send a text message of N 'x' characters
  send:bin:HEX           send a binary message
  send:randbin:N         send a binary message of N random (incompressible) bytes
  recv                   wait for one message (echo)
  ping                   send a ping and wait for its pong
  close:CODE:REASON      closing handshake initiated by the client
  sleep:S                sleep S seconds
  wait-file:PATH         wait until PATH exists (sync with the recorder)
  touch:PATH             create PATH (tell the recorder something happened)
  wait-closed:S          wait (at most S s) for the server/proxy to end the connection

Fleet mode (--fleet N): N connections in parallel; each says hello, waits to be
closed by the server, then reconnects with exponential backoff and jitter
(delay = b/2 + uniform(0, b/2), b = --backoff-base * 2**attempt), says hello
again and closes 1000 "bye".
"""

import argparse
import asyncio
import os
import random
import socket
import sys
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import ep, log  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402


async def open_ws(url, tag=None, **kw):
    """TCP connect with our own socket, then the WebSocket handshake."""
    u = urlsplit(url)
    host, port = u.hostname, u.port
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setblocking(False)
    loopback = host == "::1" or host.startswith("127.")
    # Bind first so that the local ip:port is known even if the SYN is refused.
    sock.bind(("::1" if host == "::1" else "127.0.0.1" if loopback else "", 0))
    conn = {"client": ep(sock.getsockname()), "server": ep((host, port))}
    # off loopback the source address is only chosen by connect(): log the
    # attempt without a connection then
    log("tcp_connect", by="client", conn=conn if loopback else None, tag=tag,
        local_port=sock.getsockname()[1], remote=conn["server"])
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except OSError as exc:
        log("tcp_refused", by="client", conn=conn if loopback else None, tag=tag, error=repr(exc),
            note="SYN answered by RST: nothing listening")
        sock.close()
        raise
    conn["client"] = ep(sock.getsockname())
    log("tcp_connected", by="client", conn=conn, tag=tag)
    try:
        ws = await connect(url, sock=sock, ping_interval=None, **kw)
    except InvalidStatus as exc:
        log("handshake_failed", by="client", conn=conn, tag=tag,
            status=exc.response.status_code, body=exc.response.body.decode("utf-8", "replace"))
        raise
    wsclog.register(ws.protocol, conn["client"], conn["server"])
    log("ws_open", by="client", conn=conn, tag=tag, response_status=ws.response.status_code)
    return ws, conn


async def finish(ws, conn, tag=None):
    await ws.wait_closed()
    log("ws_closed", by="client", conn=conn, tag=tag, **wsclog.close_state(ws.protocol))


async def run_actions(url, actions, **connect_kw):
    try:
        ws, conn = await open_ws(url, **connect_kw)
    except (InvalidStatus, OSError):
        return 0
    try:
        for act in actions:
            kind, _, arg = act.partition(":")
            if kind == "send":
                typ, _, val = arg.partition(":")
                if typ == "text":
                    await ws.send(val)
                elif typ == "textn":
                    await ws.send("x" * int(val))
                elif typ == "bin":
                    await ws.send(bytes.fromhex(val))
                elif typ == "randbin":  # incompressible: permessage-deflate cannot shrink it
                    await ws.send(os.urandom(int(val)))
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
            else:
                raise SystemExit(f"unknown action {act}")
    except ConnectionClosed as exc:
        log("connection_closed_exc", by="client", conn=conn, exc=repr(exc))
    await finish(ws, conn)
    return 0


async def fleet_member(url, i, base, cap, attempts):
    tag = f"client-{i}"
    ws, conn = await open_ws(url, tag=tag)
    await ws.send(f"hello from {tag}")
    await ws.recv()
    try:
        await ws.recv()  # nothing else is sent: returns only when closed
    except ConnectionClosed as exc:
        log("server_closed_us", by="client", conn=conn, tag=tag, exc=repr(exc))
    await finish(ws, conn, tag)
    rng = random.Random()
    for attempt in range(attempts):
        b = min(cap, base * 2 ** attempt)
        delay = b / 2 + rng.uniform(0, b / 2)
        log("reconnect_wait", by="client", tag=tag, attempt=attempt + 1, delay_s=round(delay, 3),
            backoff_base_s=b)
        await asyncio.sleep(delay)
        try:
            ws, conn = await open_ws(url, tag=tag)
        except OSError:
            continue
        log("reconnected", by="client", conn=conn, tag=tag, attempt=attempt + 1)
        await ws.send(f"back again from {tag}")
        await ws.recv()
        await asyncio.sleep(0.3 + 0.1 * i)
        log("app_close", by="client", conn=conn, tag=tag, code=1000, reason="bye")
        await ws.close(1000, "bye")
        await finish(ws, conn, tag)
        return
    log("gave_up", by="client", tag=tag)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="client")
    ap.add_argument("--fleet", type=int, default=0)
    ap.add_argument("--backoff-base", type=float, default=0.25)
    ap.add_argument("--backoff-cap", type=float, default=4.0)
    ap.add_argument("--attempts", type=int, default=8)
    ap.add_argument("--no-compression", action="store_true",
                    help="do not offer permessage-deflate (frames then have RSV1 = 0)")
    ap.add_argument("actions", nargs="*")
    a = ap.parse_args()
    wsclog.setup(a.log, a.name)
    wsclog.patch_websockets()
    if a.fleet:
        await asyncio.gather(*(fleet_member(a.url, i, a.backoff_base, a.backoff_cap, a.attempts)
                               for i in range(1, a.fleet + 1)))
    else:
        kw = {"compression": None} if a.no_compression else {}
        await run_actions(a.url, a.actions, **kw)
    log("exit")


if __name__ == "__main__":
    asyncio.run(main())
