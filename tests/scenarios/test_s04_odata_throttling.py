"""Issue 2, scenario 4: F&O answers 429 with Retry-After; the connector never calls again sooner, and the event
completes. Two paths: the OData client sits a short Retry-After out inline (the default), or the pipeline
reschedules the event (when Retry-After is longer than max_inline_wait)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, inproc_connector, raise_events, steps, tweak, wait_finished

RETRY_AFTER = 2
SKEW = 0.05


async def _one_throttled_event(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry, change) -> tuple:
    async with inproc_connector(sandbox, workdir, leak_registry, change) as (conn, admin):
        store = conn.services.store
        await admin.post(f"{sandbox.fno_admin}/stats/reset")
        await admin.post(f"{sandbox.fno_admin}/throttle", {"count": 2, "retry_after": RETRY_AFTER})
        [payload] = await raise_events(admin, sandbox, "confirm_po", 1)
        [record] = (await wait_finished(store, [payload], 60, what="the throttled event to finish")).values()
        history = await store.history(record.id)
        stats = await admin.get(f"{sandbox.fno_admin}/stats")
        cards = await store.cards_for_event(record.id)
        return record, history, stats, cards


async def test_odata_429_is_sat_out_inline(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dynamics.odata")
    record, history, stats, cards = await _one_throttled_event(sandbox, workdir, leak_registry, None)
    assert stats["throttled"] == 2 and stats["by_status"].get("429") == 2, stats
    assert record.status is EventStatus.DONE and cards
    waits = [r for r in caplog.records if r.name == "dynamics.odata" and "OData 429" in r.getMessage()]
    assert len(waits) == 2, [r.getMessage() for r in waits]
    # The 2nd 429 is the answer to the retry of the 1st: it came no earlier than Retry-After after it...
    assert waits[1].created - waits[0].created >= RETRY_AFTER - SKEW
    # ... and the call that succeeded came no earlier than Retry-After after the 2nd.
    [enriched] = steps(history, "enrich", "ok")
    assert enriched.at - waits[1].created >= RETRY_AFTER - SKEW
    assert not steps(history, "enrich", "retry")  # sat out inline: no reschedule


async def test_odata_429_longer_than_inline_wait_reschedules(sandbox: Sandbox, workdir: Path,
                                                             leak_registry: LeakRegistry) -> None:
    def change(s):
        return tweak(s, odata={"max_inline_wait": 0.0})

    record, history, stats, cards = await _one_throttled_event(sandbox, workdir, leak_registry, change)
    assert stats["throttled"] == 2, stats
    assert record.status is EventStatus.DONE and cards
    retries = steps(history, "enrich", "retry")
    [enriched] = steps(history, "enrich", "ok")
    assert len(retries) == 2, history
    assert all("429" in r.detail for r in retries), retries
    # Each later attempt (answered by the next 429 or the success) started no earlier than Retry-After later.
    times = [r.at for r in retries] + [enriched.at]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= RETRY_AFTER - SKEW for g in gaps), gaps
