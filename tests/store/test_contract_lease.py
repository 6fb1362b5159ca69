"""Store.extend_lease (a heartbeat for a long stage), run against every implementation by the `store` fixture."""

from __future__ import annotations

import asyncio
import math

import pytest

from connector.store.base import Claim, EnqueueResult, EventStatus, LeaseLost, Store

from .conftest import make_event

T0 = 1_000_000.0


async def _claimed(store: Store, *, worker: str = "w1", now: float = T0, lease: float = 30.0) -> Claim:
    result, _ = await store.enqueue(make_event(1), first_stage="enrich", now=now)
    assert result is EnqueueResult.NEW
    got = await store.claim(worker, now=now, lease_seconds=lease)
    assert got is not None
    return got


async def test_extend_keeps_other_workers_out_until_the_new_expiry(store: Store) -> None:
    got = await _claimed(store, lease=30)  # expires at T0 + 30
    extended = await store.extend_lease(got, lease_seconds=60, now=T0 + 20)  # now expires at T0 + 80
    assert extended.lease_id == got.lease_id and extended.lease_expires_at == T0 + 80
    assert extended.event.lease_id == got.lease_id and extended.event.lease_expires_at == T0 + 80
    assert extended.event.status is EventStatus.PROCESSING
    assert (await store.get_event(got.event.id)).lease_expires_at == T0 + 80

    assert await store.claim("w2", now=T0 + 31, lease_seconds=30) is None  # past the original expiry
    assert await store.claim("w2", now=T0 + 79, lease_seconds=30) is None
    taken = await store.claim("w2", now=T0 + 80, lease_seconds=30)  # the new expiry
    assert taken is not None and taken.event.id == got.event.id and taken.lease_id != got.lease_id


async def test_extended_claim_still_writes(store: Store) -> None:
    got = await _claimed(store, lease=30)
    got = await store.extend_lease(got, lease_seconds=30, now=T0 + 25)
    got = await store.record_step(got, step="enrich", outcome="ok", next_stage="post", now=T0 + 40)
    got = await store.extend_lease(got, lease_seconds=30, now=T0 + 50)
    await store.complete(got, now=T0 + 70)
    event = await store.get_event(got.event.id)
    assert (event.status, event.lease_id, event.lease_expires_at) == (EventStatus.DONE, None, None)


async def test_extend_by_the_old_worker_after_another_claimed_raises_lease_lost(store: Store) -> None:
    old = await _claimed(store, worker="w1", lease=30)
    new = await store.claim("w2", now=T0 + 31, lease_seconds=30)
    assert new is not None and new.event.id == old.event.id
    with pytest.raises(LeaseLost):
        await store.extend_lease(old, lease_seconds=300, now=T0 + 32)
    event = await store.get_event(old.event.id)
    assert (event.lease_id, event.lease_expires_at) == (new.lease_id, T0 + 61)  # the new lease untouched
    assert await store.claim("w3", now=T0 + 61, lease_seconds=30) is not None  # and it still expires on time


async def test_extend_after_the_claim_ended_raises_lease_lost(store: Store) -> None:
    got = await _claimed(store)
    await store.reschedule(got, at=T0 + 100, reason="429", now=T0 + 1)
    with pytest.raises(LeaseLost):
        await store.extend_lease(got, lease_seconds=30, now=T0 + 2)
    event = await store.get_event(got.event.id)
    assert (event.status, event.lease_id, event.lease_expires_at) == (EventStatus.QUEUED, None, None)


async def test_expired_but_untaken_lease_can_be_extended(store: Store) -> None:
    got = await _claimed(store, lease=10)
    extended = await store.extend_lease(got, lease_seconds=30, now=T0 + 100)  # late, but nobody took it
    assert extended.lease_expires_at == T0 + 130
    assert await store.claim("w2", now=T0 + 129, lease_seconds=30) is None
    assert await store.claim("w2", now=T0 + 130, lease_seconds=30) is not None


