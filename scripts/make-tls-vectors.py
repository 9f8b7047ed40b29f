#!/usr/bin/env python3
"""Generate the TLS decryption test vectors in tests/data/tls/.

    scripts/make-tls-vectors.py            # regenerate every vector
    scripts/make-tls-vectors.py NAME...    # only these vectors
    scripts/make-tls-vectors.py --list     # list the vectors

A real TLS client and server (Python's `ssl`, i.e. OpenSSL) talk to each other
in-process through `ssl.MemoryBIO` pairs: no sockets, no network.  Each vector
pins one protocol version and one cipher suite; the client writes an NSS key log
(`keylog_filename`, the same code path as SSLKEYLOGFILE) and the bytes that
cross the "wire" are recorded per direction.  The peers exchange what a wss://
WebSocket connection starts and ends with: the HTTP/1.1 upgrade request and its
101 response, then a masked Close frame from the client and the server's
unmasked Close reply, then both TLS close_notify alerts.

For each vector NAME it writes, into tests/data/tls/NAME/:
    keylog.txt    the NSS key log, exactly as OpenSSL wrote it
    c2s.bin       every byte the client sent (TLS records, the ClientHello first)
    s2c.bin       every byte the server sent (the ServerHello first)
    c2s.plain     the application data the client sent (the plaintext to expect)
    s2c.plain     the application data the server sent
    meta.txt      version, suite id and name, and how it was produced

The TLS 1.2 suites are pinned with `SSLContext.set_ciphers`.  Python 3.11 has no
`set_ciphersuites`, so a TLS 1.3 suite is pinned through an OpenSSL config file
(`Ciphersuites = ...` in the system_default section) passed in OPENSSL_CONF to
a child process that generates that one vector.  The script checks that the
negotiated version and suite are the pinned ones before writing anything.

Needs python3 (3.7+) and the `openssl` command (for the self-signed certificates:
one P-256 ECDSA and one RSA-2048, for the ECDSA and RSA TLS 1.2 suites).
The output is different on every run (fresh randoms and keys): regenerate all
of a vector's files together, never one of them.
"""

import os
import ssl
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "tests", "data", "tls")

# name, TLS version, suite id, OpenSSL suite name, certificate key type
VECTORS = [
    ("tls12-ecdhe-ecdsa-aes128-gcm", "1.2", 0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256", "ec"),
    ("tls12-ecdhe-rsa-aes128-gcm", "1.2", 0xC02F, "ECDHE-RSA-AES128-GCM-SHA256", "rsa"),
    ("tls12-ecdhe-ecdsa-aes256-gcm", "1.2", 0xC02C, "ECDHE-ECDSA-AES256-GCM-SHA384", "ec"),
    ("tls12-ecdhe-rsa-aes256-gcm", "1.2", 0xC030, "ECDHE-RSA-AES256-GCM-SHA384", "rsa"),
    ("tls12-ecdhe-rsa-chacha20", "1.2", 0xCCA8, "ECDHE-RSA-CHACHA20-POLY1305", "rsa"),
    ("tls12-ecdhe-ecdsa-chacha20", "1.2", 0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305", "ec"),
    ("tls13-aes128-gcm", "1.3", 0x1301, "TLS_AES_128_GCM_SHA256", "ec"),
    ("tls13-aes256-gcm", "1.3", 0x1302, "TLS_AES_256_GCM_SHA384", "ec"),
    ("tls13-chacha20", "1.3", 0x1303, "TLS_CHACHA20_POLY1305_SHA256", "ec"),
]

REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def close_frame(code, reason, mask=None):
    """A WebSocket Close frame (RFC 6455 5.5.1), masked when `mask` is given."""
    payload = code.to_bytes(2, "big") + reason
    assert len(payload) <= 125
    if mask is None:
        return bytes([0x88, len(payload)]) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x88, 0x80 | len(payload)]) + mask + masked


CLIENT_CLOSE = close_frame(1000, b"bye", mask=b"\x37\xfa\x21\x3d")
SERVER_CLOSE = close_frame(1000, b"bye")


