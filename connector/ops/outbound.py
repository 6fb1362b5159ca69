"""Every call the shared HTTP session makes to Microsoft's services: a `client-request-id` sent, the answer counted
by service and status, 429s and their Retry-After summed, and a failure logged with Microsoft's `request-id` and
`ms-cv` so a support case can quote them.

An aiohttp client middleware on the sessions connector/app.py opens, so the adapters (dynamics/, bot/) need no
change for it. The middleware runs in the caller's task, so these log lines carry the event ids bound there
(connector/ops/logctx.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from typing import Callable

import aiohttp

from connector.ops.metrics import Metrics
from connector.ops.upstreams import Upstreams

log = logging.getLogger(__name__)

# Microsoft's correlation headers, in the order a support engineer asks for them.
CORRELATION_HEADERS = ("request-id", "client-request-id", "x-ms-request-id", "ms-cv", "x-ms-ags-diagnostic")


class ClientRequestIds:
    """Fresh GUIDs for Microsoft's `client-request-id` (version 4 form) from a generator seeded once per process:
    `uuid.uuid4()` asks the kernel per call (os.urandom), and that call lets go of the GIL, so every outbound
    request handed the event loop's thread to the database thread and waited to get it back. A correlation id
    needs to be unique, not unpredictable."""

    def __init__(self) -> None:
        self._random = random.Random(os.urandom(32))

    def __call__(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))


def _failure(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, asyncio.CancelledError):  # aiohttp's total timeout may cancel the request (TimeoutError outside)
        return "cancelled (a timeout, or a shutdown)"
    return f"{type(exc).__name__}: {exc}"


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def outbound_middleware(classify: Callable[[str], str], *, metrics: Metrics | None, upstreams: Upstreams | None,
                        clock: Callable[[], float] = time.time) -> aiohttp.ClientMiddlewareType:
    """A client middleware for a session. `classify("host:port")` names the service ("fno", "graph", ...).

    A middleware rather than a TraceConfig: a trace sends five or more signals per request (start, headers,
    connection reuse, each response chunk, end), each a coroutine and a params object, which made it 15 % of an
    OData request's CPU; a middleware is one call around the request."""
    new_id = ClientRequestIds()

    async def middleware(request: aiohttp.ClientRequest,
                         handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        headers = request.headers
        client_request_id = headers.get("client-request-id")
        if client_request_id is None:
            client_request_id = headers["client-request-id"] = new_id()
        url = request.url
        service = classify(f"{url.host or ''}:{url.port}")
        try:
            resp = await handler(request)
        except BaseException as exc:
            if metrics is not None:
                metrics.outbound_answer(service, "error")
            detail = _failure(exc)
            if upstreams is not None:
                upstreams.failure(service, clock(), f"{request.method} {url.path} {detail}")
            log.warning("%s unreachable on %s %s: %s (client-request-id=%s)", service, request.method, url.path,
                        detail, client_request_id)
            raise
        status = resp.status
        retry_after = _retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
        if metrics is not None:
            metrics.outbound_answer(service, status, retry_after)
        if status < 400:
            if upstreams is not None:
                upstreams.success(service, clock(), f"{request.method} {status}")
            return resp
        ids = {h: resp.headers[h] for h in CORRELATION_HEADERS if h in resp.headers}
        ids.setdefault("client-request-id", client_request_id)
        quoted = " ".join(f"{k}={v}" for k, v in ids.items())
        if upstreams is not None:
            upstreams.failure(service, clock(), f"{request.method} {url.path} {status} {quoted}")
        log.warning("%s answered %s to %s %s%s (%s)", service, status, request.method, url.path,
                    f"; Retry-After {retry_after:g}s" if retry_after else "", quoted,
                    extra={"request_id": ids.get("request-id") or ids.get("x-ms-request-id") or ""})
        return resp

    return middleware


def host_classifier(hosts: dict[str, str]) -> Callable[[str], str]:
    """"host:port" -> service name (case-insensitive); anything else is "other"."""
    table = {h.lower(): s for h, s in hosts.items() if h}

    def classify(host: str) -> str:
        return table.get(host.lower(), "other")

    return classify

