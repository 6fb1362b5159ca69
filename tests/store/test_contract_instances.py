"""Instances and their retirement (a dead process's event leases back to the queue at once), against every store."""

from __future__ import annotations

import dataclasses

import pytest

from connector.store.base import EventStatus, Instance, LeaseLost, Store

from .conftest import make_event

T0 = 1_000_000.0
LEASE = 600.0  # event leases far longer than anything the tests wait for


def _instance(name: str, *, host: str = "host-a", pid: int = 100, expires: float = T0 + 30) -> Instance:
    return Instance(id=name, host=host, pid=pid, pid_started="42", started_at=T0, expires_at=expires)


async def _claims(store: Store, worker: str, first: int, count: int) -> list:
    claims = []
    for n in range(first, first + count):
        await store.enqueue(make_event(n), first_stage="enrich", now=T0)
    for _ in range(count):
        got = await store.claim(worker, now=T0 + 1, lease_seconds=LEASE)
        assert got is not None
        claims.append(got)
    return claims


async def test_registered_instances_are_listed(store: Store) -> None:
    a, b = _instance("a"), _instance("b", host="host-b", pid=7)
    await store.register_instance(a)
    await store.register_instance(b)
    assert sorted(await store.list_instances(), key=lambda i: i.id) == [a, b]


async def test_retiring_releases_only_that_instances_leases_at_once(store: Store) -> None:
    dead, alive = _instance("dead"), _instance("alive", host="host-b")
    await store.register_instance(dead)
    await store.register_instance(alive)
    dead_claims = await _claims(store, "dead", 1, 3)
    alive_claims = await _claims(store, "alive", 10, 2)
    finished = await _claims(store, "dead", 20, 1)
    await store.complete(finished[0], now=T0 + 2)  # done: not the dead instance's any more

    released = await store.retire_instance(dead, reason="process 100 is gone", now=T0 + 5)

    assert released == 3
    assert [i.id for i in await store.list_instances()] == ["alive"]
    for got in dead_claims:
        event = await store.get_event(got.event.id)
        assert (event.status, event.lease_id, event.lease_expires_at) == (EventStatus.QUEUED, None, None)
        assert event.stage == "enrich" and event.attempts == 0
        last = (await store.history(got.event.id))[-1]
        assert (last.at, last.step, last.outcome) == (T0 + 5, "recover", "released")
        assert "dead" in last.detail and "process 100 is gone" in last.detail
    for got in alive_claims:  # another instance's live leases are untouched
        event = await store.get_event(got.event.id)
        assert (event.status, event.lease_id) == (EventStatus.PROCESSING, got.lease_id)
    assert (await store.get_event(finished[0].event.id)).status is EventStatus.DONE

    # Claimable now, 595 s before their event leases would have expired; the dead instance's writes are fenced off.
    retaken = {(await store.claim("new", now=T0 + 6, lease_seconds=LEASE)).event.id for _ in range(3)}
    assert retaken == {got.event.id for got in dead_claims}
    assert await store.claim("new", now=T0 + 6, lease_seconds=LEASE) is None
    with pytest.raises(LeaseLost):
        await store.complete(dead_claims[0], now=T0 + 7)


async def test_an_instance_that_heartbeated_since_it_was_read_is_not_retired(store: Store) -> None:
    seen = _instance("busy", expires=T0 + 30)
    await store.register_instance(seen)
    claims = await _claims(store, "busy", 1, 2)
    await store.heartbeat_instance("busy", expires_at=T0 + 60, now=T0 + 31)  # alive after all

    assert await store.retire_instance(seen, reason="stopped heartbeating", now=T0 + 32) is None

    assert [(i.id, i.expires_at) for i in await store.list_instances()] == [("busy", T0 + 60)]
    for got in claims:
        assert (await store.get_event(got.event.id)).lease_id == got.lease_id
    current = dataclasses.replace(seen, expires_at=T0 + 60)
    assert await store.retire_instance(current, reason="stopped heartbeating", now=T0 + 61) == 2


async def test_a_retired_instance_cannot_heartbeat_nor_be_retired_twice(store: Store) -> None:
    inst = _instance("gone")
    await store.register_instance(inst)
    assert await store.retire_instance(inst, reason="clean stop", now=T0 + 1) == 0
    with pytest.raises(LeaseLost):
        await store.heartbeat_instance("gone", expires_at=T0 + 100, now=T0 + 2)
    assert await store.retire_instance(inst, reason="again", now=T0 + 3) is None
    with pytest.raises(LeaseLost):
        await store.heartbeat_instance("never-registered", expires_at=T0 + 100, now=T0 + 2)


async def test_an_interrupted_retirement_is_finished_by_the_next(store: Store) -> None:
    # What a retirement that died after its compare-and-set leaves: the record marked (expires_at 0), leases held.
    marked = _instance("half", expires=0.0)
    await store.register_instance(marked)
    claims = await _claims(store, "half", 1, 2)
    with pytest.raises(LeaseLost):
        await store.heartbeat_instance("half", expires_at=T0 + 100, now=T0 + 2)  # no coming back from it
    assert await store.retire_instance(marked, reason="stopped heartbeating", now=T0 + 3) == 2
    assert await store.list_instances() == []
    assert {(await store.get_event(g.event.id)).status for g in claims} == {EventStatus.QUEUED}
