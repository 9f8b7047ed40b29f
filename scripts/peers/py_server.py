#!/usr/bin/env python3
"""Python `websockets` echo server used to record wsclose fixtures.

Behaviour switches (all optional):
  --max-size N            refuse messages larger than N bytes (library closes 1009)
  --close-on TEXT=CODE:REASON
                          when a text message equal to TEXT arrives, close the
                          connection with CODE/REASON instead of echoing it
  --close-timeout S       websockets close_timeout (how long to wait for the
                          peer's close frame / FIN before dropping the socket)
  --reject PATH=STATUS    answer the opening handshake for PATH with STATUS
                          (process_request hook), e.g. /forbidden=403
  --ping-interval S       library keepalive pings (default: none)

SIGTERM makes the server shut down the websockets way: server.close(), which
sends close 1001 (going away) to every open connection, then exit.

Every event is logged as JSON lines (see wsclog.py).
"""

import argparse
import asyncio
import http
import signal
import socket
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsclog  # noqa: E402
from wsclog import ep, log  # noqa: E402

import websockets  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="server")
    ap.add_argument("--max-size", type=int, default=2 ** 20)
    ap.add_argument("--close-on", action="append", default=[])
    ap.add_argument("--close-timeout", type=float, default=10.0)
    ap.add_argument("--reject", action="append", default=[])
    ap.add_argument("--ping-interval", type=float, default=None)
    return ap.parse_args()


async def main():
    a = parse_args()
    wsclog.setup(a.log, a.name)
    wsclog.patch_websockets()
    close_on = {}
    for spec in a.close_on:
        text, rest = spec.split("=", 1)
        code, reason = rest.split(":", 1)
        close_on[text] = (int(code), reason)
    reject = {}
    for spec in a.reject:
        path, status = spec.rsplit("=", 1)
        reject[path] = int(status)

    def process_request(connection, request):
        client, server = ep(connection.remote_address), ep(connection.local_address)
        wsclog.register(connection.protocol, client, server)
        log("http_request", conn={"client": client, "server": server}, path=request.path,
            x_client_port=request.headers.get("X-Client-Port"))
        if request.path in reject:
            status = http.HTTPStatus(reject[request.path])
            log("handshake_rejected", by="server", conn={"client": client, "server": server},
                status=status.value, path=request.path)
            return connection.respond(status, f"{status.phrase}\n")
        return None

    async def handler(ws):
        client, server = ep(ws.remote_address), ep(ws.local_address)
        conn = wsclog.register(ws.protocol, client, server)
        log("ws_open", by="server", conn=conn, path=ws.request.path,
            x_client_port=ws.request.headers.get("X-Client-Port"),
            response_status=ws.response.status_code)
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg in close_on:
                    code, reason = close_on[msg]
                    log("app_close", by="server", conn=conn, code=code, reason=reason)
                    await ws.close(code, reason)
                    break
                await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            log("ws_closed", by="server", conn=conn, **wsclog.close_state(ws.protocol))

    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, a.host, a.port, family=family, max_size=a.max_size,
                     ping_interval=a.ping_interval, close_timeout=a.close_timeout,
                     process_request=process_request, reuse_address=True) as server:
        log("listening", addr=ep((a.host, a.port)), websockets_version=websockets.__version__,
            max_size=a.max_size, close_timeout=a.close_timeout, ping_interval=a.ping_interval)
        await stop
        log("shutdown_begin", how="server.close() (websockets: close 1001 to all connections)")
        server.close()
        await server.wait_closed()
    log("shutdown_done")


if __name__ == "__main__":
    asyncio.run(main())
