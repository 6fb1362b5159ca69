"""SQLite specifics: durability settings, persistence, several processes on one file, unavailability, group commit."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import connector.store._sqlite_ops as sqlite_module
import connector.store._sqlite_schema as schema_module
from connector.store.base import (
    Approval,
    AuditEntry,
    EnqueueResult,
    EventStatus,
    Install,
    LeaseLost,
    PostedCard,
    StoreError,
    StoreInsecure,
    StoreUnavailable,
    UserMapping,
)
from connector.store.sqlite import SCHEMA_VERSION, SQLiteStore

from .conftest import make_event

T0 = 1_000_000.0


@pytest.fixture
async def store(tmp_path: Path):
    impl = SQLiteStore(tmp_path / "store.db", busy_timeout=0.2)
    await impl.open()
    yield impl
    await impl.close()


async def test_durability_settings(store: SQLiteStore) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple:
        return tuple(conn.execute(f"PRAGMA {name}").fetchone()[0] for name in
                     ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "user_version"))

    assert await store._db.call(pragmas) == ("wal", 2, 1, 200, SCHEMA_VERSION)  # synchronous 2 = FULL


async def test_events_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SQLiteStore(path)
    await first.open()
    _, event_id = await first.enqueue(make_event(1), first_stage="enrich", now=T0)
    await first.put_secret("s", b"\x01\x02", "k1", now=T0)
    await first.close()

    again = SQLiteStore(path)
    await again.open()
    try:
        assert (await again.get_event(event_id)).payload["PurchaseOrderNumber"] == "PO-00001"
        assert (await again.enqueue(make_event(1), first_stage="enrich", now=T0))[0] is EnqueueResult.DUPLICATE
        assert (await again.get_secret("s")).ciphertext == b"\x01\x02"
    finally:
        await again.close()


async def test_another_process_sees_an_acknowledged_event(store: SQLiteStore) -> None:
    """Once enqueue returned, the event is committed: a separate process reads it without our help."""
    _, event_id = await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    code = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT id FROM events').fetchone()[0])"
    out = subprocess.run([sys.executable, "-c", code, store.path], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == event_id, out.stderr


async def test_two_stores_on_one_file_never_share_a_claim(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path, busy_timeout=10), SQLiteStore(path, busy_timeout=10)
    await a.open()
    await b.open()
    try:
        await asyncio.gather(*(a.enqueue(make_event(n), first_stage="enrich", now=T0) for n in range(60)))
        claims = await asyncio.gather(
            *(s.claim(f"{name}{i}", now=T0, lease_seconds=60) for i in range(40) for name, s in (("a", a), ("b", b)))
        )
        taken = [c.event.id for c in claims if c is not None]
        assert len(taken) == 60 and len(set(taken)) == 60
        assert (await b.enqueue(make_event(3), first_stage="enrich", now=T0))[0] is EnqueueResult.DUPLICATE
        assert (await a.count_by_status())[EventStatus.PROCESSING] == 60
    finally:
        await a.close()
        await b.close()


async def test_locked_beyond_the_busy_timeout_is_unavailable(store: SQLiteStore) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.enqueue(make_event(1), first_stage="enrich", now=T0)
        other.execute("ROLLBACK")
        assert (await store.enqueue(make_event(1), first_stage="enrich", now=T0))[0] is EnqueueResult.NEW
    finally:
        other.close()


async def test_disk_full_is_unavailable_and_the_store_recovers(store: SQLiteStore) -> None:
    pages = await store._db.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await store._db.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    big = {"blob": "x" * 20_000}
    with pytest.raises(StoreUnavailable, match="full"):
        await store.enqueue(make_event(1, **big), first_stage="enrich", now=T0)
    assert await store.list_events() == []  # rolled back
    await store._db.call(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    assert (await store.enqueue(make_event(1, **big), first_stage="enrich", now=T0))[0] is EnqueueResult.NEW


async def test_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    missing = SQLiteStore(tmp_path / "no-such-dir" / "store.db")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        await missing.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await missing.enqueue(make_event(1), first_stage="enrich", now=T0)
    await missing.close()


async def test_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    path.chmod(0o600)
    with pytest.raises(StoreUnavailable):
        await SQLiteStore(path).open()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    path.chmod(0o600)
    with pytest.raises(StoreUnavailable, match="schema version"):
        await SQLiteStore(path).open()


async def test_closed_store_refuses_calls(store: SQLiteStore) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.get_event("x")
    await store.close()  # idempotent


async def test_memory_database(tmp_path: Path) -> None:
    mem = SQLiteStore(":memory:")
    await mem.open()
    try:
        assert (await mem.enqueue(make_event(1), first_stage="enrich", now=T0))[0] is EnqueueResult.NEW
        assert (await mem.enqueue(make_event(1), first_stage="enrich", now=T0))[0] is EnqueueResult.DUPLICATE
    finally:
        await mem.close()


# --- group commit ---------------------------------------------------------------------------------------------------
async def test_concurrent_enqueues_share_transactions(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = sqlite_module.enqueue_batch

    def counting(conn, items):
        sizes.append(len(items))
        return real(conn, items)

    monkeypatch.setattr(sqlite_module, "enqueue_batch", counting)
    answers = await asyncio.gather(*(store.enqueue(make_event(n), first_stage="enrich", now=T0) for n in range(300)))
    assert all(a[0] is EnqueueResult.NEW for a in answers)
    assert sum(sizes) == 300
    assert len(sizes) < 300 and max(sizes) > 1, sizes


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL each SQLiteStore opened in the test runs (expanded), as its connection's trace callback sees it."""
    seen: list[str] = []
    real_connect = SQLiteStore._connect

    def traced(self: SQLiteStore) -> sqlite3.Connection:
        conn = real_connect(self)
        # The callback also fires for each trigger step, with the text of the statement that fired the trigger.
        conn.set_trace_callback(lambda sql: seen and seen[-1] == sql or seen.append(sql))
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", traced)
    return seen


