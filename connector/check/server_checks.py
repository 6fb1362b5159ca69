"""Public URL group: https, and where reachable from here, a certificate that verifies and TLS 1.2 or higher."""

from __future__ import annotations

import asyncio
import os
import ssl
from urllib.parse import urlsplit

from connector.check.context import CheckContext
from connector.check.model import Reporter

GROUP = "Public URL"
ITEM = "server.public_url"


async def run(ctx: CheckContext, r: Reporter) -> None:
    url = ctx.settings.server.public_url
    r.starting(ITEM)
    if not url:
        r.warn(ITEM, "not set: `environments endpoint` prints a local URL and the Teams app package has no "
               "bot address", "set [server] public_url to the https URL F&O and Teams reach this service at.")
        return
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        r.fail(ITEM, f"{url} is not https: F&O's business events and Azure Bot messaging endpoints need https",
               "serve https (server.tls_cert/tls_key, or a reverse proxy) and set public_url to that https URL.")
        return
    host, port = parts.hostname, parts.port or 443
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx.tls, server_hostname=host), ctx.timeout)
    except ssl.SSLCertVerificationError as exc:
        r.fail(ITEM, f"{url}: the certificate does not verify ({exc.verify_message})",
               f"install a certificate for {host} from a CA that F&O and Teams trust (a public CA), with its "
               "intermediate certificates.")
        return
    except ssl.SSLError as exc:
        r.fail(ITEM, f"{url}: TLS handshake failed ({exc.reason or exc})",
               "serve TLS 1.2 or higher (F&O requires it) with a certificate for this host.")
        return
    except (OSError, asyncio.TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (
            (exc.strerror or os.strerror(exc.errno)) if exc.errno else str(exc)).lower()  # DNS: -2, named by strerror
        r.warn(ITEM, f"cannot reach {url} from here ({reason}): certificate and TLS version not checked",
               "check from outside your network that the URL answers over https with a trusted certificate.")
        return
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object else None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass
    if version in ("TLSv1", "TLSv1.1", "SSLv3"):
        r.fail(ITEM, f"{url} negotiated {version}", "allow only TLS 1.2 or higher on the server (F&O requires "
               "at least TLS 1.2).")
        return
    r.ok(ITEM, f"https, certificate verifies, {version}")
