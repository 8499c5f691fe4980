"""What the backend's own calls -- the token exchange with Label Studio, an image fetched from
it or from the storage it redirects to -- have in common when they fail.

One classification for both, so that a fault reads the same status wherever it happens: a
connection that failed may work on a retry (503), but one whose TLS check failed will not (a
502: a CA the server does not trust stays untrusted), and a 503 would invite clients to
retry it forever.
"""

from __future__ import annotations

import ssl

from ihp_rt.errors import IhpError
from ihp_rt.serving.errors import UpstreamError, UpstreamUnavailable

REDIRECTS = frozenset({301, 302, 303, 307, 308})


def unreachable(error: OSError, who: str, purpose: str) -> IhpError:
    """A connection to ``who`` (Label Studio, a storage) made ``purpose`` (``"for the task
    image URL"``) that failed: for now (503), or for good where TLS did (502)."""
    reason = getattr(error, "reason", error)  # urllib wraps the socket's error in a URLError
    if isinstance(reason, ssl.SSLError):
        return UpstreamError(f"TLS with {who} failed {purpose}: {reason} (a server behind a private CA: add the CA "
                             "to the file SSL_CERT_FILE names)")
    return UpstreamUnavailable(f"cannot reach {who} {purpose}: {reason}")
