"""App-only Entra ID tokens (client credentials) through MSAL, behind the project's token-callable contract.

`TokenProvider.token_source(...)` returns a `TokenSource`: `await src(force_refresh=False) -> str`. It keeps the
token and its expiry, renews `min(refresh_margin, lifetime / 2)` seconds before expiry, runs MSAL (blocking
`requests`) in `asyncio.to_thread`, and serialises acquisitions with one asyncio.Lock per (tenant, app, scope),
re-checking inside the lock so that concurrent callers share one acquisition. If an early renewal fails
transiently while the token is still valid, the valid token is returned and renewal is retried after Retry-After
(or 5 s); `force_refresh=True` (after an API's 401) never falls back. Concurrent force_refresh calls share one
acquisition too.

Our cache is the only one that counts: each acquisition first empties MSAL's access-token cache for the app
(`remove_tokens_for_client`), because MSAL 1.39's `acquire_token_for_client` refuses `force_refresh` and would
otherwise hand back the token we just decided to renew.

TLS: MSAL gets our own requests session whose https transport (connector/tls.py) trusts the system's CAs plus
`ca_bundle` when given, as every other outbound client does; REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE are ignored. The
session keeps `trust_env`, so HTTPS_PROXY / NO_PROXY from the environment keep working.

Errors: `TokenError` (Entra refused: wrong secret, unknown app, bad scope; the AADSTS text is kept) and
`TokenUnavailable` (network, TLS, 429, 5xx: try later; `retry_after` when Entra said). Messages never carry a
secret. Knows nothing of F&O, Teams or the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msal.exceptions import MsalServiceError

from connector.secrets import Secret
from connector.tls import TrustAdapter, client_ssl_context

__all__ = [
    "ClientCertificate", "ClientSecret", "ConsentRequired", "InteractionRequired", "ManagedIdentity", "OnBehalfOf",
    "SignInRequired", "TokenError", "TokenFailure", "TokenProvider", "TokenSource", "TokenUnavailable", "fo_scope",
    "graph_scope",
]

log = logging.getLogger(__name__)

try:  # MSAL's own list of Microsoft login hosts (instance discovery only makes sense for those)
    from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS as _MS_HOSTS
except ImportError:  # pragma: no cover - older/newer MSAL layouts
    _MS_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoft.com", "login.windows.net",
                           "login.microsoftonline.us", "login.partner.microsoftonline.cn"})

_TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error"}


# --- errors ---------------------------------------------------------------------------------------------------
class TokenFailure(Exception):
    """Root: no token could be had.

    TokenFailure
    ├── TokenError        Entra refused the request (configuration: secret, app id, tenant, scope); retrying won't help
    └── TokenUnavailable  network, TLS, throttling or an Entra outage; retry later (retry_after when known)
    """


class TokenError(TokenFailure):
    def __init__(self, error: str, description: str, codes: list[int] | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error, self.description, self.codes = error, description, list(codes or [])


class ConsentRequired(TokenError):
    """On-behalf-of: nobody consented to the app's delegated permission (AADSTS65001 consent_required)."""


class InteractionRequired(TokenError):
    """On-behalf-of: Conditional Access / MFA wants the user at a client (interaction_required, `claims`)."""


class SignInRequired(TokenFailure):
    """On-behalf-of: no usable user token in memory for this user (never signed in here, or it expired)."""


class TokenUnavailable(TokenFailure):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


