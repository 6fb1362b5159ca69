"""Issue 2, scenario 8: the Bot Connector answers a storm of 429s with Retry-After; every card is still posted and
no call comes earlier than Retry-After after a 429."""

from __future__ import annotations

from pathlib import Path

from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, inproc_connector, posted_messages, raise_events, wait_finished

RETRY_AFTER = 2
SKEW = 0.05


async def test_connector_429_storm_honours_retry_after(sandbox: Sandbox, workdir: Path,
                                                       leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        await admin.post(f"{sandbox.teams_admin}/reset", {"threads": True})
        await admin.post(f"{sandbox.teams_admin}/fail", {"path": "/v3/conversations", "status": 429, "count": 5,
                                                          "retry_after": RETRY_AFTER})
        # PO confirmations only: they all go to one channel (one Teams thread key), as the storm does.
        payloads = await raise_events(admin, sandbox, "confirm_po", 4)
        await wait_finished(store, payloads, 90, what="all events posted despite the 429 storm")

        records = [r for r in await store.list_events(limit=100) if r.status is not EventStatus.IGNORED]
        assert sorted(r.control_number for r in records) == sorted(p["ControlNumber"] for p in payloads)
        messages = await posted_messages(admin, sandbox)
        for r in records:
            assert r.status is EventStatus.DONE, (r.status, r.last_error)
            cards = await store.cards_for_event(r.id)
            assert cards and all(c.activity_id in messages for c in cards)

        log = (await admin.get(f"{sandbox.teams_admin}/log"))["requests"]
        calls = sorted((e for e in log if e["path"].startswith("/v3/conversations")), key=lambda e: e["seq"])
        throttled = [i for i, e in enumerate(calls) if e["status"] == 429]
        assert len(throttled) == 5, [(e["path"], e["status"]) for e in calls]
        early = []
        for i in throttled:
            if i + 1 < len(calls):
                gap = calls[i + 1]["time"] - calls[i]["time"]
                if gap < RETRY_AFTER - SKEW:
                    early.append((calls[i]["path"], calls[i + 1]["path"], round(gap, 3)))
        assert not early, f"calls earlier than Retry-After after a 429: {early}"
        assert throttled[-1] + 1 < len(calls)  # something was posted after the last 429
