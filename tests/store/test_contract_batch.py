"""Batched claims and the one-write finish (perf goal 3), on every store; and SQLite's group commit of the pipeline's
writes: many callers share one transaction, yet each keeps its own fencing and its own answer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from connector.store import _sqlite_ops as ops
from connector.store.base import EnqueueResult, EventStatus, LeaseLost, Store
from connector.store.sqlite import SQLiteStore

from .conftest import make_event

T0 = 1_000_000.0


async def enqueue(store: Store, n: int, *, now: float = T0) -> str:
    result, event_id = await store.enqueue(make_event(n), first_stage="enrich", now=now)
    assert result is EnqueueResult.NEW
    return event_id


async def test_claim_batch_takes_up_to_limit_oldest_first(store: Store) -> None:
    ids = [await enqueue(store, n, now=T0 + n) for n in range(5)]
    first = await store.claim_batch("w1", now=T0 + 10, lease_seconds=30, limit=3)
    assert [c.event.id for c in first] == ids[:3]
    assert len({c.lease_id for c in first}) == 3  # each event fenced by its own lease
    assert all(c.event.status is EventStatus.PROCESSING and c.lease_expires_at == T0 + 40 for c in first)
    rest = await store.claim_batch("w2", now=T0 + 10, lease_seconds=30, limit=10)
    assert [c.event.id for c in rest] == ids[3:]
    assert await store.claim_batch("w2", now=T0 + 10, lease_seconds=30, limit=10) == []
    # Expired leases come back, with the queued ones, oldest due first.
    again = await store.claim_batch("w3", now=T0 + 41, lease_seconds=30, limit=10)
    assert sorted(c.event.id for c in again) == sorted(ids)


async def test_claim_batch_refuses_a_limit_below_one(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.claim_batch("w1", now=T0, lease_seconds=30, limit=0)


async def test_claims_of_a_batch_are_fenced_one_by_one(store: Store) -> None:
    for n in range(2):
        await enqueue(store, n)
    a, b = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=2)
    (b2,) = await store.claim_batch("w2", now=T0 + 31, lease_seconds=30, limit=1)  # a expired first (older)
    assert b2.event.id == a.event.id
    with pytest.raises(LeaseLost):
        await store.complete(a, now=T0 + 32)
    await store.complete(b, now=T0 + 32)  # b's lease is its own: expired, but nobody took it


async def test_finish_records_the_last_step_and_completes_in_one_write(store: Store) -> None:
    eid = await enqueue(store, 1)
    (claim,) = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=1)
    claim = await store.record_step(claim, step="enrich", outcome="ok", data={"a": 1}, next_stage="deliver",
                                    now=T0 + 1)
    await store.finish(claim, step="deliver", detail="posted 1", data={"b": 2}, now=T0 + 2)
    event = await store.get_event(eid)
    assert event is not None
    assert (event.status, event.stage, event.data, event.lease_id) == (EventStatus.DONE, "", {"a": 1, "b": 2}, None)
    assert [(h.step, h.outcome, h.detail) for h in await store.history(eid)][1:] == [
        ("enrich", "ok", ""), ("deliver", "ok", "posted 1"), ("done", "ok", "")]


async def test_finish_under_a_lost_lease_changes_nothing(store: Store) -> None:
    eid = await enqueue(store, 1)
    (old,) = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=1)
    (new,) = await store.claim_batch("w2", now=T0 + 31, lease_seconds=30, limit=1)
    with pytest.raises(LeaseLost):
        await store.finish(old, step="enrich", data={"x": 1}, now=T0 + 32)
    event = await store.get_event(eid)
    assert event is not None and event.status is EventStatus.PROCESSING and event.data == {}
    assert event.lease_id == new.lease_id
    assert [h.step for h in await store.history(eid)] == ["received"]


# --- SQLite: group commit -------------------------------------------------------------------------------------
async def test_sqlite_pipeline_writes_share_one_commit_and_keep_their_own_fencing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    await store.open()
    try:
        for n in range(20):
            await enqueue(store, n)
        claims = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=20)
        assert len(claims) == 20
        # One claim lost its lease to another worker: its write must fail alone.
        stolen = claims[7]
        await store._db.call(ops.write, "UPDATE events SET lease_id = 'other' WHERE id = ?", (stolen.event.id,))

        batches: list[int] = []
        real = ops.event_writes

        def counting(conn, items):  # type: ignore[no-untyped-def]
            batches.append(len(items))
            return real(conn, items)

        monkeypatch.setattr(ops, "event_writes", counting)
        gate = threading.Event()
        # Hold the database thread so that every write below is queued before it looks (deterministic batching).
        held = asyncio.ensure_future(store._db.call(lambda _conn: gate.wait(5)))
        await asyncio.sleep(0)
        writes = [
            asyncio.ensure_future(store.finish(c, step="enrich", data={"n": i}, now=T0 + 1))
            for i, c in enumerate(claims)
        ]
        deadline = asyncio.get_running_loop().time() + 5
        # Every write queued behind the held thread: the twenty calls of this loop turn travel as one queue item.
        while store._db._queue.qsize() < 1 or store._db._pending:
            assert asyncio.get_running_loop().time() < deadline, "writes never reached the queue"
            await asyncio.sleep(0)
        gate.set()
        await held
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert batches == [20]  # one transaction, one commit for the twenty callers
        assert isinstance(results[7], LeaseLost)
        assert [r for i, r in enumerate(results) if i != 7] == [None] * 19
        done = await store.list_events(status=EventStatus.DONE, limit=100)
        assert len(done) == 19 and stolen.event.id not in {e.id for e in done}
    finally:
        await store.close()


async def test_sqlite_batched_calls_of_one_loop_turn_wake_the_thread_once(tmp_path: Path) -> None:
    """The hand-off to the database thread (perf goal 2): calls made in one turn of the event loop travel as one
    queue item, so the thread is woken (and the GIL handed over) once for all of them, not once per caller."""
    store = SQLiteStore(tmp_path / "h.db")
    await store.open()
    try:
        puts: list[object] = []
        real_queue = store._db._queue

        class CountingQueue:  # SimpleQueue's methods are read-only: wrap the queue instead
            def put(self, item: object) -> None:
                puts.append(item)
                real_queue.put(item)

            def get(self) -> object:
                return real_queue.get()

            def get_nowait(self) -> object:
                return real_queue.get_nowait()

        store._db._queue = CountingQueue()  # type: ignore[assignment]
        results = await asyncio.gather(*(store.enqueue(make_event(n), first_stage="enrich", now=T0)
                                         for n in range(50)))
        assert [r[0] for r in results] == [EnqueueResult.NEW] * 50
        assert len(puts) == 1 and len(puts[0].jobs) == 50  # type: ignore[attr-defined]
    finally:
        store._db._queue = real_queue  # type: ignore[assignment]
        await store.close()


def _statements(store: SQLiteStore, seen: list[str]) -> asyncio.Future[None]:
    """Record every SQL statement the store's connection runs from now on (on its own thread)."""
    return asyncio.ensure_future(store._db.call(lambda conn: conn.set_trace_callback(seen.append)))


