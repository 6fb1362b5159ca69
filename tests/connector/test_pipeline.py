"""The pipeline's policy on the real SQLite store: steps recorded, retries not before Retry-After, parking,
replay, resume after a lost worker, and no stage run twice once recorded."""

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from connector.pipeline import Park, Pipeline, RetryLater, RetryPolicy, StageOutcome
from connector.store import EventStatus, NewEvent
from connector.store.factory import open_store


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    await s.open()
    yield s
    await s.close()


async def add(store, n: int, clock: FakeClock) -> list[str]:
    ids = []
    for i in range(n):
        _, eid = await store.enqueue(
            NewEvent("prod", "PurchaseOrderConfirmedBusinessEvent", 5637144576 + i, f"E{i}", "usmf", {"n": i}),
            first_stage="a", now=clock(),
        )
        ids.append(eid)
    return ids


async def test_steps_recorded_and_completed(store) -> None:
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)

    async def a(ev):
        return StageOutcome("b", {"a": ev.payload["n"] + 1}, "did a")

    async def b(ev):
        assert ev.data["a"] == 1
        return StageOutcome("", {"b": True}, "did b")

    p = Pipeline(store, {"a": a, "b": b}, clock=clock)
    assert await p.run_once() is True
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.DONE and rec.data == {"a": 1, "b": True}
    steps = [(h.step, h.outcome) for h in await store.history(eid)]
    assert ("a", "ok") in steps and ("b", "ok") in steps
    assert await p.run_once() is False


async def test_retry_waits_for_retry_after_then_parks(store) -> None:
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)
    calls = []

    async def a(ev):
        calls.append(clock())
        raise RetryLater("F&O throttled", retry_after=42.0)

    p = Pipeline(store, {"a": a}, clock=clock, policy=RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=5),
                 rng=lambda: 0.0)
    assert await p.run_once()
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.QUEUED and rec.next_attempt_at >= clock() + 42.0
    clock.now += 41.0
    assert await p.run_once() is False  # not before Retry-After
    clock.now += 1.0
    assert await p.run_once()
    clock.now += 100
    assert await p.run_once()
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.FAILED and "gave up after 3 attempts" in rec.last_error
    assert len(calls) == 3


async def test_park_and_replay(store) -> None:
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)
    broken = [True]

    async def a(ev):
        if broken[0]:
            raise Park("credential rejected")
        return StageOutcome("")

    p = Pipeline(store, {"a": a}, clock=clock)
    await p.run_once()
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.FAILED and "credential rejected" in rec.last_error
    broken[0] = False
    await store.replay(eid, now=clock())
    await p.run_once()
    assert (await store.get_event(eid)).status is EventStatus.DONE


async def test_lost_worker_resumes_after_lease_without_rerunning_completed_stage(store) -> None:
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)
    runs = Counter()
    hang = asyncio.Event()
    started = asyncio.Event()

    async def a(ev):
        runs["a"] += 1
        return StageOutcome("b", {"a": 1})

    async def b_hangs(ev):
        runs["b"] += 1
        started.set()
        await hang.wait()  # the process "dies" here
        return StageOutcome("")

    dead = Pipeline(store, {"a": a, "b": b_hangs}, clock=clock, lease_seconds=30, name="dead")
    task = asyncio.create_task(dead.run_once())
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()

    async def b(ev):
        runs["b2"] += 1
        return StageOutcome("")

    alive = Pipeline(store, {"a": a, "b": b}, clock=clock, lease_seconds=30, name="alive")
    assert await alive.run_once() is False  # still leased by the dead worker
    clock.now += 31
    assert await alive.run_once() is True
    assert (await store.get_event(eid)).status is EventStatus.DONE
    assert runs == {"a": 1, "b": 1, "b2": 1}


async def test_concurrent_pipeline_processes_each_event_once(store) -> None:
    clock = FakeClock()
    ids = await add(store, 300, clock)
    seen = Counter()

    async def a(ev):
        seen[ev.id] += 1
        await asyncio.sleep(0)
        return StageOutcome("")

    p1 = Pipeline(store, {"a": a}, clock=clock, concurrency=32, poll_interval=0.05, name="one")
    p2 = Pipeline(store, {"a": a}, clock=clock, concurrency=32, poll_interval=0.05, name="two")
    await p1.start()
    await p2.start()
    try:
        for _ in range(500):
            counts = await store.count_by_status()
            if counts.get(EventStatus.DONE, 0) == 300:
                break
            await asyncio.sleep(0.02)
    finally:
        await p1.stop()
        await p2.stop()
    assert len(seen) == 300 and set(seen.values()) == {1}
    assert set(seen) == set(ids)