# --- credentials ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSecret:
    value: Secret


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate credential: the private key (PEM) and either the certificate (PEM: MSAL then signs with the
    SHA-256 thumbprint and sends x5c, which subject-name/issuer registrations need) or its SHA-1 thumbprint (hex)."""

    private_key_pem: Secret
    thumbprint: str | None = None
    public_cert_pem: str | None = None

    def __post_init__(self) -> None:
        if not (self.thumbprint or self.public_cert_pem):
            raise ValueError("ClientCertificate needs public_cert_pem or thumbprint")
        try:  # fail at configuration time, not at the first token request
            serialization.load_pem_private_key(self.private_key_pem.reveal().encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("ClientCertificate: private_key_pem is not an unencrypted PEM private key") from None
        if self.public_cert_pem:
            try:
                x509.load_pem_x509_certificate(self.public_cert_pem.encode())
            except ValueError:
                raise ValueError("ClientCertificate: public_cert_pem is not a PEM certificate") from None


@dataclass(frozen=True)
class ManagedIdentity:
    """Azure managed identity (not supported yet: it needs msal.ManagedIdentityClient and an IMDS stand-in)."""

    client_id: str | None = None


Credential = ClientSecret | ClientCertificate | ManagedIdentity


def _msal_credential(cred: Credential) -> Any:
    if isinstance(cred, ClientSecret):
        return cred.value.reveal()
    if isinstance(cred, ClientCertificate):
        out = {"private_key": cred.private_key_pem.reveal()}
        if cred.public_cert_pem:
            out["public_certificate"] = cred.public_cert_pem
        if cred.thumbprint and not cred.public_cert_pem:
            out["thumbprint"] = cred.thumbprint.replace(":", "")
        return out
    raise NotImplementedError(
        "managed identity credentials are not supported yet: use a client secret or a certificate")


def _fingerprint(cred: Credential) -> str:
    """Tells credentials apart without keeping their material in a key."""
    if isinstance(cred, ClientSecret):
        material = "secret:" + cred.value.reveal()
    elif isinstance(cred, ClientCertificate):
        material = f"cert:{cred.private_key_pem.reveal()}|{cred.thumbprint}|{cred.public_cert_pem}"
    else:
        material = f"mi:{cred.client_id}"
    return hashlib.sha256(material.encode()).hexdigest()


def _secret_texts(cred: Credential) -> list[str]:
    if isinstance(cred, ClientSecret):
        return [cred.value.reveal()]
    if isinstance(cred, ClientCertificate):
        return [cred.private_key_pem.reveal()]
    return []


def _scrub(text: str, cred: Credential) -> str:
    for s in _secret_texts(cred):
        if s:
            text = text.replace(s, "***")
    return text


# --- scopes ---------------------------------------------------------------------------------------------------
def fo_scope(base_url: str) -> str:
    """F&O's scope: the environment URL (scheme and host, no trailing slash) + "/.default"."""
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"an F&O environment URL is https://<host>, got {base_url!r}")
    return f"https://{parts.netloc.lower()}/.default"


def graph_scope(graph_url: str = "https://graph.microsoft.com") -> str:
    """Microsoft Graph's scope for a Graph endpoint (national clouds have their own host)."""
    parts = urlsplit(graph_url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"a Graph URL is https://<host>, got {graph_url!r}")
    return f"https://{parts.netloc.lower()}/.default"


# --- HTTP for MSAL ----------------------------------------------------------------------------------------------
class _Session(requests.Session):
    """requests session for MSAL: system CAs + `ca_bundle` (connector/tls.py), a default timeout, and the last
    response's status and Retry-After per thread (MSAL hides them)."""

    def __init__(self, ca_bundle: str | None, timeout: float) -> None:
        super().__init__()
        self.mount("https://", TrustAdapter(client_ssl_context(ca_bundle)))
        self._timeout = timeout
        self.last = threading.local()

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN201
        kwargs.setdefault("timeout", self._timeout)
        resp = super().request(method, url, *args, **kwargs)
        self.last.status = resp.status_code
        self.last.retry_after = resp.headers.get("Retry-After")
        return resp


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass
class _App:
    msal_app: msal.ConfidentialClientApplication
    session: _Session
    lock: threading.Lock  # remove-then-acquire on one MSAL app is one step


