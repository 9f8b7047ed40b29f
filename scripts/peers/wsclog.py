"""Ground-truth event log shared by the Python peers of record-fixtures.sh.

Every peer appends JSON lines to the file named by --log (one object per
event) with the wall-clock time ``t`` (seconds since the epoch, microsecond
precision), the peer's name and, where the event belongs to a connection,
``conn = {"client": "ip:port", "server": "ip:port"}`` as seen by the peer's
own socket.  ``scripts/merge_truth.py`` turns these logs into
``fixtures/<name>.truth.json``.

Frame-level facts are logged by hooking the `websockets` sans-I/O protocol
(every frame the library queues for sending or parses, including the
automatic pong and close replies), and TCP-level facts by hooking asyncio's
socket transport (``write_eof`` = the peer half-closes, i.e. its kernel sends
FIN now; ``_call_connection_lost`` = the socket is closed, its kernel sends
FIN now unless it already did, or RST if unread data is pending).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

_LOG = None
PEER = "peer"
# id(websockets Protocol) -> {"client": ep, "server": ep}
_CONNS: dict[int, dict] = {}


def setup(path: str | None, peer: str) -> None:
    global _LOG, PEER
    PEER = peer
    if path:
        _LOG = open(path, "a", buffering=1)


def now() -> float:
    return round(time.time_ns() / 1e9, 6)


def ep(addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log(event: str, **kw) -> None:
    rec = {"t": now(), "peer": PEER, "pid": os.getpid(), "event": event}
    rec.update(kw)
    line = json.dumps(rec, sort_keys=False)
    if _LOG is not None:
        _LOG.write(line + "\n")
        _LOG.flush()
    print(line, file=sys.stderr, flush=True)


def register(protocol, client: str, server: str) -> dict:
    conn = {"client": client, "server": server}
    _CONNS[id(protocol)] = conn
    return conn


def conn_of(protocol):
    return _CONNS.get(id(protocol))


def _side(protocol) -> str:
    from websockets.protocol import Side
    return "client" if protocol.side is Side.CLIENT else "server"


def _frame_fields(frame) -> dict:
    from websockets.frames import Close, Opcode
    names = {Opcode.CONT: "continuation", Opcode.TEXT: "text", Opcode.BINARY: "binary",
             Opcode.CLOSE: "close", Opcode.PING: "ping", Opcode.PONG: "pong"}
    d = {"opcode": int(frame.opcode), "opcode_name": names.get(frame.opcode, "?"),
         "fin": bool(frame.fin), "payload_length": len(frame.data)}
    if frame.opcode is Opcode.CLOSE:
        try:
            c = Close.parse(bytes(frame.data))
            d["close_code"], d["close_reason"] = int(c.code), c.reason
        except Exception as exc:  # malformed close payload
            d["close_code"], d["close_reason"] = None, f"<unparsable: {exc}>"
        if len(frame.data) == 0:
            d["close_code"], d["close_reason"] = None, None
    elif frame.opcode in (Opcode.TEXT,) and len(frame.data) <= 64:
        d["text"] = bytes(frame.data).decode("utf-8", "replace")
    elif frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.BINARY) and len(frame.data) <= 32:
        d["data_hex"] = bytes(frame.data).hex()
    return d


def patch_websockets() -> None:
    """Hook websockets and asyncio so that frames and TCP closes are logged."""
    import asyncio.selector_events as se
    from websockets.protocol import Protocol

    orig_send_frame = Protocol.send_frame
    orig_recv_frame = Protocol.recv_frame
    orig_send_eof = Protocol.send_eof

    def send_frame(self, frame):
        log("frame_sent", by=_side(self), conn=conn_of(self), **_frame_fields(frame))
        return orig_send_frame(self, frame)

    def recv_frame(self, frame):
        log("frame_recv", by=_side(self), conn=conn_of(self), **_frame_fields(frame))
        return orig_recv_frame(self, frame)

    def send_eof(self):
        log("eof_queued", by=_side(self), conn=conn_of(self))
        return orig_send_eof(self)

    orig_receive_eof = Protocol.receive_eof

    def receive_eof(self):
        log("eof_received", by=_side(self), conn=conn_of(self), note="the peer's FIN arrived")
        return orig_receive_eof(self)

    Protocol.receive_eof = receive_eof
    Protocol.send_frame = send_frame
    Protocol.recv_frame = recv_frame
    Protocol.send_eof = send_eof

    T = se._SelectorSocketTransport
    orig_write_eof = T.write_eof
    orig_lost = T._call_connection_lost
    orig_abort = T.abort

    def _tconn(tr):
        proto = getattr(tr, "_protocol", None)
        wsp = getattr(proto, "protocol", None)
        if wsp is None:
            return None, None
        side = _side(wsp)
        conn = conn_of(wsp)
        if conn is None:
            # not registered yet (e.g. a client whose handshake was refused):
            # name the connection from the socket itself
            try:
                me, peer = ep(tr._sock.getsockname()), ep(tr._sock.getpeername())
                conn = {"client": me, "server": peer} if side == "client" else {"client": peer, "server": me}
            except (OSError, AttributeError):
                conn = None
        return conn, side

    def write_eof(self):
        conn, side = _tconn(self)
        if not self._eof and not self._closing:
            # asyncio shuts the socket down for writing at once when its
            # buffer is empty (else right after flushing it): FIN goes out.
            log("fin_sent", by=side, conn=conn, how="shutdown(SHUT_WR) via transport.write_eof()")
        return orig_write_eof(self)

    def abort(self):
        conn, side = _tconn(self)
        log("transport_abort", by=side, conn=conn)
        return orig_abort(self)

    def call_lost(self, exc):
        conn, side = _tconn(self)
        sock = self._sock
        pending = None
        try:
            pending = len(sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)) if sock else None
        except (BlockingIOError, OSError):
            pending = 0
        log("socket_closed", by=side, conn=conn, unread_bytes=pending,
            exc=repr(exc) if exc else None,
            note="close(): kernel sends FIN unless already sent (RST if unread bytes)")
        return orig_lost(self, exc)

    T.write_eof = write_eof
    T.abort = abort
    T._call_connection_lost = call_lost


def close_state(protocol) -> dict:
    """The library's own record of the closing handshake."""
    def c(x):
        return None if x is None else {"code": int(x.code), "reason": x.reason}
    return {
        "close_sent": c(protocol.close_sent),
        "close_rcvd": c(protocol.close_rcvd),
        "close_rcvd_then_sent": protocol.close_rcvd_then_sent,
        "close_code": protocol.close_code,
        "close_reason": protocol.close_reason,
    }
