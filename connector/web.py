"""The HTTP front door: F&O's Business Events endpoint, health, and the one place errors become responses.

The events handler does the least it can: find the environment from the URL token, bound and parse the body,
store each event once, answer. It answers 2xx only after the store has committed (202 new, 200 duplicate);
OData, cards and Teams happen later, off the durable queue (connector/pipeline.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import hdrs, web

from connector.ops.metrics import Metrics
from connector.store import EnqueueResult, NewEvent, Store, StoreUnavailable
from dynamics import BusinessEvent, EventRejected, parse_events

log = logging.getLogger(__name__)

FIRST_STAGE = "enrich"
SERVER_NAME = "ml-connector"  # the Server header of every answer
RETRY_AFTER_STORE_DOWN = "10"  # seconds; F&O retries on its own schedule anyway (dynamics.md §2)


class ApiError(Exception):
    """An error the handler means to show the caller: status, a short code, and a human detail."""

    def __init__(self, status: int, error: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


def json_answer(data: Any, status: int) -> web.Response:
    """What web.json_response sends (the same body, Content-Type and charset), for a third of its cost."""
    return json_text_answer(json.dumps(data), status)


def json_text_answer(text: str, status: int) -> web.Response:
    """JSON text already written out as an answer: encoded here, so aiohttp does not parse and rebuild the
    Content-Type header for each answer."""
    return web.Response(body=text.encode(), status=status, content_type="application/json", charset="utf-8")


def json_error(status: int, error: str, detail: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return json_answer(body, status)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors become JSON answers; and every answer names the product, not the framework and its version (a
    version string only helps someone matching known vulnerabilities against the service). The header is set here
    rather than in an on_response_prepare signal, which cost the front door a tenth of its CPU per event; no
    handler of ours prepares (streams) its response itself, so every answer passes through here first."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = json_error(exc.status, exc.error, exc.detail, **exc.extra)
    except EventRejected as exc:
        extra: dict[str, Any] = {"field": exc.field}
        if exc.index is not None:
            extra["index"] = exc.index
        response = json_error(400, "invalid_event", str(exc), **extra)
    except StoreUnavailable:
        log.warning("store unavailable while handling %s %s", request.method, request.path)
        response = json_error(503, "store_unavailable", "the event store is unavailable; retry later")
        response.headers["Retry-After"] = RETRY_AFTER_STORE_DOWN
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers[hdrs.SERVER] = SERVER_NAME
            raise
        response = json_error(exc.status, exc.reason.lower().replace(" ", "_"))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = json_error(500, "internal_error")
    response.headers[hdrs.SERVER] = SERVER_NAME
    return response


@dataclass
class EventEnvironment:
    """What the events endpoint needs to know of one F&O environment."""

    name: str
    token: str  # the secret path segment F&O's endpoint URL carries
    legal_entities: frozenset[str] = field(default_factory=frozenset)  # lower-case; empty = all
    previous_token: str = ""  # the token a rotation replaced, accepted until previous_valid_until
    previous_valid_until: float = 0.0  # epoch seconds


EndpointsLoader = Callable[[], Awaitable[list[EventEnvironment]]]


class EventEndpoints:
    """Token → environment, compared in constant time against every valid token (current, and previous ones
    still in their grace period).

    With a `loader` (the service reads the token secrets from the store), the table follows rotations and
    revocations without a restart: it is reloaded when it is older than `refresh_interval` (so a revoked token
    stops working within that time), and on an unknown token (a URL rotated a moment ago) at most once per
    `unknown_reload_interval`, so a flood of wrong tokens cannot turn into a flood of store reads.
    """

    def __init__(
        self,
        environments: list[EventEnvironment],
        *,
        loader: EndpointsLoader | None = None,
        clock: Callable[[], float] = time.time,
        refresh_interval: float = 60.0,
        unknown_reload_interval: float = 5.0,
    ) -> None:
        self.loader = loader
        self._clock = clock
        self._refresh = refresh_interval
        self._unknown_reload = unknown_reload_interval
        self._lock = asyncio.Lock()
        self._loaded_at = clock()
        self.replace(environments)

    def replace(self, environments: list[EventEnvironment]) -> None:
        self._environments = [e for e in environments if e.token or e.previous_token]
        # Encoded once here, not for every request.
        self._encoded = [(e, e.token.encode(), e.previous_token.encode()) for e in self._environments]
        self._loaded_at = self._clock()

    def match_fresh(self, token: str) -> EventEnvironment | None:
        """The environment of `token` when the table needs no reload and holds it; None means "ask `match`".
        Spares the front door a coroutine per event; `match` decides the rest (reloads, unknown tokens)."""
        return None if self._stale() else self._match(token)

    def _stale(self) -> bool:
        """The table comes from the store and is due for a reload (rotations take effect without a restart)."""
        return self.loader is not None and self._clock() - self._loaded_at >= self._refresh

    async def match(self, token: str) -> EventEnvironment | None:
        if self._stale():
            await self._reload(self._refresh)
        found = self._match(token)
        if found is None and self.loader is not None:
            if await self._reload(self._unknown_reload):
                found = self._match(token)
        return found

    def _match(self, token: str) -> EventEnvironment | None:
        found = None
        given = token.encode()
        now = self._clock()
        for env, current, previous in self._encoded:
            # No early exit: the time taken does not depend on which token matched.
            if hmac.compare_digest(given, current) and current:
                found = env
            previous_ok = bool(previous) and now < env.previous_valid_until
            if hmac.compare_digest(given, previous) and previous_ok:
                found = env
        return found

    async def _reload(self, older_than: float) -> bool:
        """Reload if the table is older than `older_than` seconds; True if it did. One reload at a time: the
        requests that waited for it find the table fresh and do not reload again."""
        assert self.loader is not None
        async with self._lock:
            if self._clock() - self._loaded_at < older_than:
                return False
            self._loaded_at = self._clock()  # also on failure: a broken store is not asked again at once
            try:
                self.replace(await self.loader())
            except Exception as exc:  # noqa: BLE001 - keep serving with the table we have
                log.warning("could not reload the events endpoint tokens (keeping the current ones): %s: %s",
                            type(exc).__name__, exc)
                return False
            return True


STORE = web.AppKey("store", Store)
ENDPOINTS = web.AppKey("event_endpoints", EventEndpoints)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
WAKE: web.AppKey[Callable[[], None]] = web.AppKey("wake_pipeline")
MAX_BODY = web.AppKey("max_body_bytes", int)
METRICS: web.AppKey[Metrics | None] = web.AppKey("metrics")


async def read_bounded(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    if length is not None and hdrs.CONTENT_ENCODING not in request.headers:
        # The parser delivers exactly Content-Length bytes, already known to fit: read them in one go. (A body
        # aiohttp decompresses can outgrow its Content-Length, so that one is counted chunk by chunk below.)
        return await request.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _new_event(env: EventEnvironment, event: BusinessEvent) -> NewEvent:
    legal_entity = event.legal_entity
    out_of_scope = bool(
        env.legal_entities and legal_entity is not None and legal_entity.lower() not in env.legal_entities
    )
    return NewEvent(
        environment=env.name,
        business_event_id=event.business_event_id,
        control_number=event.control_number,
        event_id=event.event_id,
        legal_entity=legal_entity,
        payload=event.payload,
        ignore=event.is_test_event or out_of_scope,
    )


async def receive_events(request: web.Request) -> web.Response:
    """POST /api/dynamics/events/{token}: one event object, or an array of them."""
    metrics = request.app[METRICS]
    if metrics is None:
        return await _receive_events(request, None)
    try:
        return await _receive_events(request, metrics)
    except ApiError as exc:
        metrics.events_rejected.labels(exc.error).inc()
        raise
    except EventRejected:
        metrics.events_rejected.labels("invalid_event").inc()
        raise
    except StoreUnavailable:
        metrics.events_rejected.labels("store_unavailable").inc()
        raise


# Content-Type values F&O and most clients send, accepted without parsing the header (aiohttp would, per request).
_PLAIN_JSON = frozenset({"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"})


async def _receive_events(request: web.Request, metrics: Metrics | None) -> web.Response:
    app = request.app
    endpoints, token = app[ENDPOINTS], request.match_info["token"]
    env = endpoints.match_fresh(token) or await endpoints.match(token)
    if env is None:
        raise ApiError(404, "not_found")
    if request.headers.get(hdrs.CONTENT_TYPE) not in _PLAIN_JSON and (
        request.content_type != "application/json" and not request.content_type.endswith("+json")
    ):
        raise ApiError(
            415, "unsupported_media_type", f"expected Content-Type application/json, got '{request.content_type}'"
        )
    body = await read_bounded(request, app[MAX_BODY])
    events = parse_events(body)  # EventRejected → 400; nothing is stored unless every event is valid

    store = app[STORE]
    now = app[CLOCK]
    results = []
    any_new = False
    for event in events:
        outcome, event_record_id = await store.enqueue(_new_event(env, event), first_stage=FIRST_STAGE, now=now())
        any_new = any_new or outcome is EnqueueResult.NEW
        if metrics is not None:
            metrics.event_stored(env.name, outcome is EnqueueResult.NEW)
        results.append(_result_text(event_record_id, event.control_number, outcome))
    if any_new:
        app[WAKE]()
    return json_text_answer(_answer_text(env.name, results), 202 if any_new else 200)


def _result_text(event_record_id: str, control_number: int, outcome: EnqueueResult) -> str:
    """json.dumps({"id": ..., "controlNumber": ..., "result": ...}), written out: the answer's shape is fixed,
    and building dicts to encode them was a tenth of the handler's own CPU."""
    return (f'{{"id": {json.dumps(event_record_id)}, "controlNumber": {int(control_number)!r}, '
            f'"result": {json.dumps(outcome.value)}}}')


def _answer_text(environment: str, results: list[str]) -> str:
    """json.dumps({"environment": ..., "events": [...]}) of results from `_result_text`."""
    return f'{{"environment": {json.dumps(environment)}, "events": [{", ".join(results)}]}}'


async def health(request: web.Request) -> web.Response:
    """Liveness (the container's HEALTHCHECK): answering proves the process and its loop run; it reads and shows
    nothing. Readiness with its checks is /readyz (connector/ops/probes.py)."""
    return json_answer({"status": "ok"}, 200)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/dynamics/events/{token}", receive_events)
    app.router.add_get("/healthz", health)


def events_app(
    store: Store,
    endpoints: EventEndpoints,
    *,
    max_body_bytes: int = 1024 * 1024,
    clock: Callable[[], float] | None = None,
    wake: Callable[[], None] = lambda: None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The front door on a given store. connector/app.py builds the service on it; tests and the ingest
    benchmark use it alone."""
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body_bytes + 1)
    app[STORE] = store
    app[ENDPOINTS] = endpoints
    app[CLOCK] = clock or time.time
    app[WAKE] = wake
    app[MAX_BODY] = max_body_bytes
    app[METRICS] = metrics
    add_routes(app)
    return app
