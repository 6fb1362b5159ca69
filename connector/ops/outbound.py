"""Every call the shared HTTP session makes to Microsoft's services: a `client-request-id` sent, the answer counted
by service and status, 429s and their Retry-After summed, and a failure logged with Microsoft's `request-id` and
`ms-cv` so a support case can quote them.

An aiohttp TraceConfig on the session connector/app.py opens, so the adapters (dynamics/, bot/) need no change for
it. The trace runs in the caller's task, so these log lines carry the event ids bound there (connector/ops/logctx.py).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from types import SimpleNamespace
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


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def outbound_trace(classify: Callable[[str], str], *, metrics: Metrics | None, upstreams: Upstreams | None,
                   clock: Callable[[], float] = time.time) -> aiohttp.TraceConfig:
    """A TraceConfig for the shared session. `classify("host:port")` names the service ("fno", "graph", ...)."""
    trace = aiohttp.TraceConfig()
    new_id = ClientRequestIds()

    async def on_start(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                       params: aiohttp.TraceRequestStartParams) -> None:
        if "client-request-id" not in params.headers:
            params.headers["client-request-id"] = new_id()
        ctx.client_request_id = params.headers["client-request-id"]
        ctx.service = classify(f"{params.url.host or ''}:{params.url.port}")

    async def on_end(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                     params: aiohttp.TraceRequestEndParams) -> None:
        resp = params.response
        status = resp.status
        retry_after = _retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
        if metrics is not None:
            metrics.outbound_answer(ctx.service, status, retry_after)
        if status < 400:
            if upstreams is not None:
                upstreams.success(ctx.service, clock(), f"{params.method} {status}")
            return
        ids = {h: resp.headers[h] for h in CORRELATION_HEADERS if h in resp.headers}
        ids.setdefault("client-request-id", ctx.client_request_id)
        quoted = " ".join(f"{k}={v}" for k, v in ids.items())
        if upstreams is not None:
            upstreams.failure(ctx.service, clock(), f"{params.method} {params.url.path} {status} {quoted}")
        log.warning("%s answered %s to %s %s%s (%s)", ctx.service, status, params.method, params.url.path,
                    f"; Retry-After {retry_after:g}s" if retry_after else "", quoted,
                    extra={"request_id": ids.get("request-id") or ids.get("x-ms-request-id") or ""})

    async def on_exception(session: aiohttp.ClientSession, ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestExceptionParams) -> None:
        if metrics is not None:
            metrics.outbound_answer(ctx.service, "error")
        detail = f"{type(params.exception).__name__}: {params.exception}"
        if upstreams is not None:
            upstreams.failure(ctx.service, clock(), f"{params.method} {params.url.path} {detail}")
        log.warning("%s unreachable on %s %s: %s (client-request-id=%s)", ctx.service, params.method,
                    params.url.path, detail, ctx.client_request_id)

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace


def host_classifier(hosts: dict[str, str]) -> Callable[[str], str]:
    """"host:port" -> service name (case-insensitive); anything else is "other"."""
    table = {h.lower(): s for h, s in hosts.items() if h}

    def classify(host: str) -> str:
        return table.get(host.lower(), "other")

    return classify

