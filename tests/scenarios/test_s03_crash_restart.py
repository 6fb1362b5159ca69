"""Issue 2, scenario 3: `kill -9` in the middle of a burst, then a restart on the same SQLite file.

Nothing the sender saw acknowledged (2xx) is lost, every event ends DONE with its card (or in a digest), no step
that had completed runs again, and the only duplicates in Teams are posts that completed just before the kill
(README, "Delivery guarantees": Teams accepted the post, the store had not recorded it yet).
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncio
import pytest

from connector.store import EventStatus
from scenariokit import (ConnectorProcess, LeakRegistry, Sandbox, admin_session, connect, disconnect, posted_messages,
                         prepare, reset_sandbox, steps, store_of, tweak, until, wait_finished)

pytestmark = pytest.mark.slow

BURST = 300
LEASE = 20.0  # seconds; a killed worker's events are claimed again once their lease has expired


async def test_sigkill_mid_burst_then_restart(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    def change(s):
        return tweak(s, pipeline={"lease_seconds": LEASE, "concurrency": 64})

    conn = await prepare(sandbox, workdir, leak_registry, change)
    log_path = leak_registry.log(workdir / "serve.log")
    first = ConnectorProcess(conn, log_path)
    second = ConnectorProcess(conn, log_path)
    async with admin_session(sandbox) as admin, store_of(conn) as store:
        await reset_sandbox(admin, sandbox)
        try:
            first.start()
            await first.wait_ready()
            await connect(admin, sandbox, conn)
            started = time.monotonic()
            burst = asyncio.create_task(admin.post(f"{sandbox.scenario}/burst", {"count": BURST, "concurrency": 10}))

            async def some_done() -> bool:
                counts = await store.count_by_status()
                return counts.get(EventStatus.DONE, 0) >= 30

            await until(some_done, 120, interval=0.02, what="the first 30 events to be done")
            first.kill()
            killed = time.monotonic()

            at_kill = [r for r in await store.list_events(limit=100_000) if r.status is not EventStatus.IGNORED]
            done_at_kill = sum(r.status is EventStatus.DONE for r in at_kill)
            in_delivery = [r for r in at_kill if r.stage == "deliver" and r.status is not EventStatus.DONE]
            assert done_at_kill < BURST, "the burst was over before the kill: nothing was tested"

            second.start()
            await second.wait_ready()
            payloads = (await burst)["events"]
            # Deliveries that failed while the connector was down went to F&O's error log: resend them, as an admin
            # would, so that all of the burst must end up in the store.
            errors = [e for e in await admin.get(f"{sandbox.sender}/errors") if e["endpoint_id"] == conn.endpoint_id]
            for e in errors:
                await admin.post(f"{sandbox.sender}/errors/{e['id']}/resend")
            records = await wait_finished(store, payloads, 180, what="every event of the burst after the restart")
            finished = time.monotonic()

            sender_log = await admin.get(f"{sandbox.sender}/log")
            acknowledged = {d["control_number"] for d in sender_log if d["endpoint_id"] == conn.endpoint_id
                            and d["kind"] != "test" and any(200 <= (a["status"] or 0) < 300 for a in d["attempts"])}
            assert acknowledged == {p["ControlNumber"] for p in payloads}  # after the resends, F&O saw all of them
            missing = acknowledged - set(records)
            assert not missing, f"acknowledged to F&O but not stored: {sorted(missing)}"

            messages = await posted_messages(admin, sandbox)
            recorded: set[str] = set()
            not_done, no_card, ran_twice = [], [], []
            for control, r in records.items():
                if r.status is not EventStatus.DONE:
                    not_done.append((control, r.status.value, r.last_error))
                cards = await store.cards_for_event(r.id)
                if not cards or any(c.kind not in ("thread", "reply", "digest") for c in cards):
                    no_card.append((control, cards))
                recorded.update(c.activity_id for c in cards)
                history = await store.history(r.id)
                if len(steps(history, "enrich", "ok")) > 1 or len(steps(history, "deliver", "ok")) > 1:
                    ran_twice.append((control, [(h.step, h.outcome) for h in history]))
            assert not not_done, not_done
            assert not no_card, no_card[:5]
            assert not ran_twice, ran_twice[:5]
            assert recorded <= set(messages), "a recorded card is not in Teams"
            duplicates = set(messages) - recorded  # posts Teams accepted that no recorded card accounts for
            digests = {c.activity_id for r in records.values() for c in await store.cards_for_event(r.id)
                       if c.kind == "digest"}
            print(f"\ncrash/restart: {BURST} events, killed after {killed - started:.1f} s with {done_at_kill} done and "
                  f"{len(in_delivery)} in delivery; {len(errors)} deliveries resent; all done "
                  f"{finished - killed:.1f} s after the kill; {len(messages)} Teams messages ({len(digests)} recorded digests); "
                  f"duplicate posts: {len(duplicates)}")
            assert len(duplicates) <= len(in_delivery), (duplicates, len(in_delivery))
        finally:
            first.kill()
            try:
                await disconnect(admin, sandbox, conn)
            finally:
                second.stop()
                await reset_sandbox(admin, sandbox)
