"""The access log and request ids of our own HTTP routes.

Each request gets an id (the caller's `x-request-id` / `client-request-id` when it is a sane token, else a new
one), echoed in the `x-request-id` response header and bound to the log context, so every line written while
handling it carries it. One line per request on logger `connector.access`, with the events URL's secret token
replaced by `***`: the URL is a credential (anyone holding it can post events). Lines are INFO, except an event F&O
delivered that was accepted (200/202 on the events URL): that one is DEBUG. Every accepted event is already in the
store with its history and counted in /metrics, and at F&O's burst rates the line cost a fifth of the front door's
CPU (bench/bench_ops.py); a refused one (400/404/413/415/503) stays INFO.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import uuid
from typing import Awaitable, Callable

from aiohttp import web

from connector.ops import logctx

log = logging.getLogger("connector.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_EVENTS_TOKEN = re.compile(r"^(/api/dynamics/events/)[^/?]+")
REQUEST_ID_HEADER = "x-request-id"


def redact_path(path: str) -> str:
    """The request path with secrets removed (the events URL's token)."""
    return _EVENTS_TOKEN.sub(r"\1***", path)


class RequestIds:
    """Fresh request ids: a random per-process prefix and a counter (32 hex digits, unique across instances and
    restarts) — one getrandom call per process instead of one per request on the front door's hot path."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._next = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._next):016x}"


def request_id_of(request: web.Request, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> str:
    for header in (REQUEST_ID_HEADER, "client-request-id"):
        given = request.headers.get(header)
        if given and _SANE_ID.match(given):
            return given
    return new_id()


def access_middleware(clock: Callable[[], float] = time.perf_counter) -> Callable[..., Awaitable[web.StreamResponse]]:
    new_id = RequestIds()

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        rid = request_id_of(request, new_id)
        started = clock()
        status = 500
        with logctx.bound(request_id=rid):
            try:
                response = await handler(request)
                status = response.status
                response.headers[REQUEST_ID_HEADER] = rid
                return response
            except web.HTTPException as exc:
                status = exc.status
                exc.headers[REQUEST_ID_HEADER] = rid
                raise
            finally:
                level = logging.DEBUG if status in (200, 202) and _EVENTS_TOKEN.match(request.path) else logging.INFO
                if log.isEnabledFor(level):
                    log.log(level, "%s %s %d %.1fms", request.method, redact_path(request.path), status,
                             (clock() - started) * 1000,
                             extra={"http_method": request.method, "http_path": redact_path(request.path),
                                    "http_status": status, "remote": request.remote or "", "request_id": rid})

    return middleware
