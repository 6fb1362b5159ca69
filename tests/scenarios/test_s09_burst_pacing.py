"""Issue 2, scenario 9: a burst of 2,000 events into one channel. Pacing keeps the connector inside Teams' limits
(zero 429s from the Teams stand-in, which enforces the published windows), the backlog goes out as digest cards,
and every event is accounted for in a card or a digest: none lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, inproc_connector, posted_messages, tweak, wait_finished

pytestmark = pytest.mark.slow

BURST = 2000


async def test_burst_of_2000_into_one_channel(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    def change(s):
        return tweak(s, bot={"digest_max": 100})

    async with inproc_connector(sandbox, workdir, leak_registry, change) as (conn, admin):
        store = conn.services.store
        started = time.monotonic()
        payloads = (await admin.post(f"{sandbox.scenario}/burst", {"count": BURST, "concurrency": 20}))["events"]
        sent = time.monotonic()
        records = await wait_finished(store, payloads, 240, what=f"the {BURST} events of the burst")
        finished = time.monotonic()

        stats = await admin.get(f"{sandbox.teams_admin}/stats")
        assert stats["status_429"] == 0 and stats["throttled"] == 0, stats
        sender_errors = [e for e in await admin.get(f"{sandbox.sender}/errors") if e["endpoint_id"] == conn.endpoint_id]
        assert not sender_errors, sender_errors[:3]
        assert len(records) == BURST  # every event of the burst is stored (wait_finished checked each one)

        messages = await posted_messages(admin, sandbox)
        kinds: dict[str, int] = {}
        carried_by: dict[str, int] = {}
        lost = []
        for control, r in records.items():
            cards = await store.cards_for_event(r.id)
            if r.status is not EventStatus.DONE or not cards or any(c.activity_id not in messages for c in cards):
                lost.append((control, r.status.value, r.last_error, cards))
            for c in cards:
                kinds[c.kind] = kinds.get(c.kind, 0) + 1
                carried_by[c.activity_id] = carried_by.get(c.activity_id, 0) + 1
        assert not lost, lost[:5]
        assert set(carried_by) == set(messages), "a Teams message that carries no recorded event, or vice versa"
        assert kinds.get("digest", 0) > 0
        print(f"\nburst: {BURST} events sent in {sent - started:.1f} s, all done {finished - started:.1f} s after the "
              f"start; {len(messages)} Teams posts ({len({a for a, n in carried_by.items() if n > 1})} digests), "
              f"cards by kind {kinds}, max posts per thread {stats['max_posts_per_thread']}, 429s: "
              f"{stats['status_429']}")
