"""Sign-in for the status page with a generated admin token, and CSRF protection for its actions.

Stateless, so it works behind several instances: the session cookie is `expiry.nonce.kind.mac` and the CSRF
token `mac(csrf|nonce)`. A token session (kind `t`) is keyed by an HMAC key derived from the admin token, so
rotating it (`ml-connector ops admin-token --rotate`) ends those sessions; an Entra ID session (kind `e`) by a
random key kept as a stored secret (`ops.admin_session_secret`). The cookie is HttpOnly, SameSite=Lax (Strict
would be dropped on the redirect back from Entra ID) and Secure when the service speaks HTTPS; every POST must
also come from our own origin when the browser says where it comes from (Origin), and carry the CSRF token of
its session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

COOKIE = "mlc_admin"
SESSION_SECONDS = 8 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    nonce: str
    expires_at: float
    csrf: str


class AdminAuth:
    """`token()` returns the current admin token (None: none set, then nobody can sign in)."""

    def __init__(self, token: Callable[[], Awaitable[str | None]], *, clock: Callable[[], float] = time.time,
                 session_seconds: float = SESSION_SECONDS,
                 session_key: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self._token = token
        self._session_key = session_key  # Entra ID sessions; None: token sign-in only
        self._clock = clock
        self._session_seconds = session_seconds

    async def _key(self, kind: str = "t") -> bytes | None:
        if kind == "e":
            return await self._session_key() if self._session_key is not None else None
        token = await self._token()
        if not token:
            return None
        return hmac.new(token.encode(), b"ml-connector admin session", hashlib.sha256).digest()

    async def check_token(self, given: str) -> bool:
        token = await self._token()
        return bool(token) and hmac.compare_digest(given.encode(), (token or "").encode())

    async def new_cookie(self, kind: str = "t") -> str:
        """A session: kind "t" after the admin token, "e" after an Entra ID sign-in."""
        key = await self._key(kind)
        assert key is not None, "the sign-in succeeded, so its key exists"
        body = f"{int(self._clock() + self._session_seconds)}.{_b64(secrets.token_bytes(18))}.{kind}"
        return f"{body}.{_b64(hmac.new(key, body.encode(), hashlib.sha256).digest())}"

    async def session(self, request: web.Request) -> Session | None:
        raw = request.cookies.get(COOKIE, "")
        parts = raw.split(".")
        if len(parts) != 4 or parts[2] not in ("t", "e"):
            return None
        key = await self._key(parts[2])
        if key is None:
            return None
        body = ".".join(parts[:3])
        good = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(good, parts[3]):
            return None
        try:
            expires = float(parts[0])
        except ValueError:
            return None
        if expires <= self._clock():
            return None
        csrf = _b64(hmac.new(key, f"csrf|{parts[1]}".encode(), hashlib.sha256).digest())
        return Session(parts[1], expires, csrf)


def same_origin(request: web.Request) -> bool:
    """A browser's Origin (when sent) names our own scheme://host:port."""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or an old one; the CSRF token still has to match
        return True
    expected = f"{request.scheme}://{request.host}"
    return hmac.compare_digest(origin.encode(), expected.encode())


def csrf_ok(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())
