"""Issue 2, scenario 2: F&O delivers at least once; the same event delivered 3 times is stored once and posted once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from connector.store import EventStatus
from scenariokit import (LeakRegistry, Sandbox, inproc_connector, posted_messages, raise_events, steps,
                         wait_finished)


async def test_same_event_three_times_is_stored_and_posted_once(sandbox: Sandbox, workdir: Path,
                                                                leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        # 1st + 2nd delivery: the sender repeats the next event (F&O's at-least-once delivery) ...
        await admin.post(f"{sandbox.sender}/config", {"duplicate_next": 1})
        [payload] = await raise_events(admin, sandbox, "confirm_po", 1)
        await admin.post(f"{sandbox.sender}/drain")
        # ... 3rd delivery: the same payload again, straight to the events endpoint.
        async with admin.http.post(conn.events_url, json=payload) as r:
            assert r.status == 200, await r.text()  # 200 = duplicate (202 = new)
            assert (await r.json())["events"][0]["result"] == "duplicate"

        # A new event (same PO, a ControlNumber F&O has not used) posted three times at once: the store's unique
        # key decides, not a check-then-insert, so exactly one of the three is new.
        other = dict(payload, ControlNumber=payload["ControlNumber"] + 7_000_000,
                     EventId=str(uuid.uuid4()).upper())
        answers = await asyncio.gather(*(admin.http.post(conn.events_url, json=other) for _ in range(3)))
        assert sorted(a.status for a in answers) == [200, 200, 202]
        for a in answers:
            a.release()

        sender_log = await admin.get(f"{sandbox.sender}/log")
        ours = [d for d in sender_log if d["endpoint_id"] == conn.endpoint_id
                and d["control_number"] == payload["ControlNumber"]]
        assert len(ours) == 2 and all(d["delivered"] for d in ours), ours  # the sender really sent it twice

        await wait_finished(store, [payload, other], 60)
        events = [r for r in await store.list_events(limit=100) if r.status is not EventStatus.IGNORED]
        assert sorted(r.control_number for r in events) == sorted([payload["ControlNumber"], other["ControlNumber"]])
        messages = await posted_messages(admin, sandbox)
        recorded = set()
        for r in events:
            assert r.status is EventStatus.DONE, (r.status, r.last_error)
            history = await store.history(r.id)
            assert len(steps(history, "received", "ok")) == 1
            assert len(steps(history, "received", "duplicate")) == 2, history
            assert len(steps(history, "enrich", "ok")) == 1 and len(steps(history, "deliver", "ok")) == 1, history
            cards = await store.cards_for_event(r.id)
            assert len(cards) == 1, cards  # one route (purchase-orders) matches a PO confirmation
            assert cards[0].activity_id in messages, (cards[0], list(messages))
            recorded.add(cards[0].activity_id)
        # exactly one card per event in the Teams stand-in: no message that no recorded card accounts for
        assert set(messages) == recorded, messages