# --- the provider -------------------------------------------------------------------------------------------------
class TokenProvider:
    """Makes TokenSources; holds one MSAL ConfidentialClientApplication per (authority, tenant, app, credential).

    Args:
        authority_host: e.g. "https://login.microsoftonline.com" (or the sandbox's "https://127.0.0.1:P").
        ca_bundle: an extra CA file trusted besides the system's (a proxy's or the sandbox's CA).
        clock: monotonic seconds, for expiry.
        refresh_margin: renew this long before expiry (at most half the token's lifetime).
        timeout: seconds per HTTP request to Entra.
    """

    def __init__(self, *, authority_host: str, ca_bundle: str | None = None,
                 clock: Callable[[], float] = time.monotonic, refresh_margin: float = 300,
                 timeout: float = 30) -> None:
        parts = urlsplit(authority_host)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"authority_host must be an https URL (MSAL refuses others), got {authority_host!r}")
        self.authority_host = authority_host.rstrip("/")
        self._discover = (parts.hostname or "").lower() in _MS_HOSTS
        self.ca_bundle = ca_bundle
        self.clock = clock
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self._apps: dict[tuple[str, str, str], _App] = {}
        self._app_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._sources: dict[tuple[str, str, str, str], TokenSource] = {}

    def __repr__(self) -> str:
        return f"TokenProvider(authority_host={self.authority_host!r}, sources={len(self._sources)})"

    def token_source(self, tenant_id: str, client_id: str, credential: Credential, scope: str) -> TokenSource:
        """The token callable for one app and one scope (the same object for the same arguments)."""
        if isinstance(credential, ManagedIdentity):
            _msal_credential(credential)  # raises NotImplementedError with the reason
        if not scope.endswith("/.default"):
            raise ValueError(f"client-credentials scopes end with '/.default', got {scope!r}")
        app_key = (f"{self.authority_host}/{tenant_id}", client_id.lower(), _fingerprint(credential))
        key = (*app_key, scope)
        if key not in self._sources:
            self._sources[key] = TokenSource(self, app_key, client_id, credential, scope)
        return self._sources[key]

    def sources(self) -> list[TokenSource]:
        """Every token source made so far (metrics and /readyz read their counters and expiry)."""
        return list(self._sources.values())

    def close(self) -> None:
        """Close the HTTP sessions (the provider can still be used: apps are rebuilt on demand)."""
        for app in self._apps.values():
            app.session.close()
        self._apps.clear()

    # called by TokenSource, off the event loop where it blocks ------------------------------------------------
    async def _app(self, app_key: tuple[str, str, str], client_id: str, credential: Credential) -> _App:
        app = self._apps.get(app_key)
        if app is not None:
            return app
        lock = self._app_locks.setdefault(app_key, asyncio.Lock())
        async with lock:
            app = self._apps.get(app_key)
            if app is None:
                app = await asyncio.to_thread(self._build_app, app_key[0], client_id, credential)
                self._apps[app_key] = app
            return app

    def _build_app(self, authority: str, client_id: str, credential: Credential) -> _App:
        session = _Session(self.ca_bundle, self.timeout)
        try:
            msal_app = msal.ConfidentialClientApplication(
                client_id, client_credential=_msal_credential(credential), authority=authority,
                http_client=session, instance_discovery=None if self._discover else False)
        except BaseException:
            session.close()
            raise
        return _App(msal_app, session, threading.Lock())


class TokenSource:
    """`await src(force_refresh=False) -> str`: a cached app-only token for one scope (see the module doc)."""

    def __init__(self, provider: TokenProvider, app_key: tuple[str, str, str], client_id: str,
                 credential: Credential, scope: str) -> None:
        self._provider = provider
        self._app_key = app_key
        self._client_id = client_id
        self._credential = credential
        self.scope = scope
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = float("-inf")
        self.expires_at = float("-inf")  # on the provider's clock
        self.acquisitions = 0  # successful acquisitions (for tests and metrics)
        self.failures = 0  # failed acquisitions (metrics)
        self.last_failure: tuple[float, str] | None = None  # (wall time, reason), for the status page
        self.last_success_at: float | None = None  # wall time
        self._generation = 0

    def __repr__(self) -> str:
        return f"TokenSource(authority={self._app_key[0]!r}, client_id={self._client_id!r}, scope={self.scope!r})"

    async def __call__(self, force_refresh: bool = False) -> str:
        """The current token, acquiring a new one when due or when force_refresh (after an API's 401).

        Raises:
            TokenError: Entra refused (configuration problem).
            TokenUnavailable: transient; retry later.
        """
        clock = self._provider.clock
        if not force_refresh and self._token is not None and clock() < self._refresh_at:
            return self._token
        seen = self._generation
        async with self._lock:
            if self._token is not None:
                if force_refresh and self._generation != seen:
                    return self._token  # another caller refreshed while we waited: that is our fresh token
                if not force_refresh and clock() < self._refresh_at:
                    return self._token
            try:
                return await self._acquire()
            except TokenFailure as exc:
                self.failures += 1
                self.last_failure = (time.time(), str(exc))
                if isinstance(exc, TokenUnavailable):  # an operator needs to see every retry, with its wait
                    log.warning("token for app %s, scope %s unavailable (%s); retry in %s", self._client_id,
                                self.scope, exc.reason, f"{exc.retry_after:.0f}s" if exc.retry_after else
                                "the caller's backoff")
                if not isinstance(exc, TokenUnavailable):
                    raise
                now = clock()
                if force_refresh or self._token is None or now >= self.expires_at:
                    raise
                # an early renewal failed but the token still works: use it, try again a little later
                self._refresh_at = min(self.expires_at, now + (exc.retry_after or 5.0))
                log.warning("renewing the token for app %s, scope %s failed (%s); the current one is valid for "
                            "%ds more", self._client_id, self.scope, exc.reason, self.expires_at - now)
                return self._token

    async def _acquire(self) -> str:
        provider = self._provider
        try:
            app = await provider._app(self._app_key, self._client_id, self._credential)
            started = provider.clock()
            result, status, retry_after = await asyncio.to_thread(self._acquire_blocking, app)
        except TokenFailure:
            raise
        except requests.RequestException as exc:
            raise TokenUnavailable(
                f"cannot reach Entra at {self._app_key[0]}: {type(exc).__name__}: "
                f"{_scrub(str(exc), self._credential)}") from exc
        except MsalServiceError as exc:  # from the OpenID discovery while building the app
            raise TokenUnavailable(f"Entra's OpenID discovery failed: {exc}") from None
        except (ValueError, jwt.PyJWTError) as exc:  # discovery refused (unknown tenant), unusable credential
            raise TokenError("invalid_configuration", _scrub(str(exc), self._credential)) from None
        if "access_token" not in result:
            error = str(result.get("error") or "unknown_error")
            desc = _scrub(str(result.get("error_description") or ""), self._credential)
            if error in _TRANSIENT_ERRORS or status == 429 or (status or 0) >= 500:
                raise TokenUnavailable(f"{error}: {desc}", retry_after)
            log.warning("Entra refused a token for app %s, scope %s: %s", self._client_id, self.scope, error)
            raise TokenError(error, desc, result.get("error_codes"))
        lifetime = float(result.get("expires_in") or 0)
        self._token = result["access_token"]
        self.expires_at = started + lifetime
        self._refresh_at = self.expires_at - min(self._provider.refresh_margin, lifetime / 2)
        self._generation += 1
        self.acquisitions += 1
        self.last_success_at = time.time()
        log.info("token for app %s, scope %s acquired (expires in %ds)", self._client_id, self.scope, lifetime)
        return self._token

    def _acquire_blocking(self, app: _App) -> tuple[dict[str, Any], int | None, float | None]:
        with app.lock:
            app.msal_app.remove_tokens_for_client()  # our cache decides; MSAL's would return the stale token
            app.session.last.status = app.session.last.retry_after = None
            try:
                result = app.msal_app.acquire_token_for_client([self.scope])
            except MsalServiceError as exc:  # MSAL raises on 5xx (also when it replays a throttled answer)
                raise TokenUnavailable(
                    f"Entra answered {exc} for {self.scope}",
                    _retry_after(getattr(app.session.last, "retry_after", None))) from None
            return (result or {}, getattr(app.session.last, "status", None),
                    _retry_after(getattr(app.session.last, "retry_after", None)))


