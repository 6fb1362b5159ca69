"""The approval counters (presses by outcome, card copy updates by result) and the Graph subscription gauges."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "approvals"))  # approvals_fakes: the approvals world
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "replies"))  # replies_kit: typed replies over it

from approvals_fakes import ADELE, ALEX, ENV, MEGAN, WI, execute, make_world, submit  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from replies_kit import channel_reply, replies_for, settle  # noqa: E402

from bot import CardTooLarge, TeamsNotFound, TeamsUnavailable  # noqa: E402
from cards import Catalog  # noqa: E402
from connector.approvals import Approvals, FoEnvironment  # noqa: E402
from connector.ops.metrics import Metrics  # noqa: E402
from connector.pipeline import Pipeline, RetryPolicy  # noqa: E402
from connector.store import EventStatus, GraphSubscription  # noqa: E402


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _world_with_metrics(tmp_path: Path):
    """The approvals world, its Approvals built as connector/app.py builds them: fed to a real Metrics."""
    metrics = Metrics(clock=time.time)
    w = await make_world(str(tmp_path / "approvals.db"))
    w.approvals = Approvals.build(
        store=w.store, settings=w.settings, poster=w.poster, graph=w.graph, catalog=Catalog.builtin(),
        environments={ENV: ("https://fno.example", w.workflow)}, clock=w.clock,
        fo={ENV: FoEnvironment(ENV, w.workflow, w.workflow)}, sleep=w.fake_sleep,
        on_press=metrics.approval_press, on_card_update=metrics.card_update)
    w.pipeline = Pipeline(w.store, dict(w.approvals.stages()), clock=w.clock, rng=lambda: 0.0,
                          policy=RetryPolicy(max_attempts=5))
    w.approvals.set_wake(w.pipeline.wake)
    return w, metrics


def _presses(metrics: Metrics) -> dict[str, float]:
    m = _samples(metrics.render().decode())
    return {o: m[("ml_connector_approval_presses_total", (("outcome", o),))]
            for o in ("accepted", "refused", "already", "stopped")}


def _updates(metrics: Metrics) -> dict[str, float]:
    m = _samples(metrics.render().decode())
    return {r: m[("ml_connector_teams_card_updates_total", (("result", r),))] for r in ("ok", "gone", "retry",
                                                                                      "failed")}


async def test_every_press_is_counted_by_what_it_came_to(tmp_path) -> None:
    w, metrics = await _world_with_metrics(tmp_path)
    try:
        assert _presses(metrics) == {"accepted": 0, "refused": 0, "already": 0, "stopped": 0}  # series exist at 0
        await w.work_item_event()
        await w.work_item_event("5637169400")  # a second work item, recalled in F&O before anyone decides
        w.workflow.rows["5637169400"]["Status"] = "Recalled"
        await w.service.on_submit(submit(ALEX))  # not the approver
        await w.service.on_execute(execute(ADELE, "reject"))  # not the approver either
        await w.service.on_submit(submit(MEGAN))  # wins: pending -> submitting
        await w.service.on_execute(execute(MEGAN, "reject"))  # already decided
        assert _presses(metrics) == {"accepted": 1, "refused": 2, "already": 1, "stopped": 0}

        await w.service.on_submit(submit(MEGAN, wid="5637169400"))  # accepted; F&O then says "Recalled"
        await w.run_pipeline()  # F&O's validation says it is no longer pending: closed
        assert (await w.store.get_approval(ENV, "5637169400")).status == "closed"
        await w.service.on_execute(execute(MEGAN, wid="5637169400"))  # no longer pending
        await w.service.on_execute(execute(MEGAN, "refresh"))  # a refresh is not a press
        await w.service.drain()
        assert _presses(metrics) == {"accepted": 2, "refused": 2, "already": 1, "stopped": 1}
    finally:
        await w.service.aclose()
        await w.store.close()


async def test_typed_replies_are_counted_like_button_presses(tmp_path) -> None:
    w, metrics = await _world_with_metrics(tmp_path)
    try:
        await w.work_item_event()
        replies = replies_for(w)
        await replies.feed.offer(channel_reply(ADELE, "approve"))  # not the approver
        await settle(w, replies)
        await replies.feed.offer(channel_reply(MEGAN, "reject: wrong cost centre"))
        await settle(w, replies)
        await replies.feed.offer(channel_reply(MEGAN, "approve"))  # decided a moment ago
        await settle(w, replies)
        assert (await w.store.get_approval(ENV, WI)).status == "decided"
        assert _presses(metrics) == {"accepted": 1, "refused": 1, "already": 1, "stopped": 0}
    finally:
        await w.service.aclose()
        await w.store.close()


async def test_card_copy_updates_are_counted_by_result(tmp_path) -> None:
    w, metrics = await _world_with_metrics(tmp_path)
    try:
        await w.work_item_event()  # the channel card and the 1:1 copy
        w.poster.fail_updates += [TeamsUnavailable(5.0, 503), TeamsNotFound(404, "NotFound", "gone")]
        await w.service.on_submit(submit(MEGAN))
        await w.run_pipeline()
        assert _updates(metrics) == {"ok": 0, "gone": 1, "retry": 1, "failed": 0}

        [job] = [e for e in await w.store.list_events() if e.business_event_id == "ml-connector.ApprovalDecision"]
        assert job.stage == "approval-cards" and job.status == EventStatus.QUEUED
        w.poster.fail_updates.append(CardTooLarge(413, "MessageSizeTooBig", "too big"))
        w.clock.now = job.next_attempt_at
        await w.run_pipeline()  # the retry updates both copies again
        assert _updates(metrics) == {"ok": 1, "gone": 1, "retry": 1, "failed": 1}
    finally:
        await w.service.aclose()
        await w.store.close()


def _sub(n: int, status: str, expires_at: float) -> GraphSubscription:
    return GraphSubscription(resource=f"/teams/t/channels/19:c{n}@thread.tacv2/messages", team_id="t",
                             channel_id=f"19:c{n}@thread.tacv2", status=status, subscription_id=f"sub-{n}",
                             expires_at=expires_at)


async def test_graph_subscriptions_by_status_and_the_soonest_expiry(service) -> None:
    svc = await service(metrics_cache_seconds=0)
    store = svc.services.store
    m = _samples(await (await svc.ops.get("/metrics")).text())
    assert m[("ml_connector_graph_subscriptions", (("status", "active"),))] == 0
    assert not any(name == "ml_connector_graph_subscription_expiry_seconds" for name, _ in m)  # none active

    now = time.time()
    assert await store.add_graph_subscription(_sub(1, "active", now + 3600))
    assert await store.add_graph_subscription(_sub(2, "active", now + 600))  # the soonest
    assert await store.add_graph_subscription(_sub(3, "failed", 0.0))
    assert await store.add_graph_subscription(_sub(4, "removed", now + 60))  # not active: not its expiry
    async with svc.ops.get("/metrics") as r:
        assert r.status == 200
        m = _samples(await r.text())
    assert m[("ml_connector_graph_subscriptions", (("status", "active"),))] == 2
    assert m[("ml_connector_graph_subscriptions", (("status", "failed"),))] == 1
    assert m[("ml_connector_graph_subscriptions", (("status", "removed"),))] == 1
    assert m[("ml_connector_graph_subscriptions", (("status", "new"),))] == 0
    assert 500 < m[("ml_connector_graph_subscription_expiry_seconds", ())] <= 600


async def test_graph_subscription_gauges_are_read_at_most_every_cache_period(service) -> None:
    svc = await service(metrics_cache_seconds=3600)
    await (await svc.ops.get("/metrics")).text()  # reads the store now
    assert await svc.services.store.add_graph_subscription(_sub(1, "active", time.time() + 3600))
    m = _samples(await (await svc.ops.get("/metrics")).text())
    assert m[("ml_connector_graph_subscriptions", (("status", "active"),))] == 0  # the cached values