async def test_a_batch_of_enqueues_is_four_statements_whatever_its_size(tmp_path: Path, statements: list[str]
                                                                          ) -> None:
    # The sqlite3 module lets go of the GIL around every statement step and the database thread must win it back
    # from the busy event loop each time: statements per event, not per batch, made group commit slow under load.
    impl = SQLiteStore(tmp_path / "store.db")
    await impl.open()
    try:
        statements.clear()
        answers = await asyncio.gather(*(impl.enqueue(make_event(n), first_stage="enrich", now=T0)
                                         for n in range(16)))
    finally:
        await impl.close()
    assert all(a[0] is EnqueueResult.NEW for a in answers)
    writes = [s.split(" (")[0] for s in statements if not s.startswith("PRAGMA")]
    assert writes == ["BEGIN IMMEDIATE", "INSERT INTO events", "INSERT INTO event_history", "COMMIT"], writes


async def test_a_pipeline_write_alone_in_its_transaction_needs_no_savepoint(tmp_path: Path, statements: list[str]
                                                                          ) -> None:
    # Every statement costs the database thread a GIL hand-off: a write alone in its transaction (the usual case
    # on a quiet service) is rolled back with the transaction, so it needs no SAVEPOINT / RELEASE of its own.
    impl = SQLiteStore(tmp_path / "store.db")
    await impl.open()
    try:
        await impl.enqueue(make_event(1), first_stage="enrich", now=T0)
        claim = await impl.claim("w", now=T0, lease_seconds=60)
        assert claim is not None
        statements.clear()
        await impl.finish(claim, step="enrich", detail="", data={"a": 1}, now=T0 + 1)
        lost = await impl.claim_batch("w", now=T0 + 2, lease_seconds=60, limit=4)
        assert lost == []
        with pytest.raises(LeaseLost):  # refused alone: its caller gets the error, nothing of it is kept
            await impl.finish(claim, step="enrich", detail="", data={"b": 2}, now=T0 + 3)
        record = await impl.get_event(claim.event.id)
    finally:
        await impl.close()
    assert not [s for s in statements if "SAVEPOINT" in s or s.startswith("RELEASE")], statements
    # the step's and the end's history rows in one statement
    (history,) = [s for s in statements if s.startswith("INSERT INTO event_history")]
    assert history.count("), (") == 1, history
    assert record is not None and record.status is EventStatus.DONE and record.data == {"a": 1}


async def test_duplicates_in_and_out_of_a_batch_answer_as_one_by_one(store: SQLiteStore) -> None:
    stored = await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    batch = [make_event(1), make_event(2), make_event(2), make_event(3, ignore=True), make_event(4)]
    answers = await asyncio.gather(*(store.enqueue(e, first_stage="enrich", now=T0 + 1) for e in batch))
    assert [a[0] for a in answers] == [EnqueueResult.DUPLICATE, EnqueueResult.NEW, EnqueueResult.DUPLICATE,
                                       EnqueueResult.NEW, EnqueueResult.NEW]
    assert answers[0][1] == stored[1] and answers[2][1] == answers[1][1]
    assert [(h.step, h.outcome, h.detail) for h in await store.history(stored[1])] == [
        ("received", "ok", ""), ("received", "duplicate", "event id evt-1")]
    assert [(h.step, h.outcome) for h in await store.history(answers[1][1])] == [
        ("received", "ok"), ("received", "duplicate")]
    assert [h.outcome for h in await store.history(answers[3][1])] == ["ignored"]
    counts = await store.count_by_status()
    assert (counts[EventStatus.QUEUED], counts[EventStatus.IGNORED]) == (3, 1)
    claims = await store.claim_batch("w", now=T0 + 2, lease_seconds=30, limit=10)
    assert [c.event.control_number for c in claims] == [1, 2, 4]  # received order kept


