"""`python -m connector.healthcheck`: exit 0 when the service on this host answers GET /healthz with 200.

The container image's HEALTHCHECK runs it (the slim image has no curl). It reads the same configuration as
`ml-connector serve` (ML_CONFIG and ML_* variables), so it knows the port and whether the service speaks HTTPS.
With `server.tls_cert` set it verifies the server against that certificate file itself (the leaf may stand alone
as the trust anchor), without a host name check: it connects by address, and the certificate names the public
host. Its own process, short-lived and sequential, so plain blocking `http.client` is the simple tool here.
"""

from __future__ import annotations

import http.client
import ssl
import sys

from connector.config import ConfigError, ServerSettings, load_settings

TIMEOUT = 5.0  # seconds; Docker's own --timeout (HEALTHCHECK) bounds the whole process as well

# A wildcard listen address is reached on the loopback of the same family.
_WILDCARD = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def target(server: ServerSettings) -> tuple[str, int, bool]:
    """(address to connect to, port, https?) for the configured listener."""
    host = _WILDCARD.get(server.host, server.host)
    return host, server.port, bool(server.tls_cert and server.tls_key)


def tls_context(cert_file: str) -> ssl.SSLContext:
    """Trust exactly the configured certificate chain (PEM), not the system store; no host name check."""
    ctx = ssl.create_default_context(cafile=cert_file)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf in tls_cert is enough as an anchor
    ctx.check_hostname = False
    return ctx


def check(server: ServerSettings, timeout: float = TIMEOUT) -> str:
    """GET /healthz; return a one-line description. Raises RuntimeError saying what is wrong."""
    host, port, https = target(server)
    conn: http.client.HTTPConnection
    if https:
        assert server.tls_cert is not None
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls_context(str(server.tls_cert)))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    url = f"{'https' if https else 'http'}://{host}:{port}/healthz"
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        body = response.read(2000).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        raise RuntimeError(f"{url}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"{url} answered {response.status}: {body.strip()[:300]}")
    return f"{url}: ok"


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    try:
        print(check(settings.server))
    except RuntimeError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