async def test_extend_changes_only_the_lease(store: Store) -> None:
    got = await _claimed(store)
    got = await store.record_step(
        got, step="enrich", outcome="ok", data={"order": {"a": 1}}, next_stage="post", now=T0 + 1
    )
    await store.reschedule(got, at=T0 + 2, reason="throttled", now=T0 + 1)
    got = await store.claim("w1", now=T0 + 2, lease_seconds=30)
    assert got is not None and got.event.attempts == 1
    before = await store.get_event(got.event.id)
    history_before = await store.history(got.event.id)

    extended = await store.extend_lease(got, lease_seconds=120, now=T0 + 10)
    after = await store.get_event(got.event.id)
    for event in (extended.event, after):
        assert (event.attempts, event.stage, event.data, event.status) == (1, "post", {"order": {"a": 1}},
                                                                           EventStatus.PROCESSING)
        assert (event.last_error, event.next_attempt_at, event.payload) == (
            before.last_error, before.next_attempt_at, before.payload
        )
        assert (event.lease_id, event.lease_expires_at) == (got.lease_id, T0 + 130)
    assert await store.history(got.event.id) == history_before  # no history entry


async def test_extend_refuses_a_non_positive_lease(store: Store) -> None:
    got = await _claimed(store)
    for bad in (0, -5, math.nan):
        with pytest.raises(ValueError):
            await store.extend_lease(got, lease_seconds=bad, now=T0 + 1)
    assert (await store.get_event(got.event.id)).lease_expires_at == T0 + 30


async def test_concurrent_extends_all_succeed(store: Store) -> None:
    got = await _claimed(store, lease=30)
    results = await asyncio.gather(
        *(store.extend_lease(got, lease_seconds=60 + i, now=T0 + 10) for i in range(20))
    )
    assert all(r.lease_id == got.lease_id for r in results)
    assert sorted(r.lease_expires_at for r in results) == [T0 + 70 + i for i in range(20)]
    stored = await store.get_event(got.event.id)
    assert stored.lease_id == got.lease_id and stored.lease_expires_at in {r.lease_expires_at for r in results}
    assert [h.step for h in await store.history(got.event.id)] == ["received"]
    assert stored.attempts == 0


async def test_extend_racing_a_claim_after_expiry_has_exactly_one_winner(store: Store) -> None:
    for n in range(10):
        result, _ = await store.enqueue(make_event(100 + n), first_stage="enrich", now=T0)
        assert result is EnqueueResult.NEW
    olds = [await store.claim("old", now=T0, lease_seconds=30) for _ in range(10)]
    assert all(o is not None for o in olds)

    # All leases expired at T0 + 30. Half the claims are submitted before the heartbeat they race, so both
    # outcomes occur even on a store that serves calls in order.
    calls, where = [], []  # where[i]: (index of old i's extend, index of its rival claim) in calls
    for i, old in enumerate(olds):
        extend = store.extend_lease(old, lease_seconds=60, now=T0 + 31)
        rival = store.claim("new", now=T0 + 31, lease_seconds=30)
        calls.extend([extend, rival] if i % 2 else [rival, extend])
        where.append((len(calls) - 2, len(calls) - 1) if i % 2 else (len(calls) - 1, len(calls) - 2))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    claims = [outcomes[c] for _, c in where]
    assert all(c is None or isinstance(c, Claim) for c in claims), claims
    taken = {c.event.id: c for c in claims if c is not None}
    assert len(taken) == sum(1 for c in claims if c is not None)  # no event taken twice
    won = lost = 0
    for old, (e, _) in zip(olds, where):
        ext = outcomes[e]
        assert isinstance(ext, (Claim, LeaseLost)), ext
        stored = await store.get_event(old.event.id)
        if isinstance(ext, Claim):  # the heartbeat won: nobody else got it, and the lease is still the old one
            won += 1
            assert old.event.id not in taken
            assert (stored.lease_id, stored.lease_expires_at) == (old.lease_id, T0 + 91)
        else:  # another worker won: its lease stands, untouched by the refused heartbeat
            lost += 1
            assert old.event.id in taken
            new = taken[old.event.id]
            assert (stored.lease_id, stored.lease_expires_at) == (new.lease_id, new.lease_expires_at)
    assert won + lost == 10 and len(taken) == lost