async def test_one_bad_event_does_not_fail_its_batch(store: SQLiteStore) -> None:
    events = [make_event(n) for n in range(20)]
    events[7] = make_event(7, bad=object())  # not JSON
    answers = await asyncio.gather(
        *(store.enqueue(e, first_stage="enrich", now=T0) for e in events), return_exceptions=True
    )
    assert isinstance(answers[7], TypeError)
    assert all(a[0] is EnqueueResult.NEW for i, a in enumerate(answers) if i != 7)
    assert (await store.count_by_status())[EventStatus.QUEUED] == 19


async def test_constraint_failure_in_a_batch_only_fails_its_event(store: SQLiteStore) -> None:
    # A constraint only event 3 breaks, enforced by the database itself (whatever statements enqueue uses).
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("CREATE TRIGGER refuse_three BEFORE INSERT ON events WHEN NEW.control_number = 3 "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    other.close()
    answers = await asyncio.gather(
        *(store.enqueue(make_event(n), first_stage="enrich", now=T0) for n in range(10)), return_exceptions=True
    )
    assert isinstance(answers[3], StoreError) and not isinstance(answers[3], StoreUnavailable)
    assert sum(1 for a in answers if isinstance(a, tuple) and a[0] is EnqueueResult.NEW) == 9
    assert (await store.count_by_status())[EventStatus.QUEUED] == 9


async def test_cancelled_caller_does_not_break_the_thread(store: SQLiteStore) -> None:
    task = asyncio.create_task(store.enqueue(make_event(1), first_stage="enrich", now=T0))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    answer = await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    assert answer[0] in (EnqueueResult.NEW, EnqueueResult.DUPLICATE)


async def test_waiting_for_the_database_does_not_block_the_event_loop(store: SQLiteStore) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the store's write will wait up to its busy timeout (0.2 s)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(StoreUnavailable):
            await store.enqueue(make_event(1), first_stage="enrich", now=T0)
        assert ticks >= 5  # the loop kept running while the database thread waited
    finally:
        task.cancel()
        other.execute("ROLLBACK")
        other.close()


# --- approvals: schema version 2 ------------------------------------------------------------------------------------
def _approval(work_item_id: str = "WI-1", **kw: object) -> Approval:
    return Approval(
        environment="contoso-prod", work_item_id=work_item_id, event_id="evt-1", outcomes=["Approve", "Reject"],
        next_check_at=T0 + 60, created_at=T0, updated_at=T0, **kw,  # type: ignore[arg-type]
    )


def _tables(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").fetchall()
        return dict(rows)
    finally:
        conn.close()


def test_shipped_migrations_are_never_edited() -> None:
    """A database at version n was made by MIGRATIONS[:n] as they were shipped: editing one would leave such
    databases different from new ones. Append a step instead (and pin its hash here once shipped)."""
    import hashlib
    import json

    shipped = {0: "255690c02955b302389037fc4e507d5f69acf8e3a6edd92309fdfcfb2e4ae564"}
    for index, digest in shipped.items():
        assert hashlib.sha256(json.dumps(schema_module.MIGRATIONS[index]).encode()).hexdigest() == digest, index
    assert SCHEMA_VERSION == len(schema_module.MIGRATIONS) == 6


async def test_migration_from_version_1_keeps_the_data_and_adds_approvals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v1.db"
    # The previous release: the same code, knowing only the first migration.
    with monkeypatch.context() as old:
        old.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:1])
        old.setattr(schema_module, "SCHEMA_VERSION", 1)
        v1 = SQLiteStore(path)
        await v1.open()
        _, event_id = await v1.enqueue(make_event(1), first_stage="enrich", now=T0)
        await v1.enqueue(make_event(2), first_stage="enrich", now=T0 + 1)
        claim = await v1.claim("w1", now=T0 + 2, lease_seconds=30)
        await v1.complete(claim, now=T0 + 3, detail="posted")
        await v1.put_secret("fno.client_secret", b"\x00\x01", "k1", now=T0)
        install = Install(id="team:1", scope="team", tenant_id="t", service_url="https://smba/", bot_id="28:a",
                          channels={"19:a@thread.tacv2": "General"}, installed_at=T0, updated_at=T0)
        await v1.upsert_install(install)
        card = PostedCard(event_id=event_id, route="po", conversation_id="c1", activity_id="a1",
                          service_url="https://smba/", kind="thread", thread_key="usmf/PO-1", channel_id="19:a",
                          posted_at=T0)
        assert await v1.record_card(card)
        before = (await v1.list_events(limit=10), await v1.history(event_id))
        await v1.close()
    assert "approvals" not in _tables(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()

    new = SQLiteStore(path)
    await new.open()
    try:
        assert await new._db.call(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        # the old data, untouched
        assert (await new.list_events(limit=10), await new.history(event_id)) == before
        assert (await new.get_event(event_id)).status is EventStatus.DONE
        assert (await new.enqueue(make_event(1), first_stage="enrich", now=T0))[0] is EnqueueResult.DUPLICATE
        assert (await new.get_secret("fno.client_secret")).ciphertext == b"\x00\x01"
        assert await new.get_install("team:1") == install
        assert await new.cards_for_event(event_id) == [card]
        assert (await new.claim("w2", now=T0 + 10, lease_seconds=30)).event.control_number == 2
        # the new tables, working
        await new.upsert_approval(_approval())
        assert await new.transition_approval(
            "contoso-prod", "WI-1", from_status=("pending",), changes={"status": "submitting"}
        ) is not None
        await new.append_audit(AuditEntry(at=T0, environment="contoso-prod", work_item_id="WI-1", action="press"))
        await new.put_user_mapping(UserMapping("contoso-prod", "Alex", "oid", "a@x", "Alex", T0))
        assert (await new.get_user_mapping("contoso-prod", "ALEX")).object_id == "oid"
    finally:
        await new.close()

    # a migrated database has exactly the schema of a new one
    fresh = SQLiteStore(tmp_path / "fresh.db")
    await fresh.open()
    await fresh.close()
    assert _tables(path) == _tables(tmp_path / "fresh.db")
    assert {"approvals", "audit", "user_mappings"} <= set(_tables(path))


async def test_a_failed_migration_leaves_version_1_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v1.db"
    with monkeypatch.context() as old:
        old.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:1])
        old.setattr(schema_module, "SCHEMA_VERSION", 1)
        v1 = SQLiteStore(path)
        await v1.open()
        _, event_id = await v1.enqueue(make_event(1), first_stage="enrich", now=T0)
        await v1.close()
    broken = [*schema_module.MIGRATIONS[:1], [*schema_module.MIGRATIONS[1], "CREATE TABLE events (x)"]]
    with monkeypatch.context() as bad:
        bad.setattr(schema_module, "MIGRATIONS", broken)
        with pytest.raises(StoreUnavailable):
            await SQLiteStore(path).open()
    assert "approvals" not in _tables(path)  # all of the step or none of it
    again = SQLiteStore(path)
    await again.open()
    try:
        assert (await again.get_event(event_id)).control_number == 1
        assert await again.get_approval("contoso-prod", "WI-1") is None
    finally:
        await again.close()