def make_certs(tmp):
    certs = {}
    for kind, newkey in (
        ("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
        ("rsa", ["-newkey", "rsa:2048"]),
    ):
        cert = os.path.join(tmp, kind + ".crt")
        key = os.path.join(tmp, kind + ".key")
        subprocess.run(
            ["openssl", "req", "-x509", *newkey, "-nodes", "-days", "3650",
             "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        certs[kind] = (cert, key)
    return certs


class Wire:
    """Two MemoryBIO pairs, recording every byte that crosses in each direction."""

    def __init__(self, client_ctx, server_ctx):
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.s_in, self.s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out, server_side=False,
                                          server_hostname="localhost")
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)
        self.c2s = bytearray()
        self.s2c = bytearray()

    def pump(self):
        moved = False
        data = self.c_out.read()
        if data:
            self.c2s += data
            self.s_in.write(data)
            moved = True
        data = self.s_out.read()
        if data:
            self.s2c += data
            self.c_in.write(data)
            moved = True
        return moved

    @staticmethod
    def step(fn):
        try:
            fn()
            return True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False

    def handshake(self):
        c_done = s_done = False
        for _ in range(100):
            if not c_done:
                c_done = self.step(self.client.do_handshake)
            if not s_done:
                s_done = self.step(self.server.do_handshake)
            moved = self.pump()
            if c_done and s_done and not moved:
                return
        raise RuntimeError("handshake did not finish")

    def send(self, sender, receiver, data):
        sender.write(data)
        got = bytearray()
        for _ in range(100):
            self.pump()
            try:
                got += receiver.read(65536)
            except ssl.SSLWantReadError:
                pass
            if len(got) >= len(data):
                break
        if bytes(got) != data:
            raise RuntimeError("application data did not arrive intact")

    def close(self):
        # close_notify from the client, then the server's close_notify in reply.
        for _ in range(100):
            c_done = self.step(self.client.unwrap)
            s_done = self.step(self.server.unwrap)
            moved = self.pump()
            if c_done and s_done and not moved:
                return
        raise RuntimeError("close_notify exchange did not finish")


def generate_one(name, version, suite_id, suite_name, cert_kind):
    tmp = tempfile.mkdtemp(prefix="tlsvec-")
    certs = make_certs(tmp)
    keylog = os.path.join(tmp, "keylog.txt")
    tls_version = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certs[cert_kind])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = keylog
    for ctx in (server_ctx, client_ctx):
        ctx.minimum_version = tls_version
        ctx.maximum_version = tls_version
        if version == "1.2":
            ctx.set_ciphers(suite_name)
    if version == "1.3":
        server_ctx.num_tickets = 1  # keep the vector small

    wire = Wire(client_ctx, server_ctx)
    wire.handshake()
    got_version = wire.client.version()
    got_suite = wire.client.cipher()[0]
    if got_version != "TLSv" + version or got_suite != suite_name:
        raise RuntimeError(f"{name}: negotiated {got_version} {got_suite}, "
                           f"wanted TLSv{version} {suite_name} "
                           "(is OPENSSL_CONF honoured by this Python?)")
    wire.send(wire.client, wire.server, REQUEST)
    wire.send(wire.server, wire.client, RESPONSE)
    wire.send(wire.client, wire.server, CLIENT_CLOSE)
    wire.send(wire.server, wire.client, SERVER_CLOSE)
    wire.close()

    with open(keylog, encoding="ascii") as f:
        keylog_text = f.read()
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    files = {
        "keylog.txt": keylog_text.encode("ascii"),
        "c2s.bin": bytes(wire.c2s),
        "s2c.bin": bytes(wire.s2c),
        "c2s.plain": REQUEST + CLIENT_CLOSE,
        "s2c.plain": RESPONSE + SERVER_CLOSE,
        "meta.txt": (
            f"version=TLSv{version}\nsuite=0x{suite_id:04X}\nsuite_name={suite_name}\n"
            f"certificate={cert_kind}\nproduced_by=scripts/make-tls-vectors.py "
            f"({ssl.OPENSSL_VERSION}, Python {sys.version.split()[0]})\n"
        ).encode("ascii"),
    }
    for fname, data in files.items():
        with open(os.path.join(out, fname), "wb") as f:
            f.write(data)
    print(f"{name}: {got_version} {got_suite}, c2s {len(wire.c2s)} B, s2c {len(wire.s2c)} B")


def main(argv):
    by_name = {v[0]: v for v in VECTORS}
    if argv[:1] == ["--list"]:
        for v in VECTORS:
            print(v[0])
        return 0
    if argv[:1] == ["--one"]:  # internal: the child process for one vector
        generate_one(*by_name[argv[1]])
        return 0
    names = argv or [v[0] for v in VECTORS]
    for name in names:
        if name not in by_name:
            print(f"unknown vector {name}; see --list", file=sys.stderr)
            return 2
    for name in names:
        _, version, _, suite_name, _ = by_name[name]
        env = dict(os.environ)
        with tempfile.NamedTemporaryFile("w", suffix=".cnf", delete=False) as conf:
            if version == "1.3":
                conf.write(
                    "openssl_conf = openssl_init\n"
                    "[openssl_init]\nssl_conf = ssl_sect\n"
                    "[ssl_sect]\nsystem_default = system_default_sect\n"
                    f"[system_default_sect]\nCiphersuites = {suite_name}\n"
                )
            else:
                conf.write("# empty: TLS 1.2 suites are pinned with set_ciphers\n")
        env["OPENSSL_CONF"] = conf.name
        try:
            subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name],
                           env=env, check=True)
        finally:
            os.unlink(conf.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
