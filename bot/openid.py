"""Fetch the Bot Framework's inbound-token OpenID metadata and its signing keys, once, read-only.

The bot (bot/sdk.py) lets botbuilder fetch these on demand; `ml-connector check` wants to know beforehand that the
documents are reachable from here, over the configured TLS trust, and that they hold keys. Takes a session.
"""

from __future__ import annotations

import asyncio
import os
import ssl as _ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.errors import BotError

__all__ = ["OpenIdUnavailable", "SigningKeys", "fetch_signing_keys"]


class OpenIdUnavailable(BotError):
    """The OpenID metadata or its key set could not be read.

    Args:
        url: the document that failed.
        reason: what happened ("connection refused", "HTTP 404", "TLS certificate not trusted: ...").
        unreachable: True when no HTTP answer came back at all (DNS, connection, timeout).
    """

    def __init__(self, url: str, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.unreachable = url, reason, unreachable


@dataclass(frozen=True)
class SigningKeys:
    issuer: str | None
    jwks_uri: str
    key_ids: tuple[str, ...]


async def _get_json(session: aiohttp.ClientSession, url: str, ssl: _ssl.SSLContext | None,
                    timeout: float) -> Any:
    try:
        async with session.get(url, ssl=ssl if ssl is not None else True, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                raise OpenIdUnavailable(url, f"HTTP {resp.status}")
            try:
                return await resp.json(content_type=None)
            except ValueError:
                raise OpenIdUnavailable(url, "the answer is not JSON") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise OpenIdUnavailable(url, f"TLS certificate not trusted: {exc.certificate_error}") from None
    except aiohttp.ClientConnectorError as exc:
        err = exc.os_error
        # asyncio's text is "Connect call failed (host, port)": the errno says what happened
        # a DNS failure's errno is getaddrinfo's (-2), which os.strerror cannot name: its strerror can
        reason = (err.strerror or os.strerror(err.errno)) if err is not None and err.errno else str(exc)
        raise OpenIdUnavailable(url, reason.lower(), unreachable=True) from None
    except asyncio.TimeoutError:
        raise OpenIdUnavailable(url, "timed out", unreachable=True) from None
    except aiohttp.ClientError as exc:
        raise OpenIdUnavailable(url, f"{type(exc).__name__}: {exc}", unreachable=True) from None


async def fetch_signing_keys(session: aiohttp.ClientSession, metadata_url: str, *,
                             ssl: _ssl.SSLContext | None = None, timeout: float = 15) -> SigningKeys:
    """Read the OpenID metadata, then its `jwks_uri`. Raises OpenIdUnavailable (also when it holds no keys)."""
    meta = await _get_json(session, metadata_url, ssl, timeout)
    jwks_uri = meta.get("jwks_uri") if isinstance(meta, dict) else None
    if not isinstance(jwks_uri, str) or not jwks_uri:
        raise OpenIdUnavailable(metadata_url, "the metadata has no jwks_uri")
    jwks = await _get_json(session, jwks_uri, ssl, timeout)
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    kids = tuple(str(k.get("kid")) for k in keys or [] if isinstance(k, dict) and k.get("kid"))
    if not kids:
        raise OpenIdUnavailable(jwks_uri, "the key set holds no signing keys")
    issuer = meta.get("issuer")
    return SigningKeys(issuer if isinstance(issuer, str) else None, jwks_uri, kids)