async def test_approvals_audit_and_mappings_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = SQLiteStore(path)
    await first.open()
    await first.upsert_approval(_approval())
    decided = await first.transition_approval(
        "contoso-prod", "WI-1", from_status=("pending",), changes={"status": "decided", "outcome": "Approve"}
    )
    entry = AuditEntry(at=T0, environment="contoso-prod", work_item_id="WI-1", action="completed", detail="200")
    await first.append_audit(entry)
    mapping = UserMapping("contoso-prod", "Alex", None, None, None, T0 + 5, source="config")
    await first.put_user_mapping(mapping)
    await first.close()

    again = SQLiteStore(path)
    await again.open()
    try:
        assert await again.get_approval("contoso-prod", "WI-1") == decided
        assert await again.list_audit() == [entry]
        assert await again.get_user_mapping("contoso-prod", "alex") == mapping
        assert await again.transition_approval(
            "contoso-prod", "WI-1", from_status=("pending",), changes={"status": "submitting"}
        ) is None  # the decision persisted: a press after a restart is still refused
    finally:
        await again.close()


async def test_two_stores_on_one_file_make_one_decision(tmp_path: Path) -> None:
    """Two connections (as two processes would have), each on its own thread: the WHERE under the write lock
    still lets exactly one of the twenty presses through."""
    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path, busy_timeout=10), SQLiteStore(path, busy_timeout=10)
    await a.open()
    await b.open()
    try:
        for n in range(5):
            await a.upsert_approval(_approval(f"WI-{n}"))
        presses = [
            s.transition_approval("contoso-prod", f"WI-{n}", from_status=("pending",),
                                  changes={"status": "submitting", "outcome": f"{name}{i}"})
            for n in range(5) for i in range(10) for name, s in (("a", a), ("b", b))
        ]
        answers = await asyncio.gather(*presses)
        winners = [x for x in answers if x is not None]
        assert sorted(w.work_item_id for w in winners) == [f"WI-{n}" for n in range(5)]
        for w in winners:
            assert await b.get_approval("contoso-prod", w.work_item_id) == w
    finally:
        await a.close()
        await b.close()