async def test_a_stage_that_crashes_is_retried_then_parked(store) -> None:
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)

    async def a(ev):
        return StageOutcome("b", {"a": 1})

    async def b(ev):
        raise KeyError("bug")

    p = Pipeline(store, {"a": a, "b": b}, clock=clock, policy=RetryPolicy(max_attempts=2, backoff_base=1),
                 rng=lambda: 0.0)
    assert await p.run_once()
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.QUEUED and rec.stage == "b" and "KeyError" in rec.last_error
    clock.now += 10
    assert await p.run_once()
    rec = await store.get_event(eid)
    assert rec.status is EventStatus.FAILED and "gave up after 2 attempts" in rec.last_error


async def test_a_long_stage_keeps_its_lease(store) -> None:
    """A stage that runs past lease_seconds (a post held back by Teams' limits) is not taken by another worker."""
    clock = FakeClock()
    (eid,) = await add(store, 1, clock)
    release = asyncio.Event()
    started = asyncio.Event()
    beats = []

    async def fake_sleep(seconds: float) -> None:
        beats.append(seconds)
        clock.now += seconds  # the heartbeat's timer advances the fake clock
        await asyncio.sleep(0)
        if len(beats) >= 5:
            await release.wait()

    async def slow(ev):
        started.set()
        await release.wait()
        return StageOutcome("")

    p = Pipeline(store, {"a": slow}, clock=clock, lease_seconds=30, sleep=fake_sleep, name="slow")
    task = asyncio.create_task(p.run_once())
    await asyncio.wait_for(started.wait(), 10)
    deadline = asyncio.get_running_loop().time() + 10
    while len(beats) < 5 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # the heartbeat's store writes run on the store's thread
    assert len(beats) >= 5
    assert clock.now > 1_000_000.0 + 30  # well past the original lease
    other = Pipeline(store, {"a": slow}, clock=clock, lease_seconds=30, name="other")
    assert await other.run_once() is False  # the heartbeat kept the lease
    release.set()
    await task
    assert (await store.get_event(eid)).status is EventStatus.DONE


async def test_events_are_claimed_in_batches_and_finished_in_one_write(store, monkeypatch) -> None:
    """Perf goal 3: the claimer takes as many events as it has free slots in one store call, and the last stage's
    record and the completion are one write (not record_step then complete)."""
    clock = FakeClock()
    ids = await add(store, 60, clock)
    calls: Counter[str] = Counter()
    for method in ("claim", "claim_batch", "record_step", "complete", "finish"):
        real = getattr(store, method, None)
        if real is None:
            continue

        async def counted(*args, _real=real, _name=method, **kwargs):
            result = await _real(*args, **kwargs)
            if result != []:  # an empty claim is a poll, not a transaction that claimed
                calls[_name] += 1
            return result

        monkeypatch.setattr(store, method, counted)

    async def a(ev):
        return StageOutcome("b", {"a": 1})

    async def b(ev):
        return StageOutcome("", {"b": 2})

    p = Pipeline(store, {"a": a, "b": b}, clock=clock, concurrency=64, claim_batch=16, poll_interval=0.05)
    await p.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while (await store.count_by_status()).get(EventStatus.DONE, 0) < 60:
            assert asyncio.get_running_loop().time() < deadline, "the pipeline did not finish"
            await asyncio.sleep(0.01)
    finally:
        await p.stop()
    assert calls["claim"] == 0 and 4 <= calls["claim_batch"] <= 12  # 60 events, up to 16 per claim
    assert calls["complete"] == 0 and calls["finish"] == 60 and calls["record_step"] == 60
    for eid in ids:
        rec = await store.get_event(eid)
        assert rec.status is EventStatus.DONE and rec.data == {"a": 1, "b": 2}
        assert [h.step for h in await store.history(eid)] == ["received", "a", "b", "done"]


async def test_one_lease_timer_keeps_every_event_in_flight(store) -> None:
    """Perf goal 3: the lease heartbeat is one timer for all events in flight (not a task per event); each long
    stage still keeps its lease, and the timer is gone once nothing is in flight."""
    clock = FakeClock()
    ids = await add(store, 3, clock)
    release = asyncio.Event()
    running: set[str] = set()
    beats: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        beats.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)
        if len(beats) >= 4:
            await release.wait()

    async def slow(ev):
        running.add(ev.id)
        await release.wait()
        return StageOutcome("", {"ok": True})

    async def quick(ev):
        return StageOutcome("")

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = []
    previous = loop.get_task_factory()

    def recording(loop, coro, **kw):  # type: ignore[no-untyped-def]
        task = asyncio.Task(coro, loop=loop, **kw)
        tasks.append(task)  # named by create_task after the factory returns
        return task

    loop.set_task_factory(recording)
    p = Pipeline(store, {"a": slow}, clock=clock, lease_seconds=30, sleep=fake_sleep, name="slow", concurrency=8)
    try:
        await p.start()
        deadline = loop.time() + 10
        while (len(running) < 3 or len(beats) < 4) and loop.time() < deadline:
            await asyncio.sleep(0.01)  # the extensions are store writes on the store's thread
        assert running == set(ids) and len(beats) >= 4
        assert clock.now > 1_000_000.0 + 30  # well past the first leases
        names = [t.get_name() for t in tasks]
        assert [n for n in names if n.startswith("lease-")] == []
        assert len([n for n in names if n.startswith("pipeline-leases-")]) == 1
        other = Pipeline(store, {"a": quick}, clock=clock, lease_seconds=30, name="other")
        assert await other.run_once() is False  # every lease was kept
        release.set()
        while {(await store.get_event(i)).status for i in ids} != {EventStatus.DONE} and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert {(await store.get_event(i)).status for i in ids} == {EventStatus.DONE}
        assert p._leases is None  # nothing in flight: no timer left
    finally:
        loop.set_task_factory(previous)
        await p.stop()


