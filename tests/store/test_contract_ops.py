"""The Store contract, operations section: cheap counts for /metrics, retention (purge) and the write probe for
/readyz. Run against every implementation by the `store` fixture."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from connector.store.base import AuditEntry, EnqueueResult, EventStatus, Store, StoreError
from connector.store.sqlite import SQLiteStore

from .conftest import make_event
from .test_contract_approvals import approval

T0 = 1_000_000.0
DAY = 86_400.0


async def _enqueue(store: Store, n: int, now: float, **kw: object) -> str:
    result, event_id = await store.enqueue(make_event(n, **kw), first_stage="enrich", now=now)  # type: ignore[arg-type]
    assert result is EnqueueResult.NEW
    return event_id


async def test_oldest_pending_is_the_oldest_queued_or_processing_event(store: Store) -> None:
    assert await store.oldest_pending_at() is None
    first = await _enqueue(store, 1, T0)
    await _enqueue(store, 2, T0 + 10)
    await _enqueue(store, 3, T0 - 50, ignore=True)  # ignored: never pending
    assert await store.oldest_pending_at() == T0
    claim = await store.claim("w", now=T0 + 20, lease_seconds=60)
    assert claim is not None and claim.event.id == first
    assert await store.oldest_pending_at() == T0  # processing still counts
    await store.complete(claim, now=T0 + 21)
    assert await store.oldest_pending_at() == T0 + 10


async def test_approvals_counted_by_status(store: Store) -> None:
    assert await store.count_approvals_by_status() == {}
    await store.upsert_approval(approval("WI-1"))
    await store.upsert_approval(approval("WI-2"))
    await store.upsert_approval(approval("WI-3", status="decided"))
    assert await store.count_approvals_by_status() == {"pending": 2, "decided": 1}


async def test_recent_events_counted_by_environment_and_type(store: Store) -> None:
    await _enqueue(store, 1, T0 - 2 * DAY)
    await _enqueue(store, 2, T0)
    await _enqueue(store, 3, T0 + 5)
    await _enqueue(store, 4, T0 + 6, env="fabrikam")
    po = "PurchaseOrderConfirmedBusinessEvent"
    assert await store.count_recent(since=T0 - DAY) == [("contoso-prod", po, 2), ("fabrikam", po, 1)]


async def test_purge_removes_only_old_done_and_ignored_events(store: Store) -> None:
    done_old = await _enqueue(store, 1, T0)
    claim = await store.claim("w", now=T0, lease_seconds=60)
    assert claim is not None
    await store.complete(claim, now=T0 + 1)
    ignored_old = await _enqueue(store, 2, T0, ignore=True)
    parked_old = await _enqueue(store, 3, T0)
    claim = await store.claim("w", now=T0 + 2, lease_seconds=60)
    assert claim is not None and claim.event.id == parked_old
    await store.park(claim, reason="bad", now=T0 + 3)
    queued_old = await _enqueue(store, 4, T0)
    recent = await _enqueue(store, 5, T0 + 100 * DAY)
    claim = await store.claim("w", now=T0 + 100 * DAY, lease_seconds=60)
    assert claim is not None and claim.event.id in (queued_old, recent)

    purged = await store.purge_events(before=T0 + 90 * DAY)

    assert purged == 2
    assert await store.get_event(done_old) is None and await store.get_event(ignored_old) is None
    assert await store.history(done_old) == []
    for kept in (parked_old, queued_old, recent):
        assert await store.get_event(kept) is not None
    counts = await store.count_by_status()
    assert counts[EventStatus.DONE] == 0 and counts[EventStatus.FAILED] == 1
    assert await store.purge_events(before=T0 + 90 * DAY) == 0


async def test_purge_audit_is_separate_and_explicit(store: Store) -> None:
    await store.append_audit(AuditEntry(at=T0, environment="e", work_item_id="WI-1", action="press"))
    await store.append_audit(AuditEntry(at=T0 + 100 * DAY, environment="e", work_item_id="WI-1", action="press"))
    await _enqueue(store, 1, T0, ignore=True)
    await store.purge_events(before=T0 + 90 * DAY)
    assert len(await store.list_audit()) == 2  # purging events keeps the audit log
    assert await store.purge_audit(before=T0 + 90 * DAY) == 1
    assert [e.at for e in await store.list_audit()] == [T0 + 100 * DAY]


async def test_write_probe_succeeds_on_a_working_store(store: Store) -> None:
    await store.probe_write(now=T0)
    await store.probe_write(now=T0 + 1)


async def test_sqlite_write_probe_fails_when_writes_fail(tmp_path: Path) -> None:
    """The probe writes for real: a database that refuses writes (here: a read-only file) fails it."""
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    os.chmod(path, 0o400)
    ro = SQLiteStore(path)
    try:
        await ro.open()
    except StoreError:
        pytest.skip("this SQLite refuses to open a read-only database at all")
    try:
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        with pytest.raises(StoreError):
            await ro.probe_write(now=T0)
    finally:
        await ro.close()


async def test_sqlite_backup_is_a_complete_private_copy(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    await store.open()
    try:
        for n in range(50):
            await _enqueue(store, n, T0 + n)
        dest = tmp_path / "backup.db"
        await store.backup(dest)
        assert os.stat(dest).st_mode & 0o077 == 0
        with sqlite3.connect(dest) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 50
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with pytest.raises(StoreError, match="exists"):
            await store.backup(dest)  # never overwrites
    finally:
        await store.close()
    copy = SQLiteStore(dest)
    await copy.open()
    try:
        assert (await copy.count_by_status())[EventStatus.QUEUED] == 50
    finally:
        await copy.close()