async def test_transition_locked_beyond_the_busy_timeout_is_unavailable(store: SQLiteStore) -> None:
    await store.upsert_approval(_approval())
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.transition_approval(
                "contoso-prod", "WI-1", from_status=("pending",), changes={"status": "submitting"}
            )
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.append_audit(AuditEntry(at=T0, environment="e", work_item_id="w", action="press"))
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert (await store.get_approval("contoso-prod", "WI-1")).status == "pending"  # the refused one changed nothing


async def test_unjsonable_outcomes_are_refused_and_change_nothing(store: SQLiteStore) -> None:
    with pytest.raises(TypeError):
        await store.upsert_approval(_approval(outcomes=[object()]))
    with pytest.raises(TypeError):
        await store.transition_approval(
            "contoso-prod", "WI-1", from_status=("pending",), changes={"outcomes": [object()]}
        )
    assert await store.get_approval("contoso-prod", "WI-1") is None


# --- data at rest: the database and its companions are the owner's alone ------------------------------------------
def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_a_new_database_and_its_wal_and_shm_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    old = os.umask(0o022)  # the usual umask: files come out 0644 unless made otherwise
    try:
        s = SQLiteStore(path)
        await s.open()
        await s.enqueue(make_event(1), first_stage="enrich", now=T0)
        try:
            files = {p.name: _mode(p) for p in tmp_path.iterdir()}
            assert {"new.db", "new.db-wal", "new.db-shm"} <= set(files)
            assert files == {name: 0o600 for name in files}, files
        finally:
            await s.close()
    finally:
        os.umask(old)


@pytest.mark.parametrize("name,mode", [("x.db", 0o644), ("x.db", 0o640), ("x.db", 0o604), ("x.db-wal", 0o644),
                                       ("x.db-shm", 0o660)])
async def test_a_database_others_can_read_is_refused_with_the_command_that_fixes_it(
    tmp_path: Path, name: str, mode: int
) -> None:
    path = tmp_path / "x.db"
    s = SQLiteStore(path)
    await s.open()
    await s.enqueue(make_event(1), first_stage="enrich", now=T0)
    (tmp_path / "x.db-wal").touch()  # as a process that still has it open would leave it
    (tmp_path / "x.db-shm").touch()
    os.chmod(tmp_path / name, mode)
    opened_elsewhere = SQLiteStore(path)
    with pytest.raises(StoreInsecure) as refused:
        await opened_elsewhere.open()
    message = str(refused.value)
    assert "\n" not in message and f"{tmp_path / name} has mode {mode:04o}" in message
    assert f"run `chmod 600 {tmp_path / name}`" in message
    os.chmod(tmp_path / name, 0o600)  # what the message says to do
    again = SQLiteStore(path)
    await again.open()
    assert len(await again.list_events()) == 1
    await again.close()
    await s.close()


async def test_migration_from_version_4_keeps_the_cards_and_adds_the_reply_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v4.db"
    with monkeypatch.context() as old:
        old.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:4])
        old.setattr(schema_module, "SCHEMA_VERSION", 4)
        v4 = SQLiteStore(path)
        await v4.open()
        card = PostedCard(event_id="e1", route="po", conversation_id="c1", activity_id="a1",
                          service_url="https://smba/", kind="thread", posted_at=T0)
        assert await v4.record_card(card)
        await v4.close()
    assert "graph_subscriptions" not in _tables(path)
    new = SQLiteStore(path)
    await new.open()
    try:
        assert {"graph_subscriptions", "inbound_replies"} <= set(_tables(path))
        assert await new.find_cards_by_activity("a1") == [card]
    finally:
        await new.close()
