#!/usr/bin/env python3
"""py_server.py over TLS (wss://), for record-tls-fixtures.sh.

    tls_server.py --cert C --key K [--tls-version 1.2|1.3] [--ciphers SUITES] [--keylog F] \
                  PY_SERVER_ARGS...

Runs scripts/peers/py_server.py unchanged (same switches, same JSON-lines log),
with websockets' serve() given an SSLContext: the certificate and key, the
version pinned with minimum_version = maximum_version, TLS 1.2 suites pinned
with set_ciphers, and an NSS key log (keylog_filename).  TLS 1.3 suites are
pinned by the caller with OPENSSL_CONF (Ciphersuites = ...), since Python 3.11
has no set_ciphersuites.  tls_wsclog.py adds the TLS events to the log.
"""

import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tls_wsclog  # noqa: E402
import wsclog  # noqa: E402


def main():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    tls_wsclog.add_tls_args(ap)
    a, rest = ap.parse_known_args()
    ctx = tls_wsclog.server_context(a, a.cert, a.key)

    # py_server.py does `from websockets.asyncio.server import serve`: patch it first.
    import websockets.asyncio.server as wserver
    orig_serve = wserver.serve

    def serve(*args, **kw):
        kw.setdefault("ssl", ctx)
        return orig_serve(*args, **kw)

    wserver.serve = serve
    # py_server.main() calls wsclog.patch_websockets(): add the TLS hooks with it
    orig_patch = wsclog.patch_websockets

    def patch_websockets():
        orig_patch()
        tls_wsclog.patch_tls()
        tls_wsclog.log_config("server", a, cert=a.cert)

    wsclog.patch_websockets = patch_websockets
    import py_server  # noqa: E402

    sys.argv = [os.path.join(HERE, "py_server.py")] + rest
    asyncio.run(py_server.main())


if __name__ == "__main__":
    main()