async def test_sqlite_finish_updates_the_event_once_and_keeps_the_same_contents(tmp_path: Path) -> None:
    """Perf goal 3: the last step and the completion are one UPDATE of the event (not a record-step UPDATE ...
    RETURNING read back and thrown away, then a second UPDATE), and the store ends up exactly as before: data
    merged, done, both history entries in order."""
    store = SQLiteStore(tmp_path / "f.db")
    await store.open()
    try:
        await enqueue(store, 1)
        (claim,) = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=1)
        claim = await store.record_step(claim, step="enrich", outcome="ok", data={"a": 1}, next_stage="deliver",
                                        now=T0 + 1)
        seen: list[str] = []
        await _statements(store, seen)
        await store.finish(claim, step="deliver", detail="posted 1", data={"b": 2}, now=T0 + 2)
        await store._db.call(lambda conn: conn.set_trace_callback(None))
        # (SQLite's trace repeats a statement for each trigger program it runs: distinct statements are counted)
        updates = {s for s in seen if s.upper().startswith("UPDATE EVENTS ")}
        assert len(updates) == 1 and "RETURNING" not in updates.pop().upper()

        done = await store.get_event(claim.event.id)
        assert done is not None and done.status is EventStatus.DONE and done.stage == ""
        assert done.data == {"a": 1, "b": 2} and done.updated_at == T0 + 2 and done.lease_id is None
        steps = [(h.step, h.outcome, h.detail, h.at) for h in await store.history(claim.event.id)][-2:]
        assert steps == [("deliver", "ok", "posted 1", T0 + 2), ("done", "ok", "", T0 + 2)]
    finally:
        await store.close()


