"""Counts per status on every store, and SQLite's counts kept by trigger: count_by_status (/metrics, the status page,
the outbox's backlog) never scans the events table, and is right through every transition, a purge and the migration
from schema 5 (perf goal 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from connector.store import _sqlite_ops as ops
from connector.store import _sqlite_schema as schema_module
from connector.store.base import EnqueueResult, EventStatus, Store
from connector.store.sqlite import SQLiteStore

from .conftest import make_event

T0 = 1_000_000.0
DAY = 86_400.0


async def enqueue(store: Store, n: int, *, now: float = T0, ignore: bool = False) -> str:
    result, event_id = await store.enqueue(make_event(n, ignore=ignore), first_stage="enrich", now=now)
    assert result is EnqueueResult.NEW
    return event_id


async def done(store: Store, n: int, at: float) -> str:
    eid = await enqueue(store, n, now=at)
    (claim,) = await store.claim_batch("w", now=at, lease_seconds=30, limit=1)
    assert claim.event.id == eid
    await store.finish(claim, step="enrich", now=at)
    return eid


async def test_counts_follow_a_purge(store: Store) -> None:
    await done(store, 1, T0)
    await done(store, 2, T0 + 10 * DAY)
    await enqueue(store, 3, now=T0, ignore=True)
    assert await store.purge_events(before=T0 + 5 * DAY) == 2
    counts = await store.count_by_status()
    assert (counts[EventStatus.DONE], counts[EventStatus.IGNORED]) == (1, 0)


async def test_counts_follow_every_transition(store: Store) -> None:
    await enqueue(store, 1)
    await enqueue(store, 2, ignore=True)
    (a,) = await store.claim_batch("w", now=T0, lease_seconds=30, limit=2)
    assert (await store.count_by_status())[EventStatus.PROCESSING] == 1  # the ignored one is never claimed
    await store.reschedule(a, at=T0 + 5, reason="later", now=T0)
    counts = await store.count_by_status()
    assert (counts[EventStatus.QUEUED], counts[EventStatus.PROCESSING], counts[EventStatus.IGNORED]) == (1, 0, 1)


# --- SQLite: counts without a scan ----------------------------------------------------------------------------
def _tables_read(conn: sqlite3.Connection, fn) -> set[str]:  # type: ignore[no-untyped-def]
    read: set[str] = set()

    def authorizer(action, arg1, _arg2, _db, _trigger):  # type: ignore[no-untyped-def]
        if action == sqlite3.SQLITE_READ:
            read.add(arg1)
        return sqlite3.SQLITE_OK

    conn.set_authorizer(authorizer)
    try:
        fn(conn)
    finally:
        conn.set_authorizer(None)
    return read


async def test_sqlite_count_by_status_never_reads_the_events_table(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    await store.open()
    try:
        for n in range(30):
            await enqueue(store, n)
        read = await store._db.call(lambda conn: _tables_read(conn, ops.count_by_status))
        assert "events" not in read
        counts = await store.count_by_status()
        assert counts[EventStatus.QUEUED] == 30
    finally:
        await store.close()


async def test_sqlite_migration_to_6_seeds_the_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v5.db"
    with monkeypatch.context() as old:
        old.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:5])
        old.setattr(schema_module, "SCHEMA_VERSION", 5)
        v4 = SQLiteStore(path)
        await v4.open()
        for n in range(3):
            await enqueue(v4, n)
        await enqueue(v4, 9, ignore=True)
        claim = await v4.claim("w", now=T0, lease_seconds=30)
        assert claim is not None
        await v4.complete(claim, now=T0)
        await v4.close()
    new = SQLiteStore(path)
    await new.open()
    try:
        counts = await new.count_by_status()
        assert (counts[EventStatus.QUEUED], counts[EventStatus.DONE], counts[EventStatus.IGNORED]) == (2, 1, 1)
        assert await new._db.call(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == 6
    finally:
        await new.close()
