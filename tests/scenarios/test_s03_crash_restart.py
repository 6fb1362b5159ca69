"""Issue 2, scenario 3: `kill -9` in the middle of a burst, then a restart on the same SQLite file.

Nothing the sender saw acknowledged (2xx) is lost, every event ends DONE with its card (or in a digest), no step
that had completed runs again, and the only duplicates in Teams are posts that completed just before the kill
(README, "Delivery guarantees": Teams accepted the post, the store had not recorded it yet).

The event lease is 600 s, far longer than the test may take: the restarted process must take back what its killed
predecessor had leased at once (it retires the dead instance: same host, pid gone), not when the leases expire.
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
LEASE = 600.0  # seconds; waiting for the killed worker's leases to expire would fail every deadline below
FIRST_CARD_WITHIN = 10.0  # seconds after the restarted service answers
ALL_DONE_WITHIN = 150.0  # seconds after the restart: far below LEASE


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
            leased_at_kill = [r for r in at_kill if r.status is EventStatus.PROCESSING]
            assert done_at_kill < BURST, "the burst was over before the kill: nothing was tested"
            assert leased_at_kill, "nothing was leased at the kill: nothing was tested"
            cards_at_kill = len(await posted_messages(admin, sandbox))

            second.start()
            await second.wait_ready()
            restarted = time.monotonic()

            async def a_new_card() -> bool:
                return len(await posted_messages(admin, sandbox)) > cards_at_kill

            await until(a_new_card, FIRST_CARD_WITHIN, interval=0.1, what="the first card after the restart")
            first_card = time.monotonic() - restarted
            payloads = (await burst)["events"]
            # Deliveries that failed while the connector was down went to F&O's error log: resend them, as an admin
            # would, so that all of the burst must end up in the store.
            errors = [e for e in await admin.get(f"{sandbox.sender}/errors") if e["endpoint_id"] == conn.endpoint_id]
            for e in errors:
                await admin.post(f"{sandbox.sender}/errors/{e['id']}/resend")
            records = await wait_finished(store, payloads, ALL_DONE_WITHIN - (time.monotonic() - restarted),
                                          what=f"every event of the burst within {ALL_DONE_WITHIN:.0f} s of the "
                                               "restart "
                                               f"(the killed process's leases last {LEASE:.0f} s)")
            finished = time.monotonic()
            for r in leased_at_kill:  # released by the restart, not by lease expiry
                history = await store.history(r.id)
                assert steps(history, "recover", "released"), (r.id, [(h.step, h.outcome) for h in history])

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
            print(f"\ncrash/restart: {BURST} events, killed after {killed - started:.1f} s with {done_at_kill} done "
                  f"and {len(in_delivery)} in delivery ({len(leased_at_kill)} leased); first card {first_card:.1f} s "
                  f"after the restart; {len(errors)} deliveries resent; all done "
                  f"{finished - killed:.1f} s after the kill; {len(messages)} Teams messages "
                  f"({len(digests)} recorded digests); "
                  f"duplicate posts: {len(duplicates)}")
            assert len(duplicates) <= len(in_delivery), (duplicates, len(in_delivery))
            per_channel: dict[str, int] = {}
            for activity_id in duplicates:
                channel = messages[activity_id].get("channel", "?")
                per_channel[channel] = per_channel.get(channel, 0) + 1
            assert all(n <= 1 for n in per_channel.values()), per_channel
        finally:
            first.kill()
            try:
                await disconnect(admin, sandbox, conn)
            finally:
                second.stop()
                await reset_sandbox(admin, sandbox)
