"""Check a Teams single sign-on token (the `authentication.token` of a retried Action.Execute) before trusting it.

sso-obo.md §1.3: the token is an Entra access token for the bot's own app. Checked like any inbound credential:
RS256 signature against the tenant's published keys, `iss` = the issuer the tenant's OpenID metadata names,
`exp`/`nbf` (with leeway), `tid` in the allowed tenants, `aud` = the app id (v2) or its App ID URI (v1),
`scp` contains `access_as_user`, and `oid` = the presser's `from.aadObjectId`. Whatever fails raises
UserTokenRejected with a reason that never contains the token. The keys and metadata are fetched per tenant over
the given session and cached for `keys_ttl`; an unknown `kid` triggers one refetch (key rollover).
Knows nothing of connector/: it takes a session, the authority host and plain values.
"""

from __future__ import annotations

import asyncio
import json
import ssl as _ssl
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
import jwt

from bot.errors import BotError

__all__ = ["SSO_SCOPE", "SsoUser", "UserTokenRejected", "UserTokenValidator"]

SSO_SCOPE = "access_as_user"


class UserTokenRejected(BotError):
    """The SSO token is not acceptable. `reason` is safe to show and log (no token text); `unavailable` is True
    when the signing keys could not be read (try later) rather than the token being bad."""

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.unavailable = reason, unavailable


@dataclass(frozen=True)
class SsoUser:
    """Who the checked token names. `token` is the assertion for on-behalf-of (never logged: not in repr)."""

    object_id: str
    tenant_id: str
    upn: str | None
    name: str | None
    expires_at: float  # epoch seconds
    token: str = ""

    def __repr__(self) -> str:
        return f"SsoUser(object_id={self.object_id!r}, tenant_id={self.tenant_id!r}, upn={self.upn!r})"


@dataclass
class _Keys:
    issuer: str
    keys: dict[str, Any]
    fetched_at: float


class UserTokenValidator:
    """Validates SSO tokens for one app.

    Args:
        session: the app's shared aiohttp session.
        authority_host: Entra's host ("https://login.microsoftonline.com" or the sandbox's).
        app_id: the bot's app id (the token's audience).
        tenants: tenant ids whose users may sign in (the bot's home tenant, plus allowed tenants).
        app_id_uri: the App ID URI (api://botid-<app id>), accepted as the audience of v1 tokens.
        ssl: TLS context for the key fetch (the sandbox CA); None: aiohttp's default verification.
        clock: epoch seconds; leeway: tolerated clock skew (seconds); keys_ttl: how long keys are cached.
    """

    def __init__(self, session: aiohttp.ClientSession, *, authority_host: str, app_id: str, tenants: list[str],
                 app_id_uri: str | None = None, ssl: _ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.time, leeway: float = 300, keys_ttl: float = 24 * 3600,
                 timeout: float = 15) -> None:
        self._session = session
        self._authority = authority_host.rstrip("/")
        self.app_id = app_id.lower()
        self.audiences = {self.app_id} | ({app_id_uri} if app_id_uri else set())
        self.tenants = {t.lower() for t in tenants if t}
        self._ssl = ssl
        self._clock = clock
        self._leeway = leeway
        self._ttl = keys_ttl
        self._timeout = timeout
        self._keys: dict[str, _Keys] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def validate(self, token: str, *, presser_object_id: str | None) -> SsoUser:
        """The user the token names, or UserTokenRejected."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise UserTokenRejected("the sign-in token is malformed") from None
        if header.get("alg") != "RS256":
            raise UserTokenRejected(f"the sign-in token is signed with {header.get('alg')!r}, not RS256")
        tid = str(unverified.get("tid") or "").lower()
        if not tid or (self.tenants and tid not in self.tenants):
            raise UserTokenRejected(f"the sign-in token is from tenant {tid or '?'}, which this connector does not "
                                    "serve")
        keys = await self._tenant_keys(tid, str(header.get("kid") or ""))
        key = keys.keys.get(str(header.get("kid") or ""))
        if key is None:
            raise UserTokenRejected("the sign-in token is signed with a key the tenant does not publish")
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=sorted(self.audiences),
                                leeway=self._leeway, options={"require": ["exp", "nbf", "aud", "iss", "tid"],
                                                              "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise UserTokenRejected("the sign-in token has expired") from None
        except jwt.InvalidAudienceError:
            raise UserTokenRejected(f"the sign-in token is for another app ({unverified.get('aud')!r})") from None
        except jwt.ImmatureSignatureError:
            raise UserTokenRejected("the sign-in token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise UserTokenRejected("the sign-in token's signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise UserTokenRejected(f"the sign-in token is invalid ({type(exc).__name__})") from None
        v1_issuer = f"https://sts.windows.net/{tid}/"
        if claims["iss"] not in (keys.issuer, v1_issuer):
            raise UserTokenRejected(f"the sign-in token's issuer {claims['iss']!r} is not tenant {tid}'s")
        if SSO_SCOPE not in str(claims.get("scp") or "").split():
            raise UserTokenRejected(f"the sign-in token lacks the scope {SSO_SCOPE}")
        oid = str(claims.get("oid") or "").lower()
        if not oid:
            raise UserTokenRejected("the sign-in token names no user (no oid)")
        if presser_object_id is None or oid != presser_object_id.lower():
            raise UserTokenRejected("the sign-in token belongs to another user than the one who pressed")
        upn = claims.get("preferred_username") or claims.get("upn")
        return SsoUser(oid, tid, str(upn) if upn else None, claims.get("name"), float(claims["exp"]), token)

    async def _tenant_keys(self, tid: str, kid: str) -> _Keys:
        now = self._clock()
        cached = self._keys.get(tid)
        if cached is not None and now - cached.fetched_at < self._ttl and kid in cached.keys:
            return cached
        lock = self._locks.setdefault(tid, asyncio.Lock())
        async with lock:
            cached = self._keys.get(tid)
            if cached is not None and cached.fetched_at >= now and kid in cached.keys:
                return cached  # another press fetched them while we waited
            fresh = await self._fetch(tid)
            self._keys[tid] = fresh
            return fresh

    async def _fetch(self, tid: str) -> _Keys:
        meta = await self._json(f"{self._authority}/{tid}/v2.0/.well-known/openid-configuration")
        issuer, jwks_uri = meta.get("issuer"), meta.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise UserTokenRejected(f"tenant {tid}'s OpenID metadata has no issuer or jwks_uri", unavailable=True)
        jwks = await self._json(jwks_uri)
        keys: dict[str, Any] = {}
        for jwk in jwks.get("keys") or []:
            if isinstance(jwk, dict) and jwk.get("kid") and jwk.get("kty") == "RSA":
                keys[str(jwk["kid"])] = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        return _Keys(issuer.replace("{tenantid}", tid), keys, self._clock())

    async def _json(self, url: str) -> dict[str, Any]:
        try:
            async with self._session.get(url, ssl=self._ssl if self._ssl is not None else True,
                                         timeout=aiohttp.ClientTimeout(total=self._timeout)) as resp:
                if resp.status != 200:
                    raise UserTokenRejected(f"{url} answered HTTP {resp.status}", unavailable=True)
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            raise UserTokenRejected(f"{url}: {type(exc).__name__}", unavailable=True) from None
        if not isinstance(body, dict):
            raise UserTokenRejected(f"{url} did not answer a JSON object", unavailable=True)
        return body
