"""Outbound TLS trust, one meaning everywhere: the system's CAs plus, when configured, one extra CA file.

`[cloud] ca_bundle` (a TLS-inspecting proxy's CA, or the sandbox's) is ADDED to the system store for every TLS
connection the service makes: aiohttp clients (F&O OData, Graph, the Bot Connector) take `client_ssl_context()`,
requests sessions (MSAL, and botbuilder's own requests through `bot.BotTrust`) mount `TrustAdapter`.

The system store is OpenSSL's default, as `ssl.create_default_context()` loads it: SSL_CERT_FILE / SSL_CERT_DIR
when set, else the platform's bundle. REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are ignored: requests would let them
replace the trust of a call, so the same connector would trust different CAs over aiohttp and over requests.
Nothing here touches the environment or patches requests module-wide.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

__all__ = ["TrustAdapter", "client_ssl_context", "trusting_session"]


def client_ssl_context(extra_ca: str | Path | None = None) -> ssl.SSLContext:
    """A new client context: system trust plus, when given, the extra CA file."""
    ctx = ssl.create_default_context()
    if extra_ca is not None and str(extra_ca):
        ctx.load_verify_locations(cafile=str(extra_ca))
    return ctx


class TrustAdapter(HTTPAdapter):
    """requests transport that verifies with one SSLContext, whatever `verify` requests computed.

    requests turns REQUESTS_CA_BUNDLE (or `verify=<file>`) into urllib3's `ca_certs`, which replaces the trust for
    that call and would load the file into our context; `verify=True` alone means certifi's bundle. Here the
    context is the trust, and verification cannot be switched off.
    """

    def __init__(self, tls: ssl.SSLContext, **kwargs: Any) -> None:
        self.tls = tls
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.tls
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self.tls
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None
                                             ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        pool_kwargs.pop("ca_certs", None)
        pool_kwargs.pop("ca_cert_dir", None)
        pool_kwargs["ssl_context"] = self.tls
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, False, cert)  # a client certificate only; the trust is the context's
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED"


def trusting_session(extra_ca: str | Path | None = None) -> requests.Session:
    """A requests session whose https:// connections trust the system's CAs plus `extra_ca`."""
    session = requests.Session()
    session.mount("https://", TrustAdapter(client_ssl_context(extra_ca)))
    return session
