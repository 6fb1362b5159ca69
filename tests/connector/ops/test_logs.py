"""Logs an operator can follow: the event's ids on every line written while it is processed, retries and parks at
WARNING with the reason and the wait, an access log without the events URL's token, and Microsoft's request ids on
failed outbound calls."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from connector.app import JsonFormatter
from connector.ops import logctx
from connector.ops.metrics import Metrics
from connector.ops.outbound import host_classifier, outbound_middleware
from connector.ops.upstreams import Upstreams
from connector.pipeline import Park, Pipeline, RetryLater, RetryPolicy, StageOutcome
from connector.store import NewEvent
from connector.store.sqlite import SQLiteStore

T0 = 1_000_000.0


@pytest.fixture
def json_lines():
    """The root logger writing JSON (as `[logging] format = "json"` configures it) into a buffer."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(logctx.ContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_every_line_about_an_event_carries_its_ids_and_a_retry_is_a_warning_with_its_wait(
        tmp_path: Path, json_lines) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    now = [T0]
    try:
        await store.enqueue(NewEvent("contoso-prod", "PurchaseOrderConfirmedBusinessEvent", 42, "evt-42", "usmf",
                                     {"ControlNumber": 42}), first_stage="enrich", now=T0)

        async def enrich(ev):
            logging.getLogger("connector.stages").info("fetching the order")
            raise RetryLater("F&O answered 503", retry_after=30)

        p = Pipeline(store, {"enrich": enrich}, clock=lambda: now[0], rng=lambda: 0.0,
                     policy=RetryPolicy(max_attempts=5))
        assert await p.run_once()
    finally:
        await store.close()
    lines = json_lines()
    mine = [line for line in lines if line["logger"] in ("connector.stages", "connector.pipeline")]
    assert mine, lines
    for line in mine:
        assert line["environment"] == "contoso-prod"
        assert line["business_event_id"] == "PurchaseOrderConfirmedBusinessEvent"
        assert line["control_number"] == 42 and line["event_id"]
    (retry,) = [line for line in mine if line["level"] == "WARNING"]
    assert "F&O answered 503" in retry["message"] and "retrying in 30.0 s" in retry["message"]
    assert logctx.current() == {}  # nothing leaks out of the event's task


async def test_a_park_is_a_warning_with_its_reason(tmp_path: Path, caplog) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.enqueue(NewEvent("e", "T", 1, "evt-1", None, {}), first_stage="deliver", now=T0)

        async def deliver(ev):
            raise Park("no route matches")

        metrics = Metrics()
        with caplog.at_level(logging.WARNING, logger="connector.pipeline"):
            await Pipeline(store, {"deliver": deliver}, clock=lambda: T0, observer=metrics).run_once()
    finally:
        await store.close()
    assert any(r.levelno == logging.WARNING and "no route matches" in r.getMessage() for r in caplog.records)
    assert b'ml_connector_events_parked_total{stage="deliver"} 1.0' in metrics.render()