# --- on-behalf-of (user tokens) -----------------------------------------------------------------------------------
@dataclass
class _UserToken:
    access_token: str
    expires_at: float  # provider clock
    assertion: str  # the user's SSO token, kept (in memory only) to renew the F&O token while it is valid
    assertion_expires_at: float  # epoch seconds


class OnBehalfOf:
    """Exchanges a user's SSO token for a delegated token for another resource (OAuth 2.0 on-behalf-of, MSAL's
    `acquire_token_on_behalf_of`), and keeps the result per user and scope **in memory only**: a restart forgets
    every user token (the user signs in again on their next press), and none is ever written to the store or a log.

    A cached token is renewed `refresh_margin` before it expires by repeating the exchange with the kept SSO token,
    as long as that is valid; afterwards `get` raises SignInRequired. One exchange at a time per (user, scope):
    concurrent presses share it.

    Args:
        provider: the TokenProvider (its MSAL app, TLS session and clock are shared with the app-only tokens).
        tenant_id, client_id, credential: the app the SSO token was issued to (the bot's registration).
        wall: epoch seconds, for the SSO token's `exp`.
    """

    def __init__(self, provider: TokenProvider, tenant_id: str, client_id: str, credential: Credential, *,
                 wall: Callable[[], float] = time.time) -> None:
        self._provider = provider
        self._client_id = client_id
        self._credential = credential
        self._app_key = (f"{provider.authority_host}/{tenant_id}", client_id.lower(), _fingerprint(credential))
        self._wall = wall
        self._cache: dict[tuple[str, str], _UserToken] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.exchanges = 0  # successful on-behalf-of exchanges (tests, metrics)

    def __repr__(self) -> str:
        return f"OnBehalfOf(client_id={self._client_id!r}, users={len({k[0] for k in self._cache})})"

    def has_token(self, user_object_id: str, scope: str) -> bool:
        """Whether a token (or an SSO token to renew it with) is in memory for this user."""
        entry = self._cache.get((user_object_id.lower(), scope))
        return entry is not None and (self._provider.clock() < entry.expires_at
                                      or self._wall() < entry.assertion_expires_at)

    async def exchange(self, user_object_id: str, assertion: str, assertion_expires_at: float, scope: str) -> str:
        """Exchange `assertion` (the user's checked SSO token) now, cache and return the token for `scope`.

        Raises ConsentRequired, InteractionRequired, TokenError (Entra refused), TokenUnavailable (try later).
        """
        key = (user_object_id.lower(), scope)
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._cache.get(key)
            if entry is not None and entry.assertion == assertion and self._fresh(entry):
                return entry.access_token  # a concurrent press of the same user exchanged it already
            return await self._exchange(key, assertion, assertion_expires_at)

    async def get(self, user_object_id: str, scope: str, *, force_refresh: bool = False) -> str:
        """The user's cached token for `scope`, renewed when due. Raises SignInRequired when none can be had."""
        key = (user_object_id.lower(), scope)
        entry = self._cache.get(key)
        if entry is not None and not force_refresh and self._fresh(entry):
            return entry.access_token
        async with self._locks.setdefault(key, asyncio.Lock()):
            current = self._cache.get(key)
            if current is None:
                raise SignInRequired(f"no sign-in of user {user_object_id} is held in memory")
            if current is not entry and self._fresh(current):
                return current.access_token  # renewed while we waited
            if not force_refresh and self._fresh(current):
                return current.access_token
            if self._wall() >= current.assertion_expires_at:
                self._cache.pop(key, None)
                raise SignInRequired(f"the sign-in of user {user_object_id} has expired")
            return await self._exchange(key, current.assertion, current.assertion_expires_at)

    def token_callable(self, user_object_id: str, scope: str) -> Callable[..., Any]:
        """The project's token callable (`await get_token(force_refresh=False)`) for one user and scope."""

        async def get_token(*, force_refresh: bool = False) -> str:
            return await self.get(user_object_id, scope, force_refresh=force_refresh)

        return get_token

    def forget(self, user_object_id: str) -> None:
        for key in [k for k in self._cache if k[0] == user_object_id.lower()]:
            del self._cache[key]

    def _fresh(self, entry: _UserToken) -> bool:
        return self._provider.clock() < entry.expires_at - self._provider.refresh_margin

    async def _exchange(self, key: tuple[str, str], assertion: str, assertion_expires_at: float) -> str:
        provider = self._provider
        try:
            app = await provider._app(self._app_key, self._client_id, self._credential)
            started = provider.clock()
            result, status, retry_after = await asyncio.to_thread(self._blocking, app, assertion, key[1])
        except TokenFailure:
            raise
        except requests.RequestException as exc:
            raise TokenUnavailable(f"cannot reach Entra at {self._app_key[0]}: {type(exc).__name__}") from exc
        except MsalServiceError as exc:
            raise TokenUnavailable(f"Entra's OpenID discovery failed: {exc}") from None
        except (ValueError, jwt.PyJWTError) as exc:
            raise TokenError("invalid_configuration", _scrub(str(exc), self._credential)) from None
        if "access_token" not in result:
            error = str(result.get("error") or "unknown_error")
            desc = _scrub(str(result.get("error_description") or ""), self._credential).replace(assertion, "***")
            codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
            if error in _TRANSIENT_ERRORS or status == 429 or (status or 0) >= 500:
                raise TokenUnavailable(f"{error}: {desc}", retry_after)
            log.warning("Entra refused the on-behalf-of exchange for user %s, scope %s: %s %s", key[0], key[1],
                        error, codes)
            if 65001 in codes or result.get("suberror") == "consent_required":
                raise ConsentRequired(error, desc, codes)
            if error == "interaction_required":
                raise InteractionRequired(error, desc, codes)
            raise TokenError(error, desc, codes)
        lifetime = float(result.get("expires_in") or 0)
        self._cache[key] = _UserToken(result["access_token"], started + lifetime, assertion, assertion_expires_at)
        self.exchanges += 1
        log.info("on-behalf-of token for user %s, scope %s acquired (expires in %ds)", key[0], key[1], lifetime)
        return str(result["access_token"])

    def _blocking(self, app: _App, assertion: str, scope: str) -> tuple[dict[str, Any], int | None, float | None]:
        with app.lock:
            app.session.last.status = app.session.last.retry_after = None
            try:
                result = app.msal_app.acquire_token_on_behalf_of(assertion, [scope])
            except MsalServiceError as exc:
                raise TokenUnavailable(
                    f"Entra answered {exc} for {scope}",
                    _retry_after(getattr(app.session.last, "retry_after", None))) from None
            return (result or {}, getattr(app.session.last, "status", None),
                    _retry_after(getattr(app.session.last, "retry_after", None)))
