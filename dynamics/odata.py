"""A small F&O OData v4 client: queries, keyed reads and bound actions, with F&O's retry rules.

It speaks OData over the caller's `aiohttp.ClientSession` and nothing else: no config, no token cache, no
enrichment logic. Every aiohttp/asyncio failure is translated into dynamics.errors here. Protocol facts:
../shared/reference/dynamics.md §4 (URLs, cross-company, error body) and §5 (429 + Retry-After).

Rules it always follows:
- every request carries `cross-company=true`; company-specific reads also carry `dataAreaId eq '<company>'`;
- `@odata.nextLink` is followed only on the base URL's origin (the bearer token never goes elsewhere);
- bound actions (POST) are not re-sent after a 5xx or timeout unless the caller says they are idempotent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from yarl import URL

from dynamics.errors import (
    ODataAuthError,
    ODataBadRequest,
    ODataError,
    ODataNotFound,
    ODataThrottled,
    ODataUnavailable,
    ODataUnknownEntitySet,
    ODataUnknownProperty,
)
from dynamics.odata_query import (
    ENUM_NAMESPACE,
    Enum,
    Expansion,
    build_expand,
    build_filter,
    check_identifier,
    checked,
    literal,
)

__all__ = ["ODataClient", "TokenCallable"]

log = logging.getLogger(__name__)

TokenCallable = Callable[..., Awaitable[str]]  # async (*, force_refresh: bool = False) -> str

_QUERY_SAFE = "'(),:$*/@=;!"  # kept readable in URLs; '+', '&', '#', '%' and spaces are always encoded
_KEY_SAFE = "'(),:@=!"  # inside the path: '/' in a key value must be encoded
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 8.0
_MAX_RETRY_AFTER = 86_400.0
_ERROR_TEXT_LIMIT = 500
_SHAPES_KEPT = 256


class ODataClient:
    """Reads and actions against one F&O environment's `/data` service.

    Args:
        session: the application's shared session (never closed here).
        base_url: environment root, e.g. `https://contoso.operations.dynamics.com` (no `/data`).
        get_token: `await get_token(force_refresh=False) -> str`; called with `force_refresh=True` once after a 401.
        timeout: seconds for one HTTP exchange.
        max_attempts: HTTP exchanges per call for transient failures (429 waited inline, 5xx, timeouts).
        max_inline_wait: longest Retry-After we sit out here; longer ones raise ODataThrottled at once.
        default_retry_after: seconds assumed when a 429 has no usable Retry-After (Microsoft's sample uses 30).
        max_pages: pages one query may follow through `@odata.nextLink` before failing.
        ssl: TLS context (the sandbox CA in tests); None uses aiohttp's default verification.
        sleep: awaited for every wait, so tests use fake time.
        clock: wall-clock seconds since the epoch (`time.time`), to turn an HTTP-date Retry-After into seconds.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        get_token: TokenCallable,
        *,
        timeout: float = 30,
        max_attempts: int = 4,
        max_inline_wait: float = 10.0,
        default_retry_after: float = 30.0,
        max_pages: int = 50,
        ssl: _ssl.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        if max_attempts < 1 or max_pages < 1:
            raise ValueError("max_attempts and max_pages must be at least 1")
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.netloc.lower())
        self._get_token = get_token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._max_inline_wait = max_inline_wait
        self._default_retry_after = default_retry_after
        self._max_pages = max_pages
        self._ssl: _ssl.SSLContext | bool = ssl if ssl is not None else True
        self._sleep = sleep
        self._clock = clock
        self.requests = 0  # HTTP exchanges made, for metrics and tests
        # query URL around its $filter, per (entity set, select, orderby, top, expand): see _query_shape
        self._shapes: dict[Any, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"ODataClient({self.base_url!r})"

    # --- public calls -------------------------------------------------------------------------------------------

    async def query(
        self,
        entity_set: str,
        *,
        company: str | None,
        filter: Mapping[str, Any] | str | None = None,
        select: Iterable[str] | None = None,
        orderby: str | Iterable[str] | None = None,
        top: int | None = None,
        expand: Sequence[Expansion] | None = None,
    ) -> list[dict[str, Any]]:
        """All rows of `entity_set` matching `filter`, following `@odata.nextLink`.

        Args:
            entity_set: e.g. `PurchaseOrderHeadersV2`.
            company: the legal entity (dataAreaId) for company-specific sets; None for global sets
                (`SystemUsers`, `WorkflowWorkItems`).
            filter: `{field: value}` (eq clauses, ANDed; values become OData literals) or raw `$filter` text.
            select: fields for `$select`.
            orderby: `$orderby` text or a list of its items (`["LineNumber", "ItemNumber desc"]`).
            top: at most this many rows.
            expand: navigation properties to read in the same request (`$expand`, one level): each row then
                carries the related row (or list of rows) under the navigation's name.

        Raises:
            ODataError and subclasses; ODataError (status None) when more than `max_pages` pages would be needed.
        """
        check_identifier(entity_set, "entity set")
        text = build_filter(filter, company=company)  # checked before the rest of the query, as it always was
        prefix, suffix = self._query_shape(entity_set, select, orderby, top, expand)
        url = prefix + (f"&$filter={quote(text, safe=_QUERY_SAFE)}" if text else "") + suffix

        rows: list[dict[str, Any]] = []
        pages = 0
        next_url: str | None = url
        while next_url is not None:
            if pages == self._max_pages:
                raise ODataError(
                    None, "", f"{entity_set}: more than {self._max_pages} pages of results; "
                    "narrow the filter or raise max_pages", target=f"GET /data/{entity_set}")
            pages += 1
            body = await self._request("GET", next_url, target=f"GET /data/{entity_set}", keyed=False)
            value = body.get("value")
            if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
                raise ODataError(None, "", f"{entity_set}: response has no 'value' array of rows",
                                 target=f"GET /data/{entity_set}")
            rows.extend(value)
            if top is not None and len(rows) >= top:
                return rows[:top]
            link = body.get("@odata.nextLink")
            next_url = self._same_origin(link, entity_set) if link else None
        return rows

    def _query_shape(self, entity_set: str, select: Iterable[str] | None, orderby: str | Iterable[str] | None,
                     top: int | None, expand: Sequence[Expansion] | None) -> tuple[str, str]:
        """The URL of a query around its `$filter`: (up to `cross-company=true`, `$select` to `$expand`).

        Everything but the filter is the same for every event of a plan's fetch, so it is checked and encoded once
        per shape (a small cache on the client) instead of per request.
        """
        select_key = tuple(select) if select else ()
        orderby_key: str | tuple[str, ...] = ""
        if orderby:
            orderby_key = orderby if isinstance(orderby, str) else tuple(orderby)
        expand_key = tuple(expand) if expand else ()
        key: tuple[Any, ...] | None = (entity_set, select_key, orderby_key, top, expand_key)
        try:
            shape = self._shapes.get(key)
        except TypeError:  # an unhashable part (an Expansion given lists): built every time, not kept
            shape, key = None, None
        if shape is not None:
            return shape
        params: list[tuple[str, str]] = []
        if select_key:
            for name in select_key:
                check_identifier(name, "select field")
            params.append(("$select", ",".join(select_key)))
        if orderby_key:
            params.append(("$orderby", orderby_key if isinstance(orderby_key, str) else ",".join(orderby_key)))
        if top is not None:
            if top < 1:
                raise ValueError("top must be at least 1")
            params.append(("$top", str(top)))
        expand_text = build_expand(expand_key)
        if expand_text:
            params.append(("$expand", expand_text))
        shape = (f"{self.base_url}/data/{entity_set}?cross-company=true",
                 "".join(f"&{k}={quote(v, safe=_QUERY_SAFE)}" for k, v in params))
        if key is not None:
            if len(self._shapes) >= _SHAPES_KEPT:  # plans have a handful of fetches; this only bounds odd callers
                self._shapes.clear()
            self._shapes[key] = shape
        return shape

    async def get(
        self,
        entity_set: str,
        *,
        company: str | None,
        key: Mapping[str, Any],
        select: Iterable[str] | None = None,
        expand: Sequence[Expansion] | None = None,
    ) -> dict[str, Any] | None:
        """The one row whose key fields equal `key`, or None.

        A filtered query rather than a keyed URL, so a missing row is None, not an error. Rows are re-checked
        against the key here because F&O treats `*` inside an `eq` string as a wildcard.

        Raises:
            ODataError: the key matches more than one row (an incomplete key); others as `query`.
        """
        if not key:
            raise ValueError("get() needs at least one key field")
        fields = list(select) if select else None
        if fields is not None:
            fields += [name for name in key if name not in fields]
        rows = await self.query(entity_set, company=company, filter=key, select=fields, expand=expand)
        exact = [row for row in rows if all(_same(row.get(name), value) for name, value in key.items())]
        if len(exact) > 1:
            raise ODataError(None, "", f"{entity_set}: key {dict(key)!r} matches {len(exact)} rows; "
                             "give every key field", target=f"GET /data/{entity_set}")
        return exact[0] if exact else None

    async def invoke_action(
        self,
        entity_set: str,
        key: Mapping[str, Any],
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """POST a bound action: `/data/<Set>(<keys>)/Microsoft.Dynamics.DataEntities.<action>?cross-company=true`.

        Args:
            key: every key field of the row (include `dataAreaId` for company-specific sets).
            params: the action's JSON body.
            idempotent: allow re-sending after a 5xx or timeout (429 and refused connections are always retried,
                since F&O did not run the action).

        Returns:
            The JSON answer (an action returning a primitive answers `{"value": ...}`); `{}` for 204.

        Raises:
            ODataNotFound: no such row (or action); other ODataError subclasses as for `query`.
        """
        check_identifier(entity_set, "entity set")
        check_identifier(action, "action")
        if not key:
            raise ValueError("invoke_action() needs the row's key")
        keys = ",".join(f"{checked(name, 'key field')}={literal(value)}" for name, value in key.items())
        path = f"/data/{entity_set}({quote(keys, safe=_KEY_SAFE)})/{ENUM_NAMESPACE}.{action}"
        return await self._request(
            "POST", f"{self.base_url}{path}?cross-company=true", target=f"POST /data/{entity_set}(...)/{action}",
            keyed=True, payload=dict(params or {}), resend=idempotent,
        )

    # --- transport ------------------------------------------------------------------------------------------

    async def _request(
        self, method: str, url: str, *, target: str, keyed: bool, payload: Any = None, resend: bool = True
    ) -> dict[str, Any]:
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            token = await self._get_token(force_refresh=refreshed)
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "OData-Version": "4.0",
                "OData-MaxVersion": "4.0",
            }
            self.requests += 1
            try:
                async with self._session.request(
                    method, URL(url, encoded=True), headers=headers, json=payload,
                    timeout=self._timeout, ssl=self._ssl, allow_redirects=False,
                ) as resp:
                    status = resp.status
                    retry_after_header = resp.headers.get("Retry-After")
                    raw = await resp.read()
            except aiohttp.ClientConnectorCertificateError as exc:
                raise ODataUnavailable(None, "", f"TLS certificate not trusted: {exc}", target=target) from exc
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reached = not isinstance(exc, aiohttp.ClientConnectorError)
                reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
                if attempt < self._max_attempts and (resend or not reached):
                    await self._backoff(attempt, target, reason)
                    continue
                raise ODataUnavailable(None, "", f"F&O unreachable after {attempt} attempt(s): {reason}",
                                       target=target) from exc

            if 200 <= status < 300:
                return _json_object(raw, status, target)
            code, message, inner = _parse_error(raw)
            if status == 401:
                if not refreshed:
                    refreshed = True
                    attempt -= 1  # a refresh is not a retry
                    log.info("OData 401 on %s: refreshing the token once", target)
                    continue
                raise ODataAuthError(status, code, message or "Unauthorized", inner, target=target)
            if status == 403:
                raise ODataAuthError(status, code, message or "Forbidden", inner, target=target)
            if status == 429:
                wait = self._retry_after(retry_after_header)
                if wait <= self._max_inline_wait and attempt < self._max_attempts:
                    log.info("OData 429 on %s: waiting %.1f s (attempt %d)", target, wait, attempt)
                    await self._sleep(wait)
                    continue
                raise ODataThrottled(wait, message, inner, code=code, target=target)
            if status >= 500 and status != 501:
                if resend and attempt < self._max_attempts:
                    await self._backoff(attempt, target, f"HTTP {status}")
                    continue
                raise ODataUnavailable(status, code, message or "Server error", inner, target=target)
            if status == 404:
                if keyed:
                    raise ODataNotFound(status, code, message or "Not found", inner, target=target)
                # a collection URL that is not there: the environment has no such entity set
                raise ODataUnknownEntitySet(_entity_set_of(target), status, code, message or "Not found", inner,
                                            target=target)
            if status == 400:
                unknown = ODataUnknownProperty.find(inner, message)
                if unknown is not None:
                    raise ODataUnknownProperty(*unknown, status, code, message or "Bad request", inner,
                                               target=target)
                raise ODataBadRequest(status, code, message or "Bad request", inner, target=target)
            raise ODataError(status, code, message, inner, target=target)

    async def _backoff(self, attempt: int, target: str, reason: str) -> None:
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.warning("OData %s on %s: retrying in %.2f s (attempt %d/%d)",
                    reason, target, delay, attempt, self._max_attempts)
        await self._sleep(delay)

    def _retry_after(self, header: str | None) -> float:
        """Seconds from a Retry-After header (delta-seconds or HTTP-date); the default if absent or unreadable."""
        if header is None or not header.strip():
            return self._default_retry_after
        text = header.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return self._default_retry_after
            if when is None:
                return self._default_retry_after
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = when.timestamp() - self._clock()
        if not math.isfinite(seconds):
            return self._default_retry_after
        return min(max(seconds, 0.0), _MAX_RETRY_AFTER)

    def _same_origin(self, link: Any, entity_set: str) -> str:
        if not isinstance(link, str):
            raise ODataError(None, "", f"{entity_set}: @odata.nextLink is not a string",
                             target=f"GET /data/{entity_set}")
        absolute = urljoin(self.base_url + "/data/", link)
        parts = urlsplit(absolute)
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise ODataError(None, "", f"{entity_set}: @odata.nextLink points to another origin "
                             f"({parts.scheme}://{parts.netloc}); not following it with our token",
                             target=f"GET /data/{entity_set}")
        return str(URL(absolute))  # normalised and percent-encoded, sent as is


# --- helpers ------------------------------------------------------------------------------------------------


def _entity_set_of(target: str) -> str:
    """`GET /data/VendorsV2` -> `VendorsV2`."""
    return target.rpartition("/data/")[2].split("(")[0]


def _same(actual: Any, wanted: Any) -> bool:
    """Key comparison as F&O does it: strings case-insensitively, enums by value."""
    if isinstance(wanted, Enum):
        wanted = wanted.value
    if isinstance(actual, str) and isinstance(wanted, str):
        return actual.casefold() == wanted.casefold()
    if isinstance(wanted, str) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            return float(wanted) == actual
        except ValueError:
            return False
    return actual == wanted


def _json_object(raw: bytes, status: int, target: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ODataError(status, "", f"response is not JSON: {_text(raw)}", target=target) from None
    if not isinstance(body, dict):
        raise ODataError(status, "", "response is not a JSON object", target=target)
    return body


def _parse_error(raw: bytes) -> tuple[str, str, str | None]:
    """(code, message, inner message) from F&O's error body; plain text for anything else. No stack traces."""
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        return "", _text(raw), None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", _text(raw) if body is not None and not isinstance(body, dict) else "", None
    code = error.get("code")
    message = error.get("message")
    inner = error.get("innererror")
    inner_message = inner.get("message") if isinstance(inner, dict) else None
    return (
        str(code) if code not in (None, "") else "",
        _clip(str(message)) if message is not None else "",
        _clip(str(inner_message)) if inner_message not in (None, "") else None,
    )


def _text(raw: bytes) -> str:
    return _clip(" ".join(raw.decode("utf-8", "replace").split()))


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[: _ERROR_TEXT_LIMIT - 1] + "…"
