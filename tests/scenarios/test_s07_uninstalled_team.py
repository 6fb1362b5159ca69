"""Issue 2, scenario 7: events for a team the app was removed from are parked with a reason naming the team; after
the app is installed again, `ml-connector events replay --all-failed` posts them."""

from __future__ import annotations

from pathlib import Path

from connector.store import EventStatus
from scenariokit import (LeakRegistry, Sandbox, inproc_connector, posted_messages, raise_events, run_cli,
                         wait_finished, wait_installed)


async def test_events_for_an_uninstalled_team_are_parked_then_replayed(sandbox: Sandbox, workdir: Path,
                                                                       leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "uninstall", "team": "Procurement"})
        await wait_installed(store, "Procurement", active=False)

        payloads = await raise_events(admin, sandbox, "confirm_po", 2)
        payloads += await raise_events(admin, sandbox, "post_vendor_payment", 1)
        records = await wait_finished(store, payloads, 60, what="the events to be parked")
        for r in records.values():
            assert r.status is EventStatus.FAILED, (r.status, r.last_error)
            assert "Procurement" in (r.last_error or "") and "not installed" in r.last_error, r.last_error
            assert not await store.cards_for_event(r.id)
        assert await posted_messages(admin, sandbox) == {}

        listed = run_cli(["events", "list", "--status", "failed"], conn)
        assert listed.returncode == 0, listed.stderr
        assert all(r.id in listed.stdout for r in records.values()), listed.stdout

        await admin.post(f"{sandbox.teams_admin}/emit", {"kind": "install", "team": "Procurement"})
        await wait_installed(store, "Procurement")
        replay = run_cli(["events", "replay", "--all-failed"], conn)
        assert replay.returncode == 0, replay.stderr
        assert replay.stdout.count("re-queued") == len(payloads), replay.stdout

        records = await wait_finished(store, payloads, 60, what="the replayed events to be posted")
        messages = await posted_messages(admin, sandbox)
        for r in records.values():
            assert r.status is EventStatus.DONE, (r.status, r.last_error)
            cards = await store.cards_for_event(r.id)
            assert cards and all(c.activity_id in messages for c in cards), (cards, list(messages))
            history = [h.step for h in await store.history(r.id)]
            assert "replay" in history, history