class _ClaimWatch:
    """The real store, with a hook run inside claim_batch (after its query) and every claim's size recorded."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store, self.sizes, self.during = store, [], None

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)

    async def claim_batch(self, worker, *, now, lease_seconds, limit):  # type: ignore[no-untyped-def]
        claims = await self.store.claim_batch(worker, now=now, lease_seconds=lease_seconds, limit=limit)
        self.sizes.append(len(claims))
        if self.during is not None:
            hook, self.during = self.during, None
            await hook()
        return claims


async def test_work_arriving_during_a_claim_is_claimed_at_once_not_at_the_next_poll(store) -> None:
    """The claimer's wake-up is cleared before it claims: an event enqueued (and announced) while a claim is running
    is taken right after it, not when the poll interval ends (here 60 s)."""
    clock = FakeClock()
    watch = _ClaimWatch(store)
    done = asyncio.Event()

    async def a(ev):
        done.set()
        return StageOutcome("")

    p = Pipeline(watch, {"a": a}, clock=clock, poll_interval=60.0, name="w")

    async def arrive() -> None:
        await add(store, 1, clock)
        p.wake()  # what the events endpoint does after the enqueue's commit

    watch.during = arrive
    await p.start()
    try:
        await asyncio.wait_for(done.wait(), 10)  # well before the 60 s poll
    finally:
        await p.stop()


async def test_after_a_short_claim_the_claimer_waits_for_work_instead_of_asking_again(store) -> None:
    """Perf goal 3: a claim that got fewer events than it asked for means nothing more is due; the claimer then
    waits for new work (or the poll) instead of making an empty claim (a store round trip) at once."""
    clock = FakeClock()
    await add(store, 3, clock)
    watch = _ClaimWatch(store)
    finished: list[str] = []

    async def a(ev):
        finished.append(ev.id)
        return StageOutcome("")

    p = Pipeline(watch, {"a": a}, clock=clock, poll_interval=60.0, name="w")
    await p.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(finished) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert len(finished) == 3
        assert watch.sizes == [3]  # one claim for the three, no empty claim after it
    finally:
        await p.stop()


async def test_a_claim_waiting_for_a_slot_shares_the_completions_commit(tmp_path: Path, monkeypatch) -> None:
    """Perf goal 3: when the pipeline is full, the slot of an event goes back as its last write is submitted, so
    the next claim joins that write's group commit: one transaction for the completion and the claim, not one each.
    Nothing is acknowledged sooner (the claimed events start after the COMMIT)."""
    import sqlite3

    from connector.store.sqlite import SQLiteStore

    statements: list[str] = []
    real_connect = SQLiteStore._connect

    def traced(self: SQLiteStore) -> sqlite3.Connection:
        conn = real_connect(self)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", traced)
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    await store.open()
    clock = FakeClock()
    finished: list[str] = []

    async def a(ev):
        finished.append(ev.id)
        return StageOutcome("")

    try:
        await add(store, 4, clock)
        statements.clear()
        p = Pipeline(store, {"a": a}, clock=clock, concurrency=1, poll_interval=60.0, name="w")
        await p.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while len(finished) < 4 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        finally:
            await p.stop()
        assert len(finished) == 4
        assert {e.status for e in await store.list_events(limit=10)} == {EventStatus.DONE}
    finally:
        await store.close()
    transactions: list[list[str]] = []
    for sql in statements:
        if sql.startswith("BEGIN"):
            transactions.append([])
        elif transactions:
            transactions[-1].append(sql)
    both = [t for t in transactions
            if any("status = 'processing', lease_id" in s for s in t) and any("'done'" in s for s in t)]
    assert len(both) >= 3, transactions  # events 2, 3 and 4 claimed in the commit that finished 1, 2 and 3
