"""InstanceRegistry on a real SQLite store: a restart takes back its dead predecessor's leases at once, a live
instance (here or on another host) keeps its own, and real process liveness (pid gone, pid reused) is told apart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.instances import InstanceRegistry, ProcessIdentity, process_alive, process_started
from connector.store import EventStatus, NewEvent
from connector.store.sqlite import SQLiteStore

T0 = 1_000_000.0
EVENT_LEASE = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "i.db")
    await s.open()
    yield s
    await s.close()


def event(n: int) -> NewEvent:
    return NewEvent("prod", "PurchaseOrderConfirmedBusinessEvent", n, f"e{n}", "usmf", {"ControlNumber": n})


async def leased_by(store, worker: str, numbers: range, now: float) -> list[str]:
    ids = []
    for n in numbers:
        await store.enqueue(event(n), first_stage="enrich", now=now)
        ids.append((await store.claim(worker, now=now, lease_seconds=EVENT_LEASE)).event.id)
    return ids


def registry(store, clock, pid: int, *, host: str = "h", alive=lambda pid, started: True) -> InstanceRegistry:
    return InstanceRegistry(store, lease_seconds=30, clock=clock, identity=ProcessIdentity(host, pid, "s"),
                            is_alive=alive)


async def test_a_restart_takes_back_its_dead_predecessors_leases_at_once(store) -> None:
    clock = Clock()
    before = registry(store, clock, pid=100)
    await before.start()
    elsewhere = registry(store, clock, pid=100, host="other-host")  # same pid, another host: not ours to judge
    await elsewhere.start()
    neighbour = registry(store, clock, pid=200)  # same host, still running
    await neighbour.start()
    dead = await leased_by(store, before.id, range(1, 4), T0)
    theirs = await leased_by(store, elsewhere.id, range(10, 12), T0)
    mine = await leased_by(store, neighbour.id, range(20, 22), T0)
    # kill -9 of pid 100: no stop(), its record still unexpired
    clock.now = T0 + 2
    after = registry(store, clock, pid=101, alive=lambda pid, started: pid != 100)
    await after.start()
    try:
        assert {(await store.get_event(i)).status for i in dead} == {EventStatus.QUEUED}
        for i in theirs + mine:
            assert (await store.get_event(i)).status is EventStatus.PROCESSING
        ids = {i.id for i in await store.list_instances()}
        assert ids == {elsewhere.id, neighbour.id, after.id}
        assert after.id not in (before.id, elsewhere.id, neighbour.id)
        got = await store.claim(after.id, now=clock.now, lease_seconds=EVENT_LEASE)
        assert got is not None and got.event.id in dead
    finally:
        for r in (after, elsewhere, neighbour):
            await r.stop()


async def test_a_lapsed_instance_is_retired_by_anyone_and_a_live_one_is_not(store) -> None:
    clock = Clock()
    quiet = registry(store, clock, pid=5, host="host-that-died")
    await quiet.start()
    quiet._task.cancel()  # its host vanished: it never heartbeats again
    leased = await leased_by(store, quiet.id, range(1, 3), T0)
    watcher = registry(store, clock, pid=6, host="another-host")
    await watcher.start()
    clock.now = T0 + 29
    assert await watcher.reap() == 0  # not lapsed yet
    clock.now = T0 + 30
    assert await watcher.reap() == 2
    assert {(await store.get_event(i)).status for i in leased} == {EventStatus.QUEUED}
    await watcher.stop()


async def test_an_instance_retired_while_stalled_registers_again_under_a_new_name(store) -> None:
    clock = Clock()
    stalled = registry(store, clock, pid=7)
    await stalled.start()
    stalled._task.cancel()
    renamed: list[str] = []
    stalled.on_renamed = renamed.append
    old = stalled.id
    clock.now = T0 + 31
    other = registry(store, clock, pid=8, host="h2")
    await other.start()  # retires the lapsed one
    assert old not in {i.id for i in await store.list_instances()}
    await stalled.heartbeat()
    assert renamed == [stalled.id] and stalled.id != old
    assert stalled.id in {i.id for i in await store.list_instances()}
    await other.stop()
    await stalled.stop()


async def test_stop_releases_what_the_pipeline_left_leased(store) -> None:
    clock = Clock()
    r = registry(store, clock, pid=9)
    await r.start()
    leased = await leased_by(store, r.id, range(1, 3), T0)
    await r.stop()
    assert await store.list_instances() == []
    assert {(await store.get_event(i)).status for i in leased} == {EventStatus.QUEUED}


def test_process_liveness_tells_exited_and_reused_pids_apart() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = process_started(child.pid)
    assert process_alive(child.pid, started)
    child.stdin.close()
    child.wait(timeout=30)
    assert not process_alive(child.pid, started)
    me = os.getpid()
    assert process_alive(me, process_started(me))
    if process_started(me):  # Linux: the same pid started at another time is another process
        assert not process_alive(me, str(int(process_started(me)) - 1))



def test_lease_owners_differ_even_where_every_main_process_is_pid_1(monkeypatch) -> None:
    """Two containers on one store both run the service as pid 1: a pid-based owner would let each take the
    other's leases (Graph subscriptions, the reply inbox) as its own."""
    from connector import instances

    monkeypatch.setattr(instances.os, "getpid", lambda: 1)
    first, second = instances.lease_owner(), instances.lease_owner()
    assert first != second
    assert first.startswith("service:") and instances.host_key() in first
    assert instances.lease_owner("cli").startswith("cli:")
