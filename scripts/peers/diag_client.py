#!/usr/bin/env python3
"""Python `websockets` client for scripts/record-diagnosis-fixtures.sh.

Same connection set-up and logging as py_client.py (its open_ws() is reused:
own TCP socket, logged even when refused; wsclog hooks for every frame and
socket call; library keepalive off).  Actions, run in order:

  send:text:WORDS          send a text message
  recv                     wait for one message
  sleep:S                  sleep S seconds
  touch:PATH / wait-file:PATH
  wait-closed:S            wait (at most S s) for the other side to end the connection
  close:CODE:REASON        closing handshake initiated by the client
  heartbeat:FIRST:EVERY    background task: ping (payload hbN) FIRST s from now, then every
                           EVERY s; never waits for the pong (like a browser-side app heartbeat)
  send-every:EVERY:COUNT   send COUNT text messages mN, EVERY s apart, without reading
  keepalive:S              turn on TCP keep-alive (SO_KEEPALIVE, TCP_KEEPIDLE = TCP_KEEPINTVL = S)
  abort-rst                give up: SO_LINGER 0 + close(): the kernel sends RST
  hold                     do nothing until killed (the recorder SIGKILLs us after the capture)

Storm mode (--storm-interval S --storm-connections K): connect; when refused,
retry after exactly S seconds (no backoff, no jitter); once connected run the
actions; when the connection ends, reconnect again the same way.  The K-th
successful connection runs --last-actions instead (e.g. touch + hold).
"""

import argparse
import asyncio
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import log  # noqa: E402
from py_client import open_ws  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


async def heartbeat(ws, conn, first, every):
    n = 0
    await asyncio.sleep(first)
    while True:
        n += 1
        try:
            await ws.ping(f"hb{n}".encode())
        except ConnectionClosed:
            return
        await asyncio.sleep(every)


async def run(ws, conn, actions):
    bg = []
    try:
        for act in actions:
            kind, _, arg = act.partition(":")
            if kind == "send":
                typ, _, val = arg.partition(":")
                await ws.send(val)
            elif kind == "recv":
                await ws.recv()
            elif kind == "sleep":
                await asyncio.sleep(float(arg))
            elif kind == "touch":
                open(arg, "w").close()
            elif kind == "wait-file":
                while not os.path.exists(arg):
                    await asyncio.sleep(0.05)
            elif kind == "wait-closed":
                try:
                    await asyncio.wait_for(ws.wait_closed(), float(arg))
                except asyncio.TimeoutError:
                    log("still_open", by="client", conn=conn)
            elif kind == "close":
                code, _, reason = arg.partition(":")
                log("app_close", by="client", conn=conn, code=int(code), reason=reason)
                await ws.close(int(code), reason)
            elif kind == "heartbeat":
                first, every = (float(x) for x in arg.split(":"))
                log("heartbeat_start", by="client", conn=conn, first_s=first, every_s=every)
                bg.append(asyncio.create_task(heartbeat(ws, conn, first, every)))
            elif kind == "send-every":
                every, count = arg.split(":")
                for i in range(1, int(count) + 1):
                    await ws.send(f"m{i}")
                    await asyncio.sleep(float(every))
            elif kind == "abort-rst":
                sock = ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                log("rst_sent", by="client", conn=conn, how="gave up: SO_LINGER 0 + close() (transport.abort())")
                ws.transport.abort()
                await asyncio.sleep(0.2)
            elif kind == "keepalive":
                sock = ws.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(arg))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, int(arg))
                log("tcp_keepalive_on", by="client", conn=conn, idle_s=int(arg),
                    note="SO_KEEPALIVE: the kernel sends a keep-alive probe after this many idle seconds")
            elif kind == "hold":
                await asyncio.Event().wait()
            else:
                raise SystemExit(f"unknown action {act}")
    except ConnectionClosed as exc:
        log("connection_closed_exc", by="client", conn=conn, exc=repr(exc))
    for t in bg:
        t.cancel()
    await ws.wait_closed()
    log("ws_closed", by="client", conn=conn, **wsclog.close_state(ws.protocol))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="client")
    ap.add_argument("--storm-interval", type=float, default=None)
    ap.add_argument("--storm-connections", type=int, default=1)
    ap.add_argument("--last-actions", default="", help="space-separated actions of the last storm connection")
    ap.add_argument("actions", nargs="*")
    a = ap.parse_args()
    wsclog.setup(a.log, a.name)
    wsclog.patch_websockets()
    if a.storm_interval is None:
        ws, conn = await open_ws(a.url)
        await run(ws, conn, a.actions)
    else:
        done = 0
        attempt = 0
        while done < a.storm_connections:
            attempt += 1
            try:
                ws, conn = await open_ws(a.url, tag=a.name)
            except OSError:
                log("reconnect_wait", by="client", tag=a.name, attempt=attempt, delay_s=a.storm_interval,
                    backoff_base_s=a.storm_interval, backoff="none (fixed interval, no jitter)")
                await asyncio.sleep(a.storm_interval)
                continue
            done += 1
            last = done == a.storm_connections
            await run(ws, conn, a.last_actions.split() if last else a.actions)
            if not last:
                log("reconnect_wait", by="client", tag=a.name, attempt=attempt, delay_s=a.storm_interval,
                    backoff_base_s=a.storm_interval, backoff="none (fixed interval, no jitter)")
                await asyncio.sleep(a.storm_interval)
    log("exit")


if __name__ == "__main__":
    asyncio.run(main())
