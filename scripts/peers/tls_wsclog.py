"""TLS additions to wsclog.py for the wss:// peers of record-tls-fixtures.sh.

wsclog.py hooks asyncio's socket transport and finds the websockets protocol
of a connection through ``transport._protocol.protocol``.  Over TLS the socket
transport's protocol is asyncio's ``SSLProtocol``, which wraps the websockets
connection as ``_app_protocol``: this module gives ``SSLProtocol`` a read-only
``protocol`` property that forwards to it, so that every hook of wsclog.py
(socket close with unread bytes, abort) names the right connection over TLS
too.  It changes nothing for plaintext peers.

It also logs the TLS facts of each connection, from the peer's own OpenSSL
object:

  tls_handshake_done   version, cipher suite (OpenSSL and IANA names), side
  tls_close_notify     this side starts the TLS shutdown: a close_notify alert
                       goes out now (SSLProtocol._start_shutdown); ``reason``
                       says whether it answers the peer's close_notify
  tls_eof              the peer's close_notify (or a bare TCP FIN) reached the app

and builds the SSL contexts (with an NSS key log via ``keylog_filename``, the
same code path as SSLKEYLOGFILE).
"""

from __future__ import annotations

import asyncio.sslproto as sp
import os
import ssl

import wsclog
from wsclog import ep, log

# IANA numbers of the suites the recorder pins (for the log)
SUITE_IDS = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
}

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def add_tls_args(ap) -> None:
    ap.add_argument("--tls-version", choices=sorted(VERSIONS), default=None,
                    help="pin the TLS version (minimum_version = maximum_version)")
    ap.add_argument("--ciphers", default=None,
                    help="TLS 1.2 suites (SSLContext.set_ciphers); TLS 1.3 suites are "
                         "pinned by the recorder with OPENSSL_CONF (Ciphersuites = ...)")
    ap.add_argument("--keylog", default=None, help="NSS key log file (keylog_filename)")


def _pin(ctx: ssl.SSLContext, a) -> None:
    if a.tls_version:
        ctx.minimum_version = VERSIONS[a.tls_version]
        ctx.maximum_version = VERSIONS[a.tls_version]
    if a.ciphers:
        ctx.set_ciphers(a.ciphers)
    if a.keylog:
        ctx.keylog_filename = a.keylog


def server_context(a, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    _pin(ctx, a)
    return ctx


def client_context(a) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # self-signed test certificates
    ctx.verify_mode = ssl.CERT_NONE
    _pin(ctx, a)
    return ctx


def log_config(side: str, a, **extra) -> None:
    """What this peer was told to offer (the recorder checks the wire with tshark)."""
    conf = os.environ.get("OPENSSL_CONF")
    suites = None
    if conf and os.path.isfile(conf):
        for line in open(conf):
            if line.strip().lower().startswith("ciphersuites"):
                suites = line.split("=", 1)[1].strip()
    log("tls_config", by=side, tls_version=a.tls_version, ciphers=a.ciphers, keylog=a.keylog,
        openssl_conf=conf, openssl_conf_ciphersuites=suites, openssl=ssl.OPENSSL_VERSION, **extra)


def _conn_and_side(sslp):
    app = getattr(sslp, "_app_protocol", None)
    wsp = getattr(app, "protocol", None)
    side = "server" if sslp._server_side else "client"
    conn = wsclog.conn_of(wsp) if wsp is not None else None
    if conn is None:
        tr = getattr(sslp, "_transport", None)
        try:
            me, peer = ep(tr.get_extra_info("sockname")), ep(tr.get_extra_info("peername"))
            conn = {"client": me, "server": peer} if side == "client" else {"client": peer, "server": me}
        except (AttributeError, TypeError, IndexError):
            conn = None
    return conn, side


def patch_tls() -> None:
    SP = sp.SSLProtocol
    if getattr(SP, "_wsclose_tls_patched", False):
        return
    SP._wsclose_tls_patched = True
    # wsclog's transport hooks look for transport._protocol.protocol
    SP.protocol = property(lambda self: getattr(getattr(self, "_app_protocol", None), "protocol", None))

    orig_done = SP._on_handshake_complete
    orig_shutdown = SP._start_shutdown
    orig_eof = SP._call_eof_received

    def on_handshake_complete(self, handshake_exc):
        r = orig_done(self, handshake_exc)
        conn, side = _conn_and_side(self)
        obj = getattr(self, "_sslobj", None)
        if handshake_exc is None and obj is not None:
            name, _proto, bits = obj.cipher()
            log("tls_handshake_done", by=side, conn=conn, version=obj.version(), cipher=name,
                cipher_id=SUITE_IDS.get(name), bits=bits)
        else:
            log("tls_handshake_failed", by=side, conn=conn, exc=repr(handshake_exc))
        return r

    def start_shutdown(self):
        if self._state in (sp.SSLProtocolState.WRAPPED,):
            conn, side = _conn_and_side(self)
            log("tls_close_notify", by=side, conn=conn,
                reason="answers the peer's close_notify" if getattr(self, "_wsclose_eof_logged", False)
                else "this side closes the TLS session first",
                note="SSLProtocol._start_shutdown: close_notify alert, then TCP close once the peer's "
                     "close_notify arrives (or right away if it already did)")
        return orig_shutdown(self)

    def call_eof_received(self):
        if not getattr(self, "_wsclose_eof_logged", False):
            self._wsclose_eof_logged = True
            conn, side = _conn_and_side(self)
            log("tls_eof", by=side, conn=conn, note="the peer's close_notify or TCP FIN reached the TLS layer")
        return orig_eof(self)

    SP._on_handshake_complete = on_handshake_complete
    SP._start_shutdown = start_shutdown
    SP._call_eof_received = call_eof_received


def patch_all() -> None:
    wsclog.patch_websockets()
    patch_tls()