async def test_sqlite_a_claim_shares_the_commit_of_the_writes_waiting_with_it(tmp_path: Path) -> None:
    """Perf goal 3: a claim made as events finish (a slot freed) goes into the same transaction as those
    completions, one commit for both, and each still gets its own answer."""
    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    try:
        for n in range(3):
            await enqueue(store, n)
        (first,) = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=1)
        seen: list[str] = []
        await _statements(store, seen)
        finished, claimed = await asyncio.gather(
            store.finish(first, step="enrich", data={"n": 1}, now=T0 + 1),
            store.claim_batch("w1", now=T0 + 1, lease_seconds=30, limit=5))
        await store._db.call(lambda conn: conn.set_trace_callback(None))
        assert finished is None and len(claimed) == 2
        assert [s for s in seen if s.upper().startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
        assert (await store.get_event(first.event.id)).status is EventStatus.DONE  # type: ignore[union-attr]
        assert {(await store.get_event(c.event.id)).status for c in claimed} == {EventStatus.PROCESSING}  # type: ignore[union-attr]
    finally:
        await store.close()


# --- SQLite's commit delay: a pipeline write waits for the other events in flight to share its commit -------------
# (a delay of 60 s: a write that waits for it is still waiting when the test looks; one that must not, is not)
LONG = 60.0


async def _delayed_store(tmp_path: Path, events: int) -> tuple[SQLiteStore, list]:
    store = SQLiteStore(tmp_path / "d.db", commit_delay=LONG)
    await store.open()
    for n in range(events):
        await enqueue(store, n)
    claims = await store.claim_batch("w1", now=T0, lease_seconds=30, limit=events)
    assert len(claims) == events
    return store, claims


async def _still_waiting(task: asyncio.Task) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=0.3)
    except asyncio.TimeoutError:
        return True
    return False


async def test_sqlite_a_pipeline_write_waits_for_another_event_in_flight_and_shares_its_commit(tmp_path: Path) -> None:
    """Perf goal 3: while another leased event may still write, a completion waits (up to commit_delay) and the
    other's completion joins its transaction: one commit for both. The wait ends as soon as no leased event is left
    that is not writing, not at the end of the delay."""
    store, (first, second) = await _delayed_store(tmp_path, 2)
    try:
        seen: list[str] = []
        await _statements(store, seen)
        one = asyncio.ensure_future(store.finish(first, step="enrich", data={"n": 1}, now=T0 + 1))
        assert await _still_waiting(one)  # the second event is in flight and not writing: it may join
        await asyncio.wait_for(store.finish(second, step="enrich", data={"n": 2}, now=T0 + 1), timeout=10)
        await asyncio.wait_for(one, timeout=10)
        await store._db.call(lambda conn: conn.set_trace_callback(None))
        assert [s for s in seen if s.upper().startswith(("BEGIN", "COMMIT"))] == ["BEGIN IMMEDIATE", "COMMIT"]
        assert {(await store.get_event(c.event.id)).status for c in (first, second)} == {EventStatus.DONE}  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_sqlite_commit_delay_never_holds_an_enqueue_or_a_read(tmp_path: Path) -> None:
    """An enqueue (F&O waits for its acknowledgement) or a read arriving while a completion waits ends the wait at
    once: they run with it, without the delay."""
    store, (first, second, _third) = await _delayed_store(tmp_path, 3)
    try:
        one = asyncio.ensure_future(store.finish(first, step="enrich", now=T0 + 1))
        assert await _still_waiting(one)
        result, _ = await asyncio.wait_for(store.enqueue(make_event(99), first_stage="enrich", now=T0 + 1), timeout=10)
        assert result is EnqueueResult.NEW
        await asyncio.wait_for(one, timeout=10)

        two = asyncio.ensure_future(store.finish(second, step="enrich", now=T0 + 2))
        assert await _still_waiting(two)  # the third is still in flight
        assert await asyncio.wait_for(store.get_event(first.event.id), timeout=10) is not None
        await asyncio.wait_for(two, timeout=10)
    finally:
        await store.close()


async def test_sqlite_the_last_event_in_flight_commits_at_once(tmp_path: Path) -> None:
    """No other leased event left that could write: nothing to wait for, whatever the delay."""
    store, (only,) = await _delayed_store(tmp_path, 1)
    try:
        claim = await asyncio.wait_for(
            store.record_step(only, step="enrich", outcome="ok", next_stage="deliver", now=T0 + 1), timeout=10)
        await asyncio.wait_for(store.finish(claim, step="deliver", now=T0 + 2), timeout=10)
    finally:
        await store.close()


async def test_sqlite_an_event_whose_lease_was_lost_is_not_waited_for(tmp_path: Path) -> None:
    """A write that fails (here: the lease was taken over) lets the event go: the pipeline drops it, so the other
    event's writes no longer wait for it."""
    store, (kept, stolen) = await _delayed_store(tmp_path, 2)
    try:
        await store._db.call(ops.execute, "UPDATE events SET lease_id = 'someone-else' WHERE id = ?",
                             (stolen.event.id,))
        lost, stepped = await asyncio.wait_for(asyncio.gather(  # both writing: nobody else to wait for
            store.record_step(stolen, step="enrich", outcome="ok", next_stage="deliver", now=T0 + 1),
            store.record_step(kept, step="enrich", outcome="ok", next_stage="deliver", now=T0 + 1),
            return_exceptions=True), timeout=10)
        assert isinstance(lost, LeaseLost) and not isinstance(stepped, BaseException)
        await asyncio.wait_for(store.finish(stepped, step="deliver", now=T0 + 2), timeout=10)  # alone now: at once
    finally:
        await store.close()