async def test_stage_latency_is_measured(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.enqueue(NewEvent("e", "T", 1, "evt-1", None, {}), first_stage="enrich", now=T0)

        async def enrich(ev):
            return StageOutcome("")

        metrics = Metrics()
        await Pipeline(store, {"enrich": enrich}, clock=lambda: T0, observer=metrics).run_once()
    finally:
        await store.close()
    assert b'ml_connector_stage_duration_seconds_count{stage="enrich"} 1.0' in metrics.render()


async def test_access_log_redacts_the_events_token_and_echoes_a_request_id(service, caplog) -> None:
    svc = await service()
    with caplog.at_level(logging.INFO, logger="connector.access"):
        async with svc.client.post(f"/api/dynamics/events/{svc.token}", json={"nope": 1},
                                   headers={"x-request-id": "case-1234"}) as r:
            assert r.status == 400
            assert r.headers["x-request-id"] == "case-1234"
        async with svc.client.get("/healthz") as r:
            assert len(r.headers["x-request-id"]) == 32  # made up when the caller sent none
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /api/dynamics/events/*** 400" in text and "GET /healthz 200" in text
    assert svc.token not in text
    assert all(svc.token not in str(r.__dict__) for r in caplog.records)
    assert any(getattr(r, "request_id", None) == "case-1234" for r in caplog.records)


async def test_outbound_calls_send_a_client_request_id_and_failures_log_microsofts_ids(caplog, json_lines) -> None:
    seen: list[str] = []

    async def busy(request: web.Request) -> web.Response:
        seen.append(request.headers.get("client-request-id", ""))
        return web.json_response({"error": {"code": "ServiceUnavailable"}}, status=503, headers={
            "request-id": "9f1c2b7e-0000-4000-8000-0000000000aa", "ms-cv": "CV1a2b3c.1", "Retry-After": "7"})

    app = web.Application()
    app.router.add_get("/data/PurchaseOrderHeadersV2", busy)
    server = aiohttp.test_utils.TestServer(app)
    await server.start_server()
    metrics, upstreams = Metrics(), Upstreams()
    hosts = {f"127.0.0.1:{server.port}": "fno", "127.0.0.1:1": "entra"}  # one host, a service per port
    middleware = outbound_middleware(host_classifier(hosts), metrics=metrics, upstreams=upstreams)
    try:
        async with aiohttp.ClientSession(middlewares=[middleware]) as http:
            with caplog.at_level(logging.WARNING, logger="connector.ops.outbound"), \
                    logctx.bound(event_id="ev-1", environment="contoso-prod"):
                async with http.get(server.make_url("/data/PurchaseOrderHeadersV2")) as r:
                    assert r.status == 503
    finally:
        await server.close()
    assert len(seen) == 1 and len(seen[0]) == 36  # a GUID, as Microsoft's client-request-id
    (line,) = [r for r in caplog.records if r.name == "connector.ops.outbound"]
    message = line.getMessage()
    assert "request-id=9f1c2b7e-0000-4000-8000-0000000000aa" in message and "ms-cv=CV1a2b3c.1" in message
    assert f"client-request-id={seen[0]}" in message and "Retry-After 7s" in message
    (as_json,) = [x for x in json_lines() if x["logger"] == "connector.ops.outbound"]
    assert as_json["event_id"] == "ev-1" and as_json["environment"] == "contoso-prod"  # the event it was for
    assert as_json["request_id"] == "9f1c2b7e-0000-4000-8000-0000000000aa"
    text = metrics.render().decode()
    assert 'ml_connector_outbound_requests_total{service="fno",status="503"} 1.0' in text
    assert 'ml_connector_outbound_retry_after_seconds_total{service="fno"} 7.0' in text
    assert upstreams.state["fno"].last_failure is not None


async def test_a_decision_job_logs_with_its_work_item_and_approval(tmp_path: Path, json_lines) -> None:
    from types import SimpleNamespace

    from connector.approvals.decide import make_decide_stage

    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.enqueue(NewEvent("contoso-prod", "ml-connector.decision", 7, "job-7", None,
                                     {"workItemId": "WI-0042"}), first_stage="decide", now=T0)
        decide = make_decide_stage(SimpleNamespace(store=store))  # type: ignore[arg-type]

        async def stage(ev):
            outcome = await decide(ev)
            logging.getLogger("connector.approvals").warning("decided: %s", outcome.detail)
            return outcome

        await Pipeline(store, {"decide": stage}, clock=lambda: T0).run_once()
    finally:
        await store.close()
    (line,) = [x for x in json_lines() if x["logger"] == "connector.approvals"]
    assert line["work_item_id"] == "WI-0042" and line["approval_id"] == "contoso-prod/WI-0042"
    assert line["environment"] == "contoso-prod"


def test_services_are_told_apart_by_host_and_port() -> None:
    """The sandbox serves F&O, Entra and Graph on 127.0.0.1: a 429 from F&O must not count as Entra's."""
    from connector.config import Settings
    from connector.ops.wiring import outbound_hosts

    settings = Settings(cloud={"name": "custom", "authority_host": "https://127.0.0.1:7001",
                               "graph_url": "https://127.0.0.1:7003/v1.0"},
                        environments=[{"name": "prod", "base_url": "https://127.0.0.1:7002"},
                                      {"name": "test", "base_url": "https://contoso-test.operations.dynamics.com"}])
    classify = host_classifier(outbound_hosts(settings))
    assert classify("127.0.0.1:7002") == "fno" and classify("127.0.0.1:7001") == "entra"
    assert classify("127.0.0.1:7003") == "graph" and classify("contoso-test.operations.dynamics.com:443") == "fno"
    assert classify("127.0.0.1:9999") == "other"


async def test_an_accepted_event_is_a_debug_access_line_and_a_refused_one_info(service, caplog) -> None:
    """F&O's bursts are the front door's volume: an accepted event is in the store, its history and /metrics, so
    its access line is DEBUG; anything refused stays INFO, where an operator looks."""
    svc = await service()
    with caplog.at_level(logging.DEBUG, logger="connector.access"):
        assert await svc.post_event(501) == 202
        assert await svc.post_event(501) == 200  # the duplicate
        assert await svc.post_event(502, token="wrong-token") == 404
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "connector.access"]
    assert [level for level, text in lines if " 202 " in text or " 200 " in text] == [logging.DEBUG, logging.DEBUG]
    assert [level for level, text in lines if " 404 " in text] == [logging.INFO]


async def test_bound_fields_last_for_the_block_and_nest_without_a_generator() -> None:
    """`bound` is what the access log wraps every request in: a plain context manager (not a @contextmanager
    generator, which was most of its cost), restoring the outer fields on exit, on error too."""
    import asyncio

    assert not hasattr(logctx.bound(request_id="r"), "gen")  # no generator machinery per request
    with logctx.bound(request_id="r1", event_id=""):
        assert logctx.current() == {"request_id": "r1"}
        try:
            with logctx.bound(event_id="e1"):
                await asyncio.sleep(0)
                assert logctx.current() == {"request_id": "r1", "event_id": "e1"}
                raise ValueError("boom")
        except ValueError:
            pass
        assert logctx.current() == {"request_id": "r1"}
    assert logctx.current() == {}


def test_client_request_ids_are_guids_made_without_a_kernel_call_each(monkeypatch) -> None:
    # os.urandom lets go of the GIL: one per outbound request handed the event loop's thread away each time.
    import os
    import uuid

    from connector.ops.outbound import ClientRequestIds

    new_id = ClientRequestIds()
    monkeypatch.setattr(os, "urandom", lambda n: (_ for _ in ()).throw(AssertionError("a kernel call per id")))
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)


async def test_outbound_failures_without_an_answer_are_counted_and_logged(caplog) -> None:
    """No answer at all: a refused connection, or the session's timeout (which cancels the request inside aiohttp)."""
    hanging = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await hanging.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/slow", never)
    server = aiohttp.test_utils.TestServer(app)
    await server.start_server()
    refused = aiohttp.test_utils.unused_port()
    metrics, upstreams = Metrics(), Upstreams()
    hosts = {f"127.0.0.1:{server.port}": "fno", f"127.0.0.1:{refused}": "graph"}
    middleware = outbound_middleware(host_classifier(hosts), metrics=metrics, upstreams=upstreams)
    try:
        async with aiohttp.ClientSession(middlewares=[middleware], timeout=aiohttp.ClientTimeout(total=0.5)) as http:
            with caplog.at_level(logging.WARNING, logger="connector.ops.outbound"):
                with pytest.raises(aiohttp.ClientConnectionError):
                    await http.get(f"http://127.0.0.1:{refused}/v1.0/subscriptions")
                with pytest.raises(asyncio.TimeoutError):
                    await http.get(server.make_url("/slow"))
    finally:
        hanging.set()
        await server.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "connector.ops.outbound"]
    assert len(messages) == 2
    assert messages[0].startswith("graph unreachable on GET /v1.0/subscriptions: ClientConnectorError")
    assert messages[1].startswith("fno unreachable on GET /slow: timed out")
    text = metrics.render().decode()
    assert 'ml_connector_outbound_requests_total{service="graph",status="error"} 1.0' in text
    assert 'ml_connector_outbound_requests_total{service="fno",status="error"} 1.0' in text
    assert upstreams.state["fno"].last_failure is not None and upstreams.state["graph"].last_failure is not None
