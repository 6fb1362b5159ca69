"""Issue 2, scenario 5: access tokens expire mid-run (lifetime 3 s) while events keep coming for ~8 s: every event
completes with no failure, retry or 401, because the connector renews its tokens before they expire.

The sandbox's resources accept a token up to 60 s past its expiry (EntraIssuer.leeway), so a connector that kept an
expired token would not see a 401 within this test: what can fail here is the renewal count (F&O's token source
must have acquired at least 3 tokens, and Entra must have issued more than one during the run)."""

from __future__ import annotations

from pathlib import Path

from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, admin_session, inproc_connector, raise_events, wait_finished

LIFETIME = 3
EVENTS = 8


async def test_tokens_expiring_mid_run_are_renewed(sandbox: Sandbox, workdir: Path,
                                                   leak_registry: LeakRegistry) -> None:
    async with admin_session(sandbox) as admin0:
        before = await admin0.get(f"{sandbox.entra_admin}/stats")
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        # inproc_connector resets the sandbox first: set the short lifetime now, before any F&O token exists.
        await admin.post(f"{sandbox.entra_admin}/token-lifetime", {"seconds": LIFETIME})
        store, services = conn.services.store, conn.services
        fo_tokens = next(iter(services.environments.values())).odata._get_token
        start_issued = (await admin.get(f"{sandbox.entra_admin}/stats"))["issued"]
        # The sender delivers one event per second (its `delay` knob), so they arrive over ~8 s.
        await admin.post(f"{sandbox.sender}/config", {"delay": 1.0})
        payloads = await raise_events(admin, sandbox, "confirm_po", EVENTS)
        await admin.post(f"{sandbox.sender}/drain?timeout=60")
        await wait_finished(store, payloads, 60)
        after = await admin.get(f"{sandbox.entra_admin}/stats")
        fno_stats = await admin.get(f"{sandbox.fno_admin}/stats")
        teams_stats = await admin.get(f"{sandbox.teams_admin}/stats")

        records = [r for r in await store.list_events(limit=100) if r.status is not EventStatus.IGNORED]
        assert sorted(r.control_number for r in records) == sorted(p["ControlNumber"] for p in payloads)
        for r in records:
            assert r.status is EventStatus.DONE and not r.last_error, (r.status, r.last_error)
            assert await store.cards_for_event(r.id)
            history = await store.history(r.id)
            assert not [h for h in history if h.outcome in ("retry", "failed", "parked")], history
        assert "401" not in fno_stats["by_status"], fno_stats["by_status"]
        assert "401" not in teams_stats["by_status"], teams_stats["by_status"]
        # F&O's token was renewed while the events flowed (~8 s with a 3 s lifetime: at least 3 tokens) ...
        assert fo_tokens.acquisitions >= 3, fo_tokens.acquisitions
        # ... and Entra issued more than one token during the run.
        assert after["issued"] - start_issued > 1, (start_issued, after)
        assert after["issued"] > before["issued"]
