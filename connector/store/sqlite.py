"""The embedded store: one SQLite file in WAL mode, written durably (synchronous=FULL), on one dedicated thread.

An acknowledged event survives power loss: enqueue returns only after the COMMIT that holds it has been fsynced.
To keep that affordable, enqueue calls that wait together share one transaction (group commit, see
_sqlite_thread.py), and the pipeline's own writes (step records, completions: nobody outside waits on them) may
wait up to `commit_delay` for the writes of the other events in flight, to share their commit. Several processes
may open the same file: every write transaction starts with BEGIN IMMEDIATE, so claims are serialized by SQLite's
write lock and never overlap.

The database holds every event and the encrypted secrets: the file and its -wal and -shm companions are created
0600 (the file is created empty with that mode before SQLite opens it, and SQLite gives its companions the
database file's mode; a chmod after opening makes sure), and a file that group or others may read or write is
refused with the chmod that fixes it, as the master key file is.

Payload, data and an approval's outcomes are JSON text (never pickle). The schema version is PRAGMA user_version;
MIGRATIONS[n] takes the database from version n to n + 1. An approval's status changes by compare-and-set: one
UPDATE ... WHERE status IN (...) RETURNING, under the write lock.

Knows nothing of HTTP, Teams or F&O; callers see only the dataclasses of base.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from typing import Any

from connector.store import _common as c
from connector.store import _sqlite_ops as ops
from connector.store import _sqlite_replies as rops
from connector.store._sqlite_schema import SCHEMA_VERSION, migrate
from connector.store._sqlite_thread import DbThread
from connector.store.base import (
    Approval,
    AuditEntry,
    Claim,
    EnqueueResult,
    EventRecord,
    EventStatus,
    GraphSubscription,
    InboundReply,
    HistoryEntry,
    Install,
    Instance,
    LeaseLost,
    NewEvent,
    PostedCard,
    SecretRecord,
    StoreError,
    StoreInsecure,
    StoreUnavailable,
    SummarySubscription,
    UserMapping,
)

MEMORY = ":memory:"
COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite keeps beside the database
_OTHERS = stat.S_IRWXG | stat.S_IRWXO
_DONE = "status = 'done', stage = '', lease_id = NULL, lease_expires_at = NULL, claimed_by = NULL"
__all__ = ["SCHEMA_VERSION", "SQLiteStore"]


class SQLiteStore:
    """The Store on a SQLite file.

    Args:
        path: the database file (created with its tables on open; its directory must exist), or ":memory:"
            (tests only: nothing survives close).
        busy_timeout: seconds to wait for another process's write lock before giving up (StoreUnavailable).
        max_batch: most enqueue calls one group-commit transaction serves.
        commit_delay: seconds a pipeline write may wait for the other events in flight to share its commit
            (0: commit at once). Never applies to an enqueue or any other call somebody outside waits on.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0, max_batch: int = 512,
                 commit_delay: float = 0.0) -> None:
        if not 0 <= commit_delay < float("inf"):
            raise ValueError(f"commit_delay must be 0 or more seconds, got {commit_delay!r}")
        self.path = os.fspath(path)
        self._busy_timeout = busy_timeout
        # The events this store leased out and has not seen let go (event id -> lease expiry), and of those the
        # ones with a write being committed: while some leased event is not writing, it may write soon, so a
        # pipeline write waits (up to commit_delay) to share its commit. A hint only: a wrong answer costs one
        # commit_delay at most, never a write.
        self._leased: dict[str, float] = {}
        self._writing: dict[str, int] = {}
        self._db = DbThread(
            self._connect,
            map_error=self._map_error,
            closed_error=lambda: StoreUnavailable(f"SQLite store {self.path} is not open"),
            name=f"sqlite-store:{os.path.basename(self.path)}",
            max_batch=max_batch,
            commit_delay=commit_delay,
            more_coming=self._leased_not_writing,
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        if not self._db.running:
            await self._db.start()

    async def close(self) -> None:
        await self._db.stop()

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            _private_files(self.path)
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if self.path != MEMORY:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreUnavailable(f"SQLite {self.path}: could not switch to WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")  # an acknowledged event survives power loss
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn, self.path)
            if self.path != MEMORY:
                _private_files(self.path)  # the -wal and -shm files exist now
        except BaseException:
            conn.close()
            raise
        return conn

    def _map_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, (StoreError, ValueError, TypeError)):
            return exc
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"SQLite {self.path}: constraint failed: {exc}")
        if isinstance(exc, sqlite3.ProgrammingError):
            return StoreError(f"SQLite {self.path}: {exc}")
        if isinstance(exc, sqlite3.Error):  # locked beyond the timeout, disk I/O error, full, unable to open...
            unavailable = StoreUnavailable(f"SQLite database {self.path} is unavailable: {exc}")
            unavailable.__cause__ = exc
            return unavailable
        return exc

    # --- events ----------------------------------------------------------------------------------------------
    async def enqueue(self, event: NewEvent, *, first_stage: str, now: float) -> tuple[EnqueueResult, str]:
        return await self._db.call_batched(ops.enqueue_batch, (event, first_stage, now))

    async def claim(self, worker: str, *, now: float, lease_seconds: float) -> Claim | None:
        claim = await self._db.call(ops.claim, worker, now, lease_seconds)
        return self._leasing([claim], now)[0] if claim is not None else None

    async def claim_batch(self, worker: str, *, now: float, lease_seconds: float, limit: int) -> list[Claim]:
        # Among the pipeline's group-committed writes: a claim made as events finish (a slot freed) shares the
        # completions' transaction and fsync instead of committing on its own.
        claims = await self._db.call_batched(
            ops.event_writes, (ops.claim_rows, (worker, now, lease_seconds, c.check_limit(limit))), deferrable=True)
        return self._leasing(claims, now)

    def _leasing(self, claims: list[Claim], now: float) -> list[Claim]:
        for event_id in [e for e, expires in self._leased.items() if expires <= now]:
            del self._leased[event_id]  # lost track of (its worker let it go without a write): not in flight
        for claim in claims:
            self._leased[claim.event.id] = claim.lease_expires_at
        return claims

    def _leased_not_writing(self) -> bool:
        """The commit delay's question, asked on the loop: may another write come soon (see __init__)?"""
        return len(self._leased) > len(self._writing)

    async def _write(self, fn: Any, *args: Any) -> Any:
        """A write group-committed with the others waiting (ops.event_writes), never delayed."""
        return await self._db.call_batched(ops.event_writes, (fn, args))

    async def _event_write(self, claim: Claim, fn: Any, *args: Any, lets_go: bool = False) -> Any:
        """A write of a leased event's: group-committed and deferrable (its commit may wait for the other events
        in flight). `lets_go`: the write ends the lease (done, parked, rescheduled); so does any failure (lease
        lost, store unavailable, cancelled), after which the pipeline lets the event go."""
        event_id = claim.event.id
        self._writing[event_id] = self._writing.get(event_id, 0) + 1
        ended = lets_go
        try:
            return await self._db.call_batched(ops.event_writes, (fn, (claim, *args)), deferrable=True)
        except BaseException:
            ended = True
            raise
        finally:
            left = self._writing.pop(event_id, 1) - 1
            if left > 0:
                self._writing[event_id] = left
            if ended:
                self._leased.pop(event_id, None)

    async def record_step(
        self,
        claim: Claim,
        *,
        step: str,
        outcome: str,
        detail: str = "",
        data: dict[str, Any] | None = None,
        next_stage: str | None = None,
        now: float,
    ) -> Claim:
        if data:
            c.check_data_keys(data)
        record = await self._event_write(claim, ops.record_step, step, outcome, detail, data, next_stage, now)
        return Claim(event=record, lease_id=claim.lease_id, lease_expires_at=claim.lease_expires_at)

    async def extend_lease(self, claim: Claim, *, lease_seconds: float, now: float) -> Claim:
        if not lease_seconds > 0:  # also refuses NaN: a heartbeat must not hand the event to another worker
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
        expires = now + lease_seconds
        record = await self._event_write(claim, ops.extend_lease, expires, now)
        if claim.event.id in self._leased:
            self._leased[claim.event.id] = expires
        return Claim(event=record, lease_id=claim.lease_id, lease_expires_at=expires)

    async def complete(self, claim: Claim, *, now: float, detail: str = "") -> None:
        await self._event_write(claim, ops.fenced, _DONE, (), (now, c.STEP_DONE, c.OUTCOME_OK, detail), lets_go=True)

    async def finish(self, claim: Claim, *, step: str, detail: str = "", data: dict[str, Any] | None = None,
                     now: float) -> None:
        if data:
            c.check_data_keys(data)
        await self._event_write(claim, ops.finish, step, detail, data, _DONE, (), (now, c.STEP_DONE, c.OUTCOME_OK, ""),
                                lets_go=True)

    async def reschedule(self, claim: Claim, *, at: float, reason: str, now: float) -> None:
        sets = (
            "status = 'queued', next_attempt_at = ?, attempts = attempts + 1, last_error = ?, "
            "lease_id = NULL, lease_expires_at = NULL, claimed_by = NULL"
        )
        step = claim.event.stage
        await self._event_write(claim, ops.fenced, sets, (at, reason), (now, step, c.OUTCOME_RETRY, reason),
                                lets_go=True)

    async def park(self, claim: Claim, *, reason: str, now: float) -> None:
        sets = "status = 'failed', last_error = ?, lease_id = NULL, lease_expires_at = NULL, claimed_by = NULL"
        await self._event_write(claim, ops.fenced, sets, (reason,), (now, c.STEP_PARK, c.OUTCOME_PARKED, reason),
                                lets_go=True)

    async def replay(self, event_id: str, *, now: float, stage: str | None = None) -> EventRecord:
        return await self._db.call(ops.replay, event_id, now, stage)

    async def get_event(self, event_id: str) -> EventRecord | None:
        return await self._db.call(ops.get_event, event_id)

    async def list_events(
        self, *, status: EventStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[EventRecord]:
        return await self._db.call(ops.list_events, status, limit, offset)

    async def history(self, event_id: str) -> list[HistoryEntry]:
        return await self._db.call(ops.history, event_id)

    async def count_by_status(self) -> dict[EventStatus, int]:
        return await self._db.call(ops.count_by_status)

    # --- operations (connector/ops): cheap counts, retention, backup, the write probe --------------------------
    async def oldest_pending_at(self) -> float | None:
        return await self._db.call(ops.oldest_pending_at)

    async def count_approvals_by_status(self) -> dict[str, int]:
        return await self._db.call(ops.count_approvals_by_status)

    async def count_recent(self, *, since: float) -> list[tuple[str, str, int]]:
        return await self._db.call(ops.count_recent, since)

    async def purge_events(self, *, before: float) -> int:
        return await self._db.call(ops.purge_events, before)

    async def purge_audit(self, *, before: float) -> int:
        return await self._db.call(ops.purge_audit, before)

    async def probe_write(self, *, now: float) -> None:
        await self._db.call(ops.probe_write, SCHEMA_VERSION)

    async def backup(self, destination: str | os.PathLike[str]) -> None:
        """SQLite's online backup into a new file (0600), from its own connection on a worker thread: the store
        keeps serving meanwhile (WAL readers do not block writers)."""
        if self.path == MEMORY:
            raise StoreError("an in-memory store cannot be backed up")
        dest = os.fspath(destination)
        if os.path.exists(dest):
            raise StoreError(f"{dest} exists; give a new file name")
        import asyncio  # only here: the rest of this module runs on the store's own thread

        await asyncio.to_thread(_backup_file, self.path, dest, self._busy_timeout)

    # --- instances -------------------------------------------------------------------------------------------
    async def register_instance(self, instance: Instance) -> None:
        names = ", ".join(c.INSTANCE_FIELDS)
        marks = ", ".join("?" for _ in c.INSTANCE_FIELDS)
        values = tuple(getattr(instance, name) for name in c.INSTANCE_FIELDS)
        await self._db.call(ops.write, f"INSERT INTO instances ({names}) VALUES ({marks})", values)

    async def heartbeat_instance(self, instance_id: str, *, expires_at: float, now: float) -> None:
        sql = "UPDATE instances SET expires_at = ? WHERE id = ? AND expires_at > ?"
        if await self._db.call(ops.write, sql, (expires_at, instance_id, c.RETIRING)) != 1:
            raise LeaseLost(f"instance {instance_id} was retired")

    async def list_instances(self) -> list[Instance]:
        rows = await self._db.call(
            ops.read, f"SELECT {', '.join(c.INSTANCE_FIELDS)} FROM instances ORDER BY started_at, id", ())
        return [c.instance_from_dict(dict(row)) for row in rows]

    async def retire_instance(self, instance: Instance, *, reason: str, now: float) -> int | None:
        return await self._db.call(ops.retire_instance, instance.id, instance.expires_at, reason, now)

    # --- secrets -------------------------------------------------------------------------------------------
    async def put_secret(self, name: str, ciphertext: bytes, key_id: str, *, now: float) -> None:
        sql = (
            "INSERT INTO secrets (name, ciphertext, key_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, key_id = excluded.key_id, "
            "updated_at = excluded.updated_at"
        )
        await self._db.call(ops.write, sql, (name, bytes(ciphertext), key_id, now, now))

    async def get_secret(self, name: str) -> SecretRecord | None:
        rows = await self._db.call(ops.read, "SELECT * FROM secrets WHERE name = ?", (name,))
        return ops.secret_record(rows[0]) if rows else None

    async def list_secrets(self) -> list[SecretRecord]:
        rows = await self._db.call(ops.read, "SELECT * FROM secrets ORDER BY name", ())
        return [ops.secret_record(row) for row in rows]

    async def delete_secret(self, name: str) -> bool:
        return await self._db.call(ops.write, "DELETE FROM secrets WHERE name = ?", (name,)) > 0

    # --- installs ------------------------------------------------------------------------------------------
    async def upsert_install(self, install: Install) -> None:
        sql = (
            "INSERT INTO installs (id, active, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET active = excluded.active, doc = excluded.doc"
        )
        doc = json.dumps(c.install_to_dict(install))
        await self._db.call(ops.write, sql, (install.id, int(install.active), doc))

    async def get_install(self, install_id: str) -> Install | None:
        rows = await self._db.call(ops.read, "SELECT doc FROM installs WHERE id = ?", (install_id,))
        return c.install_from_dict(json.loads(rows[0]["doc"])) if rows else None

    async def list_installs(self, *, active_only: bool = False) -> list[Install]:
        where = " WHERE active = 1" if active_only else ""
        rows = await self._db.call(ops.read, f"SELECT doc FROM installs{where} ORDER BY id", ())
        return [c.install_from_dict(json.loads(row["doc"])) for row in rows]

    # --- posted cards --------------------------------------------------------------------------------------
    async def record_card(self, card: PostedCard) -> bool:
        names = ", ".join(c.CARD_FIELDS)
        marks = ", ".join("?" for _ in c.CARD_FIELDS)
        sql = f"INSERT INTO posted_cards ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        values = tuple(getattr(card, name) for name in c.CARD_FIELDS)
        # group-committed with the other writes waiting (a digest records one card per event at once)
        return await self._write(ops.execute, sql, values) == 1

    async def cards_for_event(self, event_id: str) -> list[PostedCard]:
        sql = "SELECT * FROM posted_cards WHERE event_id = ? ORDER BY posted_at, seq"
        return [ops.posted_card(row) for row in await self._db.call(ops.read, sql, (event_id,))]

    async def find_thread(self, thread_key: str, channel_id: str) -> PostedCard | None:
        sql = (
            "SELECT * FROM posted_cards WHERE kind = 'thread' AND thread_key = ? AND channel_id = ? "
            "ORDER BY posted_at, seq LIMIT 1"
        )
        rows = await self._db.call(ops.read, sql, (thread_key, channel_id))
        return ops.posted_card(rows[0]) if rows else None

    # --- approvals -----------------------------------------------------------------------------------------
    async def upsert_approval(self, approval: Approval) -> None:
        names = ", ".join(c.APPROVAL_FIELDS)
        marks = ", ".join("?" for _ in c.APPROVAL_FIELDS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in c.APPROVAL_FIELDS if name not in c.APPROVAL_KEY)
        sql = (
            f"INSERT INTO approvals ({names}) VALUES ({marks}) "
            f"ON CONFLICT (environment, work_item_id) DO UPDATE SET {updates}"
        )
        await self._db.call(ops.write, sql, ops.approval_values(approval))

    async def get_approval(self, environment: str, work_item_id: str) -> Approval | None:
        sql = f"SELECT {', '.join(c.APPROVAL_FIELDS)} FROM approvals WHERE environment = ? AND work_item_id = ?"
        rows = await self._db.call(ops.read, sql, (environment, work_item_id))
        return ops.approval_record(rows[0]) if rows else None

    async def transition_approval(
        self, environment: str, work_item_id: str, *, from_status: tuple[str, ...], changes: dict[str, Any]
    ) -> Approval | None:
        statuses, checked = c.check_transition(from_status, changes)
        return await self._db.call(ops.transition_approval, environment, work_item_id, statuses, checked)

    async def list_approvals(
        self, *, status: str | None = None, due_before: float | None = None, limit: int = 100
    ) -> list[Approval]:
        return await self._db.call(ops.list_approvals, status, due_before, c.check_limit(limit))

    async def append_audit(self, entry: AuditEntry) -> None:
        names = ", ".join(c.AUDIT_FIELDS)
        marks = ", ".join("?" for _ in c.AUDIT_FIELDS)
        values = tuple(getattr(entry, name) for name in c.AUDIT_FIELDS)
        await self._db.call(ops.write, f"INSERT INTO audit ({names}) VALUES ({marks})", values)

    async def list_audit(
        self, *, environment: str | None = None, work_item_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        return await self._db.call(ops.list_audit, environment, work_item_id, c.check_limit(limit))

    async def put_user_mapping(self, mapping: UserMapping) -> None:
        names = ("fo_user_key", *c.USER_MAPPING_FIELDS)
        updates = ", ".join(f"{name} = excluded.{name}" for name in c.USER_MAPPING_FIELDS if name != "environment")
        sql = (
            f"INSERT INTO user_mappings ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT (environment, fo_user_key) DO UPDATE SET {updates}"
        )
        values = (c.fo_user_key(mapping.fo_user), *(getattr(mapping, name) for name in c.USER_MAPPING_FIELDS))
        await self._db.call(ops.write, sql, values)

    async def get_user_mapping(self, environment: str, fo_user: str) -> UserMapping | None:
        sql = (
            f"SELECT {', '.join(c.USER_MAPPING_FIELDS)} FROM user_mappings WHERE environment = ? AND fo_user_key = ?"
        )
        rows = await self._db.call(ops.read, sql, (environment, c.fo_user_key(fo_user)))
        return ops.user_mapping(rows[0]) if rows else None

    # --- "my approvals" -----------------------------------------------------------------------------------------
    async def list_approvals_for(self, assignee_object_id: str, *, status: str = "pending",
                                 limit: int = 500) -> list[Approval]:
        return await self._db.call(ops.list_approvals_for, assignee_object_id, status, c.check_limit(limit))

    async def upsert_summary_subscription(self, sub: SummarySubscription) -> None:
        names = ", ".join(c.SUMMARY_FIELDS)
        marks = ", ".join("?" for _ in c.SUMMARY_FIELDS)
        updates = ", ".join(f"{n} = excluded.{n}" for n in c.SUMMARY_FIELDS if n != "user_object_id")
        sql = (f"INSERT INTO summary_subscriptions ({names}) VALUES ({marks}) "
               f"ON CONFLICT (user_object_id) DO UPDATE SET {updates}")
        await self._db.call(ops.write, sql, ops.summary_values(sub))

    async def get_summary_subscription(self, user_object_id: str) -> SummarySubscription | None:
        sql = f"SELECT {', '.join(c.SUMMARY_FIELDS)} FROM summary_subscriptions WHERE user_object_id = ?"
        rows = await self._db.call(ops.read, sql, (user_object_id,))
        return ops.summary_record(rows[0]) if rows else None

    async def list_due_summaries(self, *, now: float, limit: int = 100) -> list[SummarySubscription]:
        sql = (f"SELECT {', '.join(c.SUMMARY_FIELDS)} FROM summary_subscriptions "
               "WHERE enabled = 1 AND next_due_at <= ? ORDER BY next_due_at, user_object_id LIMIT ?")
        rows = await self._db.call(ops.read, sql, (now, c.check_limit(limit)))
        return [ops.summary_record(row) for row in rows]

    async def claim_summary_day(self, user_object_id: str, *, day: str, next_due_at: float,
                                now: float) -> SummarySubscription | None:
        return await self._db.call(ops.claim_summary_day, user_object_id, day, next_due_at, now)

    # --- typed replies ------------------------------------------------------------------------------------------
    async def add_graph_subscription(self, sub: GraphSubscription) -> bool:
        return await self._db.call(rops.add_sub, sub)

    async def put_graph_subscription(self, sub: GraphSubscription) -> None:
        await self._db.call(rops.put_sub, sub)

    async def get_graph_subscription(self, resource: str) -> GraphSubscription | None:
        rows = await self._db.call(ops.read, "SELECT * FROM graph_subscriptions WHERE resource = ?", (resource,))
        return rops.sub_from_row(rows[0]) if rows else None

    async def find_graph_subscription(self, subscription_id: str) -> GraphSubscription | None:
        rows = await self._db.call(ops.read, "SELECT * FROM graph_subscriptions WHERE subscription_id = ?",
                                   (subscription_id,))
        return rops.sub_from_row(rows[0]) if rows else None

    async def list_graph_subscriptions(self) -> list[GraphSubscription]:
        rows = await self._db.call(ops.read, "SELECT * FROM graph_subscriptions ORDER BY resource", ())
        return [rops.sub_from_row(row) for row in rows]

    async def delete_graph_subscription(self, resource: str) -> bool:
        return bool(await self._db.call(ops.write, "DELETE FROM graph_subscriptions WHERE resource = ?",
                                        (resource,)))

    async def lease_graph_subscription(self, resource: str, owner: str, *, now: float,
                                       lease_seconds: float) -> GraphSubscription | None:
        return await self._db.call(rops.lease_sub, resource, owner, now, lease_seconds)

    async def note_graph_notification(self, subscription_id: str, *, at: float) -> None:
        await self._db.call(rops.note_notification, subscription_id, at)

    async def enqueue_reply(self, reply: InboundReply) -> bool:
        return await self._db.call(rops.enqueue_reply, reply)

    async def claim_replies(self, owner: str, *, now: float, lease_seconds: float,
                            limit: int = 20) -> list[InboundReply]:
        return await self._db.call(rops.claim_replies, owner, now, lease_seconds, c.check_limit(limit))

    async def finish_reply(self, key: str, owner: str, *, status: str, outcome: str, now: float,
                           retry_at: float | None = None) -> bool:
        return await self._db.call(rops.finish_reply, key, owner, status, outcome, now, retry_at)

    async def get_reply(self, key: str) -> InboundReply | None:
        rows = await self._db.call(ops.read, "SELECT * FROM inbound_replies WHERE key = ?", (key,))
        return rops.reply_from_row(rows[0]) if rows else None

    async def find_cards_by_activity(self, activity_id: str) -> list[PostedCard]:
        sql = f"SELECT {', '.join(c.CARD_FIELDS)} FROM posted_cards WHERE activity_id = ? ORDER BY seq"
        rows = await self._db.call(ops.read, sql, (activity_id,))
        return [ops.posted_card(row) for row in rows]


def _backup_file(source: str, dest: str, busy_timeout: float) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from its first byte, as the store
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=busy_timeout)
        try:
            out = sqlite3.connect(dest)
            try:
                src.backup(out, pages=4096)  # steps, so writers get the lock between them
            finally:
                out.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        os.unlink(dest)
        raise StoreError(f"backup of {source} to {dest} failed: {exc}") from None
    except BaseException:
        os.unlink(dest)
        raise


def _private_files(path: str) -> None:
    """Create the database file 0600 if it is missing; refuse it (and its companions) if group or others have any
    access; make sure the companions are 0600. No umask change: that is process-wide, and other threads create
    files too."""
    if os.name != "posix":
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # empty: SQLite makes it a database
    except FileExistsError:
        pass
    except OSError:
        return  # unopenable: sqlite3.connect says why, as StoreUnavailable
    exposed = []
    for name in (path, *(path + suffix for suffix in COMPANIONS)):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except FileNotFoundError:
            continue
        if mode & _OTHERS:
            exposed.append((name, mode))
    if exposed:
        names = " ".join(name for name, _ in exposed)
        modes = ", ".join(f"{name} has mode {mode:04o}" for name, mode in exposed)
        raise StoreInsecure(f"SQLite store: {modes}: other users of this host can read the events and secrets in "
                            f"it; run `chmod 600 {names}`")
    for suffix in COMPANIONS:
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass
