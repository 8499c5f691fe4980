"""Loopback HTTP(S) servers for the Label Studio tests, and a throw-away CA for the HTTPS ones.

The backend follows a redirect off the Label Studio host only to https, with certificates
checked as always (the system's CAs, or the file ``SSL_CERT_FILE`` names: OpenSSL's own
setting, read at each connection). So a stand-in for a cloud bucket on loopback serves https
with a certificate for 127.0.0.1 from a CA made here, and a test trusts that CA through
``SSL_CERT_FILE``: the code under test has no switch that turns the check off, nor a test-only
path. The CA is made with the ``openssl`` command (the key never leaves the test's folder).
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what a client trusts (SSL_CERT_FILE, AWS_CA_BUNDLE)
    cert: Path  # the server's certificate, for 127.0.0.1, signed by ca
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A CA and a server certificate for IP 127.0.0.1 signed by it, valid for two days.

    A proper CA and leaf rather than one self-signed certificate: strict verification
    (Python >= 3.13 sets VERIFY_X509_STRICT) wants CA key usage on the CA and a subject
    alternative name on the leaf."""
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request, extensions = folder / "server.pem", folder / "server.key", folder / "server.csr", folder / "ext"

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ihp-rt test CA",
            "-keyout", ca_key, "-out", ca, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", request)
    extensions.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
                          "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    openssl("x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-extfile", extensions, "-out", cert)
    return Certificates(ca, cert, key)


def reply(handler: BaseHTTPRequestHandler, code: int, body: bytes = b"", content_type: str = "application/json",
          **headers: str) -> None:
    """Answer a stand-in's request: status, headers (``Content_Type`` style names), body."""
    handler.send_response(code)
    for name, value in {"Content_Type": content_type, **headers, "Content_Length": str(len(body))}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler], tls: Certificates | None = None) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port (https with ``tls``); yields its base URL,
    stops and joins on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
