"""Microsoft Graph client: find Entra users (to mention them or chat with them) and install the app for a user.

Speaks Graph REST over the caller's aiohttp session, with a bounded inline retry (bot/retry.py), one forced token
refresh on 401, a small TTL cache (shorter for "no such user"), and `$batch` lookups of up to 20 users whose
throttled sub-requests are retried after their own Retry-After. Every failure leaves as bot/errors.py's GraphError
tree. Knows nothing about botbuilder, config or the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from bot.errors import (
    GraphBadRequest,
    GraphError,
    GraphForbidden,
    GraphNotFound,
    GraphThrottled,
    GraphUnauthorized,
    GraphUnavailable,
)
from bot.models import GraphUser
from bot.retry import RetryBudget, RetryPolicy, parse_retry_after

__all__ = ["BATCH_LIMIT", "GraphClient"]

log = logging.getLogger(__name__)

BATCH_LIMIT = 20  # Graph's JSON batch maximum
_SELECT = "$select=id,displayName,userPrincipalName,mail"
_RETRYABLE = frozenset({429, 502, 503, 504})
_PERMISSION = re.compile(r"\b([A-Z][A-Za-z]+(?:\.[A-Z][A-Za-z]+){1,3})\b")
_USERS_PERMISSION = "User.Read.All"
_INSTALL_PERMISSION = "TeamsAppInstallation.ReadWriteSelfForUser.All"
_CATALOG_PERMISSION = "AppCatalog.Read.All"


def _literal(value: str) -> str:
    """An OData string literal (single quotes doubled), URL-encoded for a query string."""
    return quote("'" + value.replace("'", "''") + "'", safe="")


def _user_path(id_or_upn: str) -> str:
    """`/users/{id|upn}`; a UPN starting with `$` needs `/users('$x@y')`; `#` (B2B `#EXT#`) becomes `%23`."""
    if id_or_upn.startswith("$"):
        return "/users('" + quote(id_or_upn.replace("'", "''"), safe="@$'") + "')"
    return "/users/" + quote(id_or_upn, safe="@$'")


def _user(data: Any) -> GraphUser | None:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    return GraphUser(id=data["id"], display_name=data.get("displayName"), upn=data.get("userPrincipalName"),
                     mail=data.get("mail"))


def _error_fields(data: Any) -> tuple[str, str]:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return "", data.strip()[:300] if isinstance(data, str) else ""


class GraphClient:
    """Graph calls made with the caller's session and token callable.

    Args:
        session: the app's shared aiohttp session (never closed here).
        graph_url: "https://graph.microsoft.com" (or a stand-in); "/v1.0" is appended unless a version is given.
        get_token: `async get_token(*, force_refresh=False) -> str` for the Graph scope.
        ssl: passed to aiohttp (an SSLContext for a private CA), None for the default.
        sleep, clock, wall_clock, rng: injectable time (clock: monotonic, for the cache and the retry budget;
            wall_clock: epoch seconds, for Retry-After dates).
        cache_ttl: seconds a found user is cached; negative_ttl: seconds a "no such user" is cached.
        policy: inline retry bounds; timeout: seconds per HTTP request.
    """

    def __init__(self, session: aiohttp.ClientSession, graph_url: str, get_token: Callable[..., Awaitable[str]],
                 *, ssl: Any = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 cache_ttl: float = 3600, negative_ttl: float = 300, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, policy: RetryPolicy | None = None,
                 rng: Callable[[], float] = random.random, timeout: float = 30.0,
                 max_cache_entries: int = 10_000) -> None:
        base = graph_url.rstrip("/")
        if not re.search(r"/(v1\.0|beta)$", base):
            base += "/v1.0"
        self._base = base
        self._session = session
        self._get_token = get_token
        self._ssl = ssl
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._policy = policy or RetryPolicy()
        self._rng = rng
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_ttl
        self._max_cache_entries = max_cache_entries
        self._cache: dict[tuple[str, str], tuple[float, GraphUser | None]] = {}

    # --- users ------------------------------------------------------------------------------------------------

    async def get_user(self, id_or_upn: str) -> GraphUser | None:
        """The user with this object id or UPN, or None when Graph has no such user.

        Raises:
            GraphForbidden (names User.Read.All), GraphThrottled, GraphUnavailable, GraphBadRequest...
        """
        if not id_or_upn:
            return None
        key = ("user", id_or_upn.lower())
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        path = _user_path(id_or_upn)
        status, data = await self._request("GET", f"{path}?{_SELECT}", target=f"GET {path}")
        if status == 404:
            self._remember(key, None)
            return None
        if status != 200:
            raise self._error(status, data, f"GET {path}", _USERS_PERMISSION)
        user = _user(data)
        self._remember(key, user)
        return user

    async def first_user(self) -> GraphUser | None:
        """One user of the directory (`GET /users?$top=1`), or None in an empty one: proves the token, the
        network path and User.Read.All in one read (`ml-connector check`). Not cached.

        Raises:
            GraphForbidden (names User.Read.All), GraphUnauthorized, GraphThrottled, GraphUnavailable...
        """
        status, data = await self._request("GET", f"/users?$top=1&{_SELECT}", target="GET /users?$top=1")
        if status != 200:
            raise self._error(status, data, "GET /users?$top=1", _USERS_PERMISSION)
        users = [u for u in (_user(v) for v in (data or {}).get("value") or []) if u is not None]
        return users[0] if users else None

    async def get_application(self, app_id: str) -> dict[str, Any] | None:
        """An app registration as Graph shows it (`GET /applications(appId='<id>')`: identifierUris, api,
        requiredResourceAccess), or None when there is none. For `ml-connector check` (Teams SSO setup).

        Raises:
            GraphForbidden (names Application.Read.All), GraphUnauthorized, GraphThrottled, GraphUnavailable...
        """
        path = f"/applications(appId='{quote(app_id, safe='')}')"
        status, data = await self._request(
            "GET", f"{path}?$select=appId,identifierUris,api,requiredResourceAccess", target=f"GET {path}")
        if status == 404:
            return None
        if status != 200:
            raise self._error(status, data, f"GET {path}", "Application.Read.All")
        return data if isinstance(data, dict) else None

    async def get_mailbox_time_zone(self, user_id: str) -> str | None:
        """The user's mailbox time zone (`GET /users/{id}/mailboxSettings` -> timeZone: a Windows or an IANA
        name, as Outlook stores it), or None when the user or their mailbox is unknown.

        Raises:
            GraphForbidden (names MailboxSettings.Read), GraphThrottled, GraphUnavailable...
        """
        if not user_id:
            return None
        path = f"{_user_path(user_id)}/mailboxSettings"
        status, data = await self._request("GET", f"{path}?$select=timeZone", target=f"GET {path}")
        if status == 404:
            return None
        if status != 200:
            raise self._error(status, data, f"GET {path}", "MailboxSettings.Read")
        zone = data.get("timeZone") if isinstance(data, dict) else None
        return zone if isinstance(zone, str) and zone else None

    async def find_user_by_mail(self, mail: str) -> GraphUser | None:
        """The user whose `mail` is this address, else whose UPN is; None when neither matches."""
        if not mail:
            return None
        key = ("mail", mail.lower())
        hit = self._cached(key)
        if hit is not None:
            return hit[0]
        user = None
        for prop in ("mail", "userPrincipalName"):
            query = f"$filter={quote(prop)}%20eq%20{_literal(mail)}&{_SELECT}"
            status, data = await self._request("GET", f"/users?{query}", target=f"GET /users?$filter={prop} eq")
            if status != 200:
                raise self._error(status, data, f"GET /users?$filter={prop} eq", _USERS_PERMISSION)
            found = [u for u in (_user(v) for v in (data or {}).get("value") or []) if u is not None]
            if len(found) > 1:
                log.warning("%d Graph users have %s %s; using the first", len(found), prop, mail)
            if found:
                user = found[0]
                break
        self._remember(key, user)
        return user

    async def get_users(self, upns: Iterable[str]) -> dict[str, GraphUser | None]:
        """Look up many users (ids or UPNs) through `$batch`, 20 per request, cache first.

        Returns:
            Every requested key -> its user, or None when Graph has no such user.
        Raises:
            GraphThrottled / GraphUnavailable when throttled sub-requests outlast the inline budget (users found
            so far stay cached, so a retry costs less).
        """
        wanted = [u for u in dict.fromkeys(upns) if u]
        result: dict[str, GraphUser | None] = {}
        pending = []
        for upn in wanted:
            hit = self._cached(("user", upn.lower()))
            if hit is not None:
                result[upn] = hit[0]
            else:
                pending.append(upn)
        for start in range(0, len(pending), BATCH_LIMIT):
            await self._batch(pending[start:start + BATCH_LIMIT], result)
        return {upn: result.get(upn) for upn in wanted}

    async def _batch(self, chunk: list[str], result: dict[str, GraphUser | None]) -> None:
        budget = self._budget()
        todo = {str(i + 1): upn for i, upn in enumerate(chunk)}
        while todo:
            body = {"requests": [{"id": rid, "method": "GET", "url": f"{_user_path(upn)}?{_SELECT}"}
                                 for rid, upn in todo.items()]}
            status, data = await self._request("POST", "/$batch", json_body=body, target="POST /$batch")
            if status != 200:
                raise self._error(status, data, "POST /$batch", _USERS_PERMISSION)
            waits: list[float | None] = []
            throttled = False
            for sub in (data or {}).get("responses") or []:
                if not isinstance(sub, dict):
                    continue
                rid = str(sub.get("id"))
                upn = todo.get(rid)
                if upn is None:
                    continue
                sub_status = sub.get("status")
                if sub_status == 200:
                    user = _user(sub.get("body"))
                    self._remember(("user", upn.lower()), user)
                    result[upn] = user
                    del todo[rid]
                elif sub_status == 404:
                    self._remember(("user", upn.lower()), None)
                    result[upn] = None
                    del todo[rid]
                elif sub_status in _RETRYABLE:
                    throttled = throttled or sub_status == 429
                    headers = {str(k).lower(): str(v) for k, v in (sub.get("headers") or {}).items()}
                    waits.append(parse_retry_after(headers.get("retry-after"), self._wall_clock()))
                else:
                    raise self._error(sub_status, sub.get("body"), f"GET {_user_path(upn)} (in $batch)",
                                      _USERS_PERMISSION)
            if not todo:
                return
            known = [w for w in waits if w is not None]
            delay = max(known) if known else budget.delay_for(None)
            log.info("Graph $batch: %d sub-requests to retry in %.1f s", len(todo), delay)
            if not await budget.wait(delay):
                if throttled:
                    raise GraphThrottled(delay, "TooManyRequests", f"{len(todo)} user lookups throttled",
                                         target="POST /$batch")
                raise GraphUnavailable(delay, None, "", f"{len(todo)} user lookups failed", target="POST /$batch")

    # --- Teams app installation ---------------------------------------------------------------------------------

    async def install_app_for_user(self, user_id: str, teams_app_id: str) -> None:
        """Install the Teams app (catalog id) in the user's personal scope; already installed counts as done.

        Raises:
            GraphForbidden (names TeamsAppInstallation.ReadWriteSelfForUser.All), GraphNotFound (no such user
            or app), GraphThrottled, GraphUnavailable...
        """
        path = f"/users/{quote(user_id, safe='')}/teamwork/installedApps"
        body = {"teamsApp@odata.bind": f"{self._base}/appCatalogs/teamsApps/{teams_app_id}"}
        status, data = await self._request("POST", path, json_body=body, target=f"POST {path}")
        if status in (200, 201, 204):
            return
        if status == 409:  # Graph's answer when the app is already installed for the user
            log.info("Teams app %s already installed for user %s", teams_app_id, user_id)
            return
        raise self._error(status, data, f"POST {path}", _INSTALL_PERMISSION)

    async def find_teams_app(self, external_id: str) -> str | None:
        """The org catalog id of the app whose manifest id is `external_id`, or None."""
        query = f"$filter=externalId%20eq%20{_literal(external_id)}"
        status, data = await self._request("GET", f"/appCatalogs/teamsApps?{query}",
                                           target="GET /appCatalogs/teamsApps")
        if status != 200:
            raise self._error(status, data, "GET /appCatalogs/teamsApps", _CATALOG_PERMISSION)
        for app in (data or {}).get("value") or []:
            if isinstance(app, dict) and isinstance(app.get("id"), str):
                return app["id"]
        return None

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _budget(self) -> RetryBudget:
        return RetryBudget(self._policy, sleep=self._sleep, clock=self._clock, rng=self._rng)

    def _cached(self, key: tuple[str, str]) -> tuple[GraphUser | None] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        return (value,)

    def _remember(self, key: tuple[str, str], user: GraphUser | None) -> None:
        ttl = self._cache_ttl if user is not None else self._negative_ttl
        keys = [key]
        if user is not None:  # a later lookup by the other handle hits too
            keys += [("user", user.id.lower())] + ([("user", user.upn.lower())] if user.upn else [])
        for k in keys:
            self._cache.pop(k, None)
            self._cache[k] = (self._clock() + ttl, user)
        while len(self._cache) > self._max_cache_entries:
            del self._cache[next(iter(self._cache))]

    async def _token(self, force: bool, budget: RetryBudget, target: str) -> str:
        try:
            return await self._get_token(force_refresh=force) if force else await self._get_token()
        except Exception as exc:  # noqa: BLE001 - the token provider's own errors: reschedule
            raise GraphUnavailable(budget.delay_for(None), None, "", f"Graph token unavailable: {exc}",
                                   target=target) from exc

    async def _request(self, method: str, path_and_query: str, *, json_body: Any = None,
                       target: str) -> tuple[int, Any]:
        """One Graph call with the inline retry policy. Returns (status, parsed JSON or text) for any status
        that is not retried (the caller decides what a 404 means)."""
        budget = self._budget()
        refreshed = False
        url = URL(self._base + path_and_query, encoded=True)
        force = False
        while True:
            token = await self._token(force, budget, target)
            force = False
            try:
                async with self._session.request(
                        method, url, json=json_body, ssl=self._ssl, timeout=self._timeout,
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}) as response:
                    status = response.status
                    retry_after_header = response.headers.get("Retry-After")
                    text = await response.text()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise GraphUnavailable(budget.delay_for(None), None, "", f"{type(exc).__name__}: {exc}",
                                       target=target) from None
            try:
                data: Any = json.loads(text) if text else None
            except ValueError:
                data = text
            if status == 401 and not refreshed:
                refreshed = force = True
                continue
            if status in _RETRYABLE:
                delay = budget.delay_for(parse_retry_after(retry_after_header, self._wall_clock()))
                log.info("Graph answered %s on %s; retry in %.1f s", status, target, delay)
                if await budget.wait(delay):
                    continue
                code, message = _error_fields(data)
                if status == 429:
                    raise GraphThrottled(delay, code, message, target=target)
                raise GraphUnavailable(delay, status, code, message, target=target)
            return status, data

    def _error(self, status: int | None, data: Any, target: str, permission: str | None) -> GraphError:
        code, message = _error_fields(data)
        if status == 400:
            return GraphBadRequest(status, code, message, target=target)
        if status == 401:
            return GraphUnauthorized(status, code, message, target=target)
        if status == 403:
            named = _PERMISSION.search(message)
            return GraphForbidden(status, code, message, permission=named.group(1) if named else permission,
                                  target=target)
        if status == 404:
            return GraphNotFound(status, code, message, target=target)
        if status == 429:
            return GraphThrottled(self._policy.backoff(0, self._rng), code, message, target=target)
        if status is None or status >= 500:
            return GraphUnavailable(self._policy.backoff(0, self._rng), status, code, message, target=target)
        return GraphError(status, code, message, target=target)
