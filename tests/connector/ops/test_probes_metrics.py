"""/metrics, /healthz and /readyz on a real service (create_app, SQLite, the secrets box)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _scrape(svc) -> dict:
    async with svc.ops.get("/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return _samples(await r.text())


async def test_metrics_count_received_duplicates_rejections_and_the_queue(service) -> None:
    svc = await service(metrics_cache_seconds=0)
    assert await svc.post_event(1) == 202
    assert await svc.post_event(1) == 200  # F&O sent it again
    assert await svc.post_event(2) == 202
    assert await svc.post_event(3, token="wrong-token") == 404
    async with svc.client.post(f"/api/dynamics/events/{svc.token}", data=b"{", headers={
            "Content-Type": "application/json"}) as r:
        assert r.status == 400

    m = await _scrape(svc)

    assert m[("ml_connector_events_received_total", (("environment", "prod"),))] == 2
    assert m[("ml_connector_events_duplicate_total", (("environment", "prod"),))] == 1
    assert m[("ml_connector_events_rejected_total", (("reason", "not_found"),))] == 1
    assert m[("ml_connector_events_rejected_total", (("reason", "invalid_event"),))] == 1
    assert m[("ml_connector_events", (("state", "queued"),))] == 2
    assert m[("ml_connector_events", (("state", "done"),))] == 0
    assert 0 <= m[("ml_connector_oldest_pending_age_seconds", ())] < 60


async def test_metrics_are_off_the_public_listener_by_default(service) -> None:
    svc = await service()
    async with svc.client.get("/metrics") as r:
        assert r.status == 404
        assert "metrics_port" in (await r.json())["detail"]


async def test_metrics_on_the_public_listener_need_the_bearer_token(service) -> None:
    svc = await service(metrics_port=0)
    async with svc.client.get("/metrics") as r:
        assert r.status == 404  # no token generated yet: nobody can read them
    await svc.box.put("ops/metrics-token", "s3cret-metrics-token")
    async with svc.client.get("/metrics") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    async with svc.client.get("/metrics", headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    async with svc.client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"}) as r:
        assert r.status == 200
        assert "ml_connector_events_received_total" in await r.text()


async def test_healthz_is_liveness_and_shows_no_data(service) -> None:
    svc = await service()
    await svc.post_event(1)
    async with svc.client.get("/healthz") as r:
        assert r.status == 200
        assert await r.json() == {"status": "ok"}


async def test_readyz_fails_with_the_failing_check_named_while_the_store_rejects_writes(service) -> None:
    svc = await service()
    async with svc.client.get("/readyz") as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["checks"]["store"] == "ok"
    await svc.services.store.close()  # every write now fails, as with a full disk
    try:
        async with svc.client.get("/readyz") as r:
            assert r.status == 503
            body = await r.json()
            assert body["status"] == "not_ready" and body["failing"] == ["store"]
            assert body["checks"]["store"] == "failing"  # no details on the public listener
        async with svc.ops.get("/readyz") as r:
            assert r.status == 503
            assert re.search(r"write probe failed", (await r.json())["checks"]["store"])
        async with svc.client.get("/healthz") as r:
            assert r.status == 200  # alive: a store outage is not a reason to restart the process
    finally:
        await svc.services.store.open()


async def test_readyz_names_an_expired_token_and_a_stopped_pipeline() -> None:
    from connector.ops.probes import ReadinessChecks
    from connector.store.sqlite import SQLiteStore

    class Src:
        scope = "https://contoso.operations.dynamics.com/.default"
        expires_at = 100.0
        acquisitions = 1
        failures = 1
        last_failure = (0.0, "invalid_client: AADSTS7000215")

    class Loop:
        def alive(self) -> bool:
            return False

    store = SQLiteStore(":memory:")
    await store.open()
    try:
        checks = ReadinessChecks(store=store, pipeline=Loop, tokens=lambda: [Src()], token_clock=lambda: 200.0)
        ready, results = await checks.run()
    finally:
        await store.close()
    assert not ready
    assert results["store"] == "ok"
    assert results["pipeline"] == "the pipeline loop is not running"
    assert "AADSTS7000215" in results[f"token:{Src.scope}"]


def test_event_counters_are_labelled_once_per_environment(monkeypatch) -> None:
    """The front door counts every event it stores; the labelled children are looked up once per environment
    (prometheus_client's labels() was most of the metrics' cost per event)."""
    from prometheus_client import Counter

    from connector.ops.metrics import Metrics

    metrics = Metrics()
    calls = []
    real = Counter.labels
    monkeypatch.setattr(Counter, "labels", lambda self, *a, **kw: (calls.append(a), real(self, *a, **kw))[1])
    for new in (True, True, False, True):
        metrics.event_stored("prod", new)
    metrics.event_stored("test", False)
    assert len(calls) == 4  # (received, duplicate) for prod, then for test
    text = metrics.render().decode()
    assert 'ml_connector_events_received_total{environment="prod"} 3.0' in text
    assert 'ml_connector_events_duplicate_total{environment="prod"} 1.0' in text
    assert 'ml_connector_events_duplicate_total{environment="test"} 1.0' in text
