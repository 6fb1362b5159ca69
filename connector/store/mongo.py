"""The MongoDB store, for several connector instances sharing one queue, through PyMongo's async API.

Safe with many processes: a unique index deduplicates events, claims are single find_one_and_update calls, and every
write that belongs to a claim names its lease id in the filter (no match: LeaseLost). Each event is one document
with its history embedded (the newest `history_limit` entries), so a step, its data and its history entry are one
atomic update. Writes use w=majority, j=true by default: nothing is acknowledged before it is journaled.

Collections: events, secrets, installs, posted_cards, approvals (a status change is one find_one_and_update
filtered on the expected status: compare-and-set), audit (append-only), user_mappings (keyed on the case-folded F&O
user), instances (running processes and their heartbeat leases), meta (schema version). Connection errors become
StoreUnavailable. Knows nothing of HTTP, Teams or F&O; callers see only the dataclasses of base.py.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import asdict, fields
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING, ReturnDocument, WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from connector.store import _common as c
from connector.store import _mongo_docs as docs
from connector.store.base import (
    Approval,
    AuditEntry,
    Claim,
    EnqueueResult,
    EventRecord,
    EventStatus,
    GraphSubscription,
    HistoryEntry,
    InboundReply,
    Install,
    Instance,
    LeaseLost,
    NewEvent,
    NotFound,
    PostedCard,
    SecretRecord,
    StoreError,
    StoreUnavailable,
    SummarySubscription,
    UserMapping,
)

SCHEMA_VERSION = 5  # 2: approvals, audit, user_mappings; 3: instances; 4: summary_subscriptions, by assignee;
# 5: graph_subscriptions, inbound_replies, posted cards by message id
DEFAULT_DATABASE = "ml_connector"
_NO_HISTORY = {"history": 0}
_RELEASE = {"lease_id": None, "lease_expires_at": None, "claimed_by": None}


def _default_write_concern(db: Any) -> WriteConcern:
    configured = getattr(db, "write_concern", None)
    if isinstance(configured, WriteConcern) and not configured.is_server_default:
        return configured
    return WriteConcern(w="majority", j=True)


class MongoStore:
    """The Store on a MongoDB database.

    Args:
        client: an `AsyncMongoClient` (or a stand-in such as mongomock_motor's `AsyncMongoMockClient`).
        database: the database name.
        owns_client: close the client on close() (the factory's stores do; an injected client stays open).
        history_limit: newest history entries kept per event (an endlessly re-sent event cannot grow forever).
        write_concern: what writes wait for. Default: the client's, if its URL or options set one (w=..., journal=...);
            otherwise majority, journaled.
    """

    def __init__(
        self,
        client: Any,
        database: str = DEFAULT_DATABASE,
        *,
        owns_client: bool = False,
        history_limit: int = 500,
        write_concern: WriteConcern | None = None,
    ) -> None:
        self._client = client
        self._owns_client = owns_client
        self._history_limit = history_limit
        self.database = database
        db = client[database]
        wc = write_concern or _default_write_concern(db)
        self._events = db.get_collection("events", write_concern=wc)
        self._secrets = db.get_collection("secrets", write_concern=wc)
        self._installs = db.get_collection("installs", write_concern=wc)
        self._cards = db.get_collection("posted_cards", write_concern=wc)
        self._approvals = db.get_collection("approvals", write_concern=wc)
        self._audit = db.get_collection("audit", write_concern=wc)
        self._user_mappings = db.get_collection("user_mappings", write_concern=wc)
        self._instances = db.get_collection("instances", write_concern=wc)
        self._summaries = db.get_collection("summary_subscriptions", write_concern=wc)
        self._graph_subs = db.get_collection("graph_subscriptions", write_concern=wc)
        self._replies = db.get_collection("inbound_replies", write_concern=wc)
        self._meta = db.get_collection("meta", write_concern=wc)

    def __repr__(self) -> str:
        return f"MongoStore(database={self.database!r})"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:  # unreachable, timed out, not primary, refused (auth, validation)...
            raise StoreUnavailable(f"MongoDB {self.database}: {action} failed: {exc}") from exc

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        with self._errors("open"):
            meta = await self._meta.find_one({"_id": "schema"})
            version = meta["version"] if meta else 0
            if version > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"MongoDB {self.database} has schema version {version}; this connector knows up to "
                    f"{SCHEMA_VERSION}"
                )
            ev = self._events
            await ev.create_index(
                [("environment", ASCENDING), ("business_event_id", ASCENDING), ("control_number", ASCENDING)],
                unique=True,
                name="events_dedup",
            )
            await ev.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)], name="events_queued")
            await ev.create_index([("status", ASCENDING), ("lease_expires_at", ASCENDING)], name="events_leased")
            await ev.create_index([("status", ASCENDING), ("claimed_by", ASCENDING)], name="events_claimed")
            await ev.create_index([("received_at", DESCENDING), ("_id", DESCENDING)], name="events_received")
            await ev.create_index(
                [("status", ASCENDING), ("received_at", DESCENDING), ("_id", DESCENDING)], name="events_status"
            )
            await self._cards.create_index(
                [("event_id", ASCENDING), ("route", ASCENDING), ("kind", ASCENDING), ("conversation_id", ASCENDING)],
                unique=True,
                name="posted_cards_once",
            )
            await self._cards.create_index(
                [("thread_key", ASCENDING), ("channel_id", ASCENDING), ("kind", ASCENDING), ("posted_at", ASCENDING)],
                name="posted_cards_thread",
            )
            await self._approvals.create_index(
                [("environment", ASCENDING), ("work_item_id", ASCENDING)], unique=True, name="approvals_key"
            )
            await self._approvals.create_index(
                [("status", ASCENDING), ("next_check_at", ASCENDING), ("environment", ASCENDING),
                 ("work_item_id", ASCENDING)],
                name="approvals_status_due",
            )
            await self._approvals.create_index(
                [("next_check_at", ASCENDING), ("environment", ASCENDING), ("work_item_id", ASCENDING)],
                name="approvals_due",
            )
            await self._audit.create_index(
                [("environment", ASCENDING), ("work_item_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)],
                name="audit_item",
            )
            await self._audit.create_index([("at", DESCENDING), ("_id", DESCENDING)], name="audit_at")
            await self._user_mappings.create_index(
                [("environment", ASCENDING), ("fo_user_key", ASCENDING)], unique=True, name="user_mappings_key"
            )
            await self._approvals.create_index(
                [("assignee_object_id", ASCENDING), ("status", ASCENDING), ("created_at", ASCENDING),
                 ("environment", ASCENDING), ("work_item_id", ASCENDING)],
                name="approvals_assignee",
            )
            await self._summaries.create_index([("enabled", ASCENDING), ("next_due_at", ASCENDING)],
                                               name="summary_due")
            await self._graph_subs.create_index([("subscription_id", ASCENDING)], name="graph_subs_id")
            await self._replies.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING),
                                              ("received_at", ASCENDING)], name="inbound_replies_due")
            await self._cards.create_index([("activity_id", ASCENDING)], name="posted_cards_activity")
            if version < SCHEMA_VERSION:
                await self._meta.update_one(
                    {"_id": "schema"}, {"$max": {"version": SCHEMA_VERSION}}, upsert=True
                )

    async def close(self) -> None:
        if self._owns_client:
            closing = self._client.close()
            if inspect.isawaitable(closing):
                await closing

    # --- events ----------------------------------------------------------------------------------------------
    async def enqueue(self, event: NewEvent, *, first_stage: str, now: float) -> tuple[EnqueueResult, str]:
        status, stage, outcome = (
            (EventStatus.IGNORED, "", c.OUTCOME_IGNORED)
            if event.ignore
            else (EventStatus.QUEUED, first_stage, c.OUTCOME_OK)
        )
        new_id = c.new_id()
        doc = {
            "_id": new_id,
            "environment": event.environment,
            "business_event_id": event.business_event_id,
            "control_number": event.control_number,
            "event_id": event.event_id,
            "legal_entity": event.legal_entity,
            "payload": event.payload,
            "status": status.value,
            "stage": stage,
            "first_stage": first_stage,
            "attempts": 0,
            "received_at": now,
            "updated_at": now,
            "next_attempt_at": now,
            "data": {},
            "last_error": None,
            **_RELEASE,
            "history": [docs.entry(now, c.STEP_RECEIVED, outcome, "")],
        }
        with self._errors("enqueue"):
            try:
                await self._events.insert_one(doc)
                return EnqueueResult.NEW, new_id
            except DuplicateKeyError:
                pass  # the unique index refused it: note the duplicate on the stored event
            dedup = {
                "environment": event.environment,
                "business_event_id": event.business_event_id,
                "control_number": event.control_number,
            }
            entry = docs.entry(now, c.STEP_RECEIVED, c.OUTCOME_DUPLICATE, f"event id {event.event_id}")
            stored = await self._events.find_one_and_update(
                dedup, {"$push": self._push(entry)}, projection={"_id": 1}
            )
        if stored is None:
            raise StoreError(f"enqueue: duplicate key for {dedup} but no stored event matches it")
        return EnqueueResult.DUPLICATE, stored["_id"]

    async def claim(self, worker: str, *, now: float, lease_seconds: float) -> Claim | None:
        lease_id = c.new_id()
        expires = now + lease_seconds
        claimable = {
            "$or": [
                {"status": EventStatus.QUEUED.value, "next_attempt_at": {"$lte": now}},
                {"status": EventStatus.PROCESSING.value, "lease_expires_at": {"$lte": now}},
            ]
        }
        update = {
            "$set": {
                "status": EventStatus.PROCESSING.value,
                "lease_id": lease_id,
                "lease_expires_at": expires,
                "claimed_by": worker,
                "updated_at": now,
            }
        }
        with self._errors("claim"):
            doc = await self._events.find_one_and_update(
                claimable,
                update,
                sort=[("next_attempt_at", ASCENDING), ("_id", ASCENDING)],
                projection=_NO_HISTORY,
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            return None
        return Claim(event=docs.event_record(doc), lease_id=lease_id, lease_expires_at=expires)

    async def claim_batch(self, worker: str, *, now: float, lease_seconds: float, limit: int) -> list[Claim]:
        # MongoDB has no multi-document claim that stays fenced per event without a transaction; one
        # find_one_and_update each keeps every claim atomic (several instances may claim at once).
        claims: list[Claim] = []
        for _ in range(c.check_limit(limit)):
            got = await self.claim(worker, now=now, lease_seconds=lease_seconds)
            if got is None:
                break
            claims.append(got)
        return claims

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
        sets: dict[str, Any] = {"updated_at": now}
        if data:
            c.check_data_keys(data)
            sets.update({f"data.{key}": value for key, value in data.items()})
        if next_stage is not None:
            sets.update(stage=next_stage, attempts=0)
        doc = await self._fenced(claim, {"$set": sets}, docs.entry(now, step, outcome, detail))
        return Claim(event=docs.event_record(doc), lease_id=claim.lease_id, lease_expires_at=claim.lease_expires_at)

    async def extend_lease(self, claim: Claim, *, lease_seconds: float, now: float) -> Claim:
        if not lease_seconds > 0:  # also refuses NaN: a heartbeat must not hand the event to another worker
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
        expires = now + lease_seconds
        doc = await self._fenced(claim, {"$set": {"lease_expires_at": expires, "updated_at": now}}, None)
        return Claim(event=docs.event_record(doc), lease_id=claim.lease_id, lease_expires_at=expires)

    async def complete(self, claim: Claim, *, now: float, detail: str = "") -> None:
        sets = {"status": EventStatus.DONE.value, "stage": "", "updated_at": now, **_RELEASE}
        await self._fenced(claim, {"$set": sets}, docs.entry(now, c.STEP_DONE, c.OUTCOME_OK, detail))

    async def finish(self, claim: Claim, *, step: str, detail: str = "", data: dict[str, Any] | None = None,
                     now: float) -> None:
        sets: dict[str, Any] = {"status": EventStatus.DONE.value, "stage": "", "updated_at": now, **_RELEASE}
        if data:
            c.check_data_keys(data)
            sets.update({f"data.{key}": value for key, value in data.items()})
        entries = [docs.entry(now, step, c.OUTCOME_OK, detail), docs.entry(now, c.STEP_DONE, c.OUTCOME_OK, "")]
        await self._fenced(claim, {"$set": sets}, None, entries)

    async def reschedule(self, claim: Claim, *, at: float, reason: str, now: float) -> None:
        sets = {
            "status": EventStatus.QUEUED.value,
            "next_attempt_at": at,
            "last_error": reason,
            "updated_at": now,
            **_RELEASE,
        }
        entry = docs.entry(now, claim.event.stage, c.OUTCOME_RETRY, reason)
        await self._fenced(claim, {"$set": sets, "$inc": {"attempts": 1}}, entry)

    async def park(self, claim: Claim, *, reason: str, now: float) -> None:
        sets = {"status": EventStatus.FAILED.value, "last_error": reason, "updated_at": now, **_RELEASE}
        await self._fenced(claim, {"$set": sets}, docs.entry(now, c.STEP_PARK, c.OUTCOME_PARKED, reason))

    async def _fenced(
        self, claim: Claim, update: dict[str, Any], entry: dict[str, Any] | None,
        entries: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A write for a claim: matches only while the claim's lease is the event's lease. Appends `entry` (or
        `entries`) to the history unless None (a lease extension)."""
        leased = {"_id": claim.event.id, "lease_id": claim.lease_id, "status": EventStatus.PROCESSING.value}
        if entry is not None:
            update = {**update, "$push": self._push(entry)}
        elif entries:
            update = {**update, "$push": {"history": {"$each": entries, "$slice": -self._history_limit}}}
        with self._errors("update"):
            doc = await self._events.find_one_and_update(
                leased,
                update,
                projection=_NO_HISTORY,
                return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise LeaseLost(f"event {claim.event.id}: lease {claim.lease_id} is no longer held")
        return doc

    async def replay(self, event_id: str, *, now: float, stage: str | None = None) -> EventRecord:
        with self._errors("replay"):
            for _ in range(5):  # the filter re-checks what we read; retry if an admin raced us
                doc = await self._events.find_one({"_id": event_id}, _NO_HISTORY)
                if doc is None:
                    raise NotFound(f"no event {event_id}")
                if EventStatus(doc["status"]) not in c.REPLAYABLE:
                    raise StoreError(
                        f"event {event_id} is {doc['status']}: only failed or done events can be replayed"
                    )
                new_stage = stage or doc["stage"] or doc["first_stage"]
                entry = docs.entry(now, c.STEP_REPLAY, c.OUTCOME_OK, f"from {doc['status']} at stage {new_stage}")
                sets = {
                    "status": EventStatus.QUEUED.value,
                    "stage": new_stage,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "updated_at": now,
                    "last_error": None,
                }
                updated = await self._events.find_one_and_update(
                    {"_id": event_id, "status": doc["status"], "updated_at": doc["updated_at"]},
                    {"$set": sets, "$push": self._push(entry)},
                    projection=_NO_HISTORY,
                    return_document=ReturnDocument.AFTER,
                )
                if updated is not None:
                    return docs.event_record(updated)
        raise StoreError(f"event {event_id} kept changing during replay")

    async def get_event(self, event_id: str) -> EventRecord | None:
        with self._errors("read"):
            doc = await self._events.find_one({"_id": event_id}, _NO_HISTORY)
        return docs.event_record(doc) if doc else None

    async def list_events(
        self, *, status: EventStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[EventRecord]:
        query = {"status": EventStatus(status).value} if status is not None else {}
        with self._errors("read"):
            cursor = self._events.find(query, _NO_HISTORY).sort([("received_at", DESCENDING), ("_id", DESCENDING)])
            found = await cursor.skip(offset).limit(limit).to_list(None)
        return [docs.event_record(doc) for doc in found]

    async def history(self, event_id: str) -> list[HistoryEntry]:
        with self._errors("read"):
            doc = await self._events.find_one({"_id": event_id}, {"history": 1})
        entries = doc.get("history", []) if doc else []
        return [HistoryEntry(at=e["at"], step=e["step"], outcome=e["outcome"], detail=e["detail"]) for e in entries]

    async def count_by_status(self) -> dict[EventStatus, int]:
        counts = c.zero_counts()
        with self._errors("read"):
            cursor = self._events.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
            if inspect.isawaitable(cursor):  # PyMongo's async aggregate is a coroutine; Motor-style stand-ins aren't
                cursor = await cursor
            rows = await cursor.to_list(None)
        for row in rows:
            counts[EventStatus(row["_id"])] = row["n"]
        return counts

    # --- operations (connector/ops): cheap counts, retention, backup, the write probe --------------------------
    async def oldest_pending_at(self) -> float | None:
        with self._errors("read"):
            doc = await self._events.find_one(
                {"status": {"$in": [EventStatus.QUEUED.value, EventStatus.PROCESSING.value]}},
                {"received_at": 1}, sort=[("received_at", ASCENDING)])
        return None if doc is None else float(doc["received_at"])

    async def count_approvals_by_status(self) -> dict[str, int]:
        with self._errors("read"):
            cursor = self._approvals.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
            if inspect.isawaitable(cursor):
                cursor = await cursor
            rows = await cursor.to_list(None)
        return {row["_id"]: row["n"] for row in rows}

    async def count_recent(self, *, since: float) -> list[tuple[str, str, int]]:
        with self._errors("read"):
            cursor = self._events.aggregate([
                {"$match": {"received_at": {"$gte": since}}},
                {"$group": {"_id": {"e": "$environment", "t": "$business_event_id"}, "n": {"$sum": 1}}}])
            if inspect.isawaitable(cursor):
                cursor = await cursor
            rows = await cursor.to_list(None)
        return sorted((row["_id"]["e"], row["_id"]["t"], row["n"]) for row in rows)

    async def purge_events(self, *, before: float) -> int:
        with self._errors("purge"):
            result = await self._events.delete_many({
                "status": {"$in": [EventStatus.DONE.value, EventStatus.IGNORED.value]},
                "received_at": {"$lt": before}, "updated_at": {"$lt": before}})
        return int(result.deleted_count)

    async def purge_audit(self, *, before: float) -> int:
        with self._errors("purge"):
            result = await self._audit.delete_many({"at": {"$lt": before}})
        return int(result.deleted_count)

    async def probe_write(self, *, now: float) -> None:
        with self._errors("write probe"):
            await self._meta.update_one({"_id": "probe"}, {"$set": {"at": now}}, upsert=True)

    async def backup(self, destination: str) -> None:
        raise StoreError("MongoDB is backed up with its own tools (mongodump --uri ... --archive=FILE, or your "
                         "provider's snapshots); see README 'Operating it'")

    def _push(self, entry: dict[str, Any]) -> dict[str, Any]:
        return {"history": {"$each": [entry], "$slice": -self._history_limit}}

    # --- instances -------------------------------------------------------------------------------------------
    async def register_instance(self, instance: Instance) -> None:
        doc = {name: getattr(instance, name) for name in c.INSTANCE_FIELDS}
        doc["_id"] = doc.pop("id")
        with self._errors("register instance"):
            await self._instances.insert_one(doc)

    async def heartbeat_instance(self, instance_id: str, *, expires_at: float, now: float) -> None:
        with self._errors("instance heartbeat"):
            result = await self._instances.update_one(
                {"_id": instance_id, "expires_at": {"$gt": c.RETIRING}}, {"$set": {"expires_at": expires_at}}
            )
        if result.matched_count != 1:
            raise LeaseLost(f"instance {instance_id} was retired")

    async def list_instances(self) -> list[Instance]:
        with self._errors("list instances"):
            found = await self._instances.find({}).sort([("started_at", ASCENDING), ("_id", ASCENDING)]).to_list(None)
        return [c.instance_from_dict({**doc, "id": doc["_id"]}) for doc in found]

    async def retire_instance(self, instance: Instance, *, reason: str, now: float) -> int | None:
        # Three steps, each safe to repeat: mark (the compare-and-set), release, delete. If this process dies
        # half-way, the record stays marked (expires_at 0: lapsed for everyone) and the next retirement finishes.
        with self._errors("retire instance"):
            marked = await self._instances.find_one_and_update(
                {"_id": instance.id, "expires_at": instance.expires_at}, {"$set": {"expires_at": c.RETIRING}}
            )
            if marked is None:
                return None
            entry = docs.entry(now, c.STEP_RECOVER, c.OUTCOME_RELEASED, c.retired_detail(instance.id, reason))
            result = await self._events.update_many(
                {"status": EventStatus.PROCESSING.value, "claimed_by": instance.id},
                {"$set": {"status": EventStatus.QUEUED.value, "updated_at": now, **_RELEASE},
                 "$push": self._push(entry)},
            )
            await self._instances.delete_one({"_id": instance.id, "expires_at": c.RETIRING})
        return result.modified_count

    # --- secrets -------------------------------------------------------------------------------------------
    async def put_secret(self, name: str, ciphertext: bytes, key_id: str, *, now: float) -> None:
        with self._errors("put secret"):
            await self._secrets.update_one(
                {"_id": name},
                {
                    "$set": {"ciphertext": Binary(bytes(ciphertext)), "key_id": key_id, "updated_at": now},
                    "$setOnInsert": {"created_at": now},
                },
                upsert=True,
            )

    async def get_secret(self, name: str) -> SecretRecord | None:
        with self._errors("read secret"):
            doc = await self._secrets.find_one({"_id": name})
        return docs.secret_record(doc) if doc else None

    async def list_secrets(self) -> list[SecretRecord]:
        with self._errors("list secrets"):
            found = await self._secrets.find({}).sort("_id", ASCENDING).to_list(None)
        return [docs.secret_record(doc) for doc in found]

    async def delete_secret(self, name: str) -> bool:
        with self._errors("delete secret"):
            result = await self._secrets.delete_one({"_id": name})
        return result.deleted_count > 0

    # --- installs ------------------------------------------------------------------------------------------
    async def upsert_install(self, install: Install) -> None:
        doc = c.install_to_dict(install)
        # Channel ids contain dots ("19:...@thread.tacv2"): keep them out of field names.
        doc["channels"] = [[channel_id, name] for channel_id, name in install.channels.items()]
        doc["_id"] = doc.pop("id")
        with self._errors("upsert install"):
            await self._installs.replace_one({"_id": install.id}, doc, upsert=True)

    async def get_install(self, install_id: str) -> Install | None:
        with self._errors("read install"):
            doc = await self._installs.find_one({"_id": install_id})
        return docs.install_record(doc) if doc else None

    async def list_installs(self, *, active_only: bool = False) -> list[Install]:
        with self._errors("list installs"):
            found = await self._installs.find({"active": True} if active_only else {}).sort("_id", ASCENDING).to_list(
                None
            )
        return [docs.install_record(doc) for doc in found]

    # --- posted cards --------------------------------------------------------------------------------------
    async def record_card(self, card: PostedCard) -> bool:
        doc = {name: getattr(card, name) for name in c.CARD_FIELDS}
        with self._errors("record card"):
            try:
                await self._cards.insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    async def cards_for_event(self, event_id: str) -> list[PostedCard]:
        with self._errors("read cards"):
            cursor = self._cards.find({"event_id": event_id}).sort([("posted_at", ASCENDING), ("_id", ASCENDING)])
            found = await cursor.to_list(None)
        return [c.card_from_dict(doc) for doc in found]

    async def find_thread(self, thread_key: str, channel_id: str) -> PostedCard | None:
        query = {"thread_key": thread_key, "channel_id": channel_id, "kind": "thread"}
        with self._errors("read cards"):
            cursor = self._cards.find(query).sort([("posted_at", ASCENDING), ("_id", ASCENDING)]).limit(1)
            found = await cursor.to_list(None)
        return c.card_from_dict(found[0]) if found else None

    # --- approvals -----------------------------------------------------------------------------------------
    async def _replace_upsert(self, collection: Any, key: dict[str, Any], doc: dict[str, Any]) -> None:
        """replace_one(upsert=True) on a unique key. Two upserts racing for a new key may both try to insert; the
        unique index refuses the loser (servers before 4.2 do not retry it themselves), so retry it as a replace."""
        for attempt in range(3):
            try:
                await collection.replace_one(key, doc, upsert=True)
                return
            except DuplicateKeyError:
                if attempt == 2:
                    raise StoreError(f"upsert of {key} kept colliding on its unique key") from None

    async def upsert_approval(self, approval: Approval) -> None:
        doc = c.approval_to_dict(approval)
        key = {"environment": approval.environment, "work_item_id": approval.work_item_id}
        with self._errors("upsert approval"):
            await self._replace_upsert(self._approvals, key, doc)

    async def get_approval(self, environment: str, work_item_id: str) -> Approval | None:
        with self._errors("read approval"):
            doc = await self._approvals.find_one({"environment": environment, "work_item_id": work_item_id})
        return c.approval_from_dict(doc) if doc else None

    async def transition_approval(
        self, environment: str, work_item_id: str, *, from_status: tuple[str, ...], changes: dict[str, Any]
    ) -> Approval | None:
        statuses, checked = c.check_transition(from_status, changes)
        expected = {"environment": environment, "work_item_id": work_item_id, "status": {"$in": statuses}}
        with self._errors("transition approval"):
            if checked:
                doc = await self._approvals.find_one_and_update(
                    expected, {"$set": checked}, return_document=ReturnDocument.AFTER
                )
            else:  # nothing to change ($set may not be empty): the answer is whether the status matches
                doc = await self._approvals.find_one(expected)
        return c.approval_from_dict(doc) if doc else None

    async def list_approvals(
        self, *, status: str | None = None, due_before: float | None = None, limit: int = 100
    ) -> list[Approval]:
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status
        if due_before is not None:
            query["next_check_at"] = {"$lte": due_before}
        order = [("next_check_at", ASCENDING), ("environment", ASCENDING), ("work_item_id", ASCENDING)]
        with self._errors("list approvals"):
            found = await self._approvals.find(query).sort(order).limit(c.check_limit(limit)).to_list(None)
        return [c.approval_from_dict(doc) for doc in found]

    # --- audit (append-only) ---------------------------------------------------------------------------------
    async def append_audit(self, entry: AuditEntry) -> None:
        doc = {"_id": c.new_id(), **{name: getattr(entry, name) for name in c.AUDIT_FIELDS}}
        with self._errors("append audit"):
            await self._audit.insert_one(doc)

    async def list_audit(
        self, *, environment: str | None = None, work_item_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        query: dict[str, Any] = {}
        if environment is not None:
            query["environment"] = environment
        if work_item_id is not None:
            query["work_item_id"] = work_item_id
        with self._errors("list audit"):
            cursor = self._audit.find(query).sort([("at", DESCENDING), ("_id", DESCENDING)])
            found = await cursor.limit(c.check_limit(limit)).to_list(None)
        return [c.audit_from_dict(doc) for doc in found]

    # --- user mappings -------------------------------------------------------------------------------------
    async def put_user_mapping(self, mapping: UserMapping) -> None:
        key = {"environment": mapping.environment, "fo_user_key": c.fo_user_key(mapping.fo_user)}
        doc = {**key, **{name: getattr(mapping, name) for name in c.USER_MAPPING_FIELDS}}
        with self._errors("put user mapping"):
            await self._replace_upsert(self._user_mappings, key, doc)

    async def get_user_mapping(self, environment: str, fo_user: str) -> UserMapping | None:
        with self._errors("read user mapping"):
            doc = await self._user_mappings.find_one(
                {"environment": environment, "fo_user_key": c.fo_user_key(fo_user)}
            )
        return c.user_mapping_from_dict(doc) if doc else None

    # --- "my approvals" -----------------------------------------------------------------------------------------
    async def list_approvals_for(self, assignee_object_id: str, *, status: str = "pending",
                                 limit: int = 500) -> list[Approval]:
        order = [("created_at", ASCENDING), ("environment", ASCENDING), ("work_item_id", ASCENDING)]
        query = {"assignee_object_id": assignee_object_id, "status": status}
        with self._errors("list approvals for an assignee"):
            found = await self._approvals.find(query).sort(order).limit(c.check_limit(limit)).to_list(None)
        return [c.approval_from_dict(doc) for doc in found]

    async def upsert_summary_subscription(self, sub: SummarySubscription) -> None:
        doc = {name: getattr(sub, name) for name in c.SUMMARY_FIELDS}
        with self._errors("upsert summary subscription"):
            await self._replace_upsert(self._summaries, {"_id": sub.user_object_id}, {"_id": sub.user_object_id,
                                                                                        **doc})

    async def get_summary_subscription(self, user_object_id: str) -> SummarySubscription | None:
        with self._errors("read summary subscription"):
            doc = await self._summaries.find_one({"_id": user_object_id})
        return c.summary_from_dict(doc) if doc else None

    async def list_due_summaries(self, *, now: float, limit: int = 100) -> list[SummarySubscription]:
        query = {"enabled": True, "next_due_at": {"$lte": now}}
        order = [("next_due_at", ASCENDING), ("_id", ASCENDING)]
        with self._errors("list due summaries"):
            found = await self._summaries.find(query).sort(order).limit(c.check_limit(limit)).to_list(None)
        return [c.summary_from_dict(doc) for doc in found]

    async def claim_summary_day(self, user_object_id: str, *, day: str, next_due_at: float,
                                now: float) -> SummarySubscription | None:
        # one document update with the day check in its filter: a compare-and-set across instances
        query = {"_id": user_object_id, "enabled": True,
                 "$or": [{"last_sent_day": None}, {"last_sent_day": {"$lt": day}}]}
        with self._errors("claim summary day"):
            doc = await self._summaries.find_one_and_update(
                query, {"$set": {"last_sent_day": day, "next_due_at": next_due_at, "updated_at": now}},
                return_document=ReturnDocument.AFTER)
        return c.summary_from_dict(doc) if doc else None

    # --- typed replies ------------------------------------------------------------------------------------------
    @staticmethod
    def _sub(doc: dict[str, Any]) -> GraphSubscription:
        return GraphSubscription(**{k: v for k, v in doc.items() if k in _SUB_FIELDS})

    @staticmethod
    def _reply(doc: dict[str, Any]) -> InboundReply:
        return InboundReply(**{k: v for k, v in doc.items() if k in _REPLY_FIELDS})

    async def add_graph_subscription(self, sub: GraphSubscription) -> bool:
        with self._errors("add graph subscription"):
            try:
                await self._graph_subs.insert_one({"_id": sub.resource, **asdict(sub)})
            except DuplicateKeyError:
                return False
        return True

    async def put_graph_subscription(self, sub: GraphSubscription) -> None:
        with self._errors("write graph subscription"):
            await self._replace_upsert(self._graph_subs, {"_id": sub.resource}, {"_id": sub.resource, **asdict(sub)})

    async def get_graph_subscription(self, resource: str) -> GraphSubscription | None:
        with self._errors("read graph subscription"):
            doc = await self._graph_subs.find_one({"_id": resource})
        return self._sub(doc) if doc else None

    async def find_graph_subscription(self, subscription_id: str) -> GraphSubscription | None:
        with self._errors("read graph subscription"):
            doc = await self._graph_subs.find_one({"subscription_id": subscription_id})
        return self._sub(doc) if doc else None

    async def list_graph_subscriptions(self) -> list[GraphSubscription]:
        with self._errors("list graph subscriptions"):
            found = await self._graph_subs.find({}).sort([("_id", ASCENDING)]).to_list(None)
        return [self._sub(doc) for doc in found]

    async def delete_graph_subscription(self, resource: str) -> bool:
        with self._errors("delete graph subscription"):
            result = await self._graph_subs.delete_one({"_id": resource})
        return result.deleted_count == 1

    async def lease_graph_subscription(self, resource: str, owner: str, *, now: float,
                                       lease_seconds: float) -> GraphSubscription | None:
        # one document update with the lease check in its filter: a compare-and-set across instances
        query = {"_id": resource, "$or": [{"lease_owner": None}, {"lease_owner": owner},
                                          {"lease_expires_at": {"$lte": now}}]}
        with self._errors("lease graph subscription"):
            doc = await self._graph_subs.find_one_and_update(
                query, {"$set": {"lease_owner": owner, "lease_expires_at": now + lease_seconds}},
                return_document=ReturnDocument.AFTER)
        return self._sub(doc) if doc else None

    async def note_graph_notification(self, subscription_id: str, *, at: float) -> None:
        with self._errors("note graph notification"):
            await self._graph_subs.update_one(
                {"subscription_id": subscription_id, "$or": [{"last_notification_at": None},
                                                             {"last_notification_at": {"$lt": at}}]},
                {"$set": {"last_notification_at": at}})

    async def enqueue_reply(self, reply: InboundReply) -> bool:
        with self._errors("enqueue reply"):
            try:
                await self._replies.insert_one({"_id": reply.key, **asdict(reply)})
            except DuplicateKeyError:
                return False
        return True

    async def claim_replies(self, owner: str, *, now: float, lease_seconds: float,
                            limit: int = 20) -> list[InboundReply]:
        due = {"$or": [{"status": "queued", "next_attempt_at": {"$lte": now}},
                       {"status": "processing", "lease_expires_at": {"$lte": now}}]}
        claimed: list[InboundReply] = []
        with self._errors("claim replies"):
            for _ in range(c.check_limit(limit)):
                # one reply per find_one_and_update: its filter re-checks "due", so two instances never share one
                doc = await self._replies.find_one_and_update(
                    due, {"$set": {"status": "processing", "lease_owner": owner,
                                   "lease_expires_at": now + lease_seconds}, "$inc": {"attempts": 1}},
                    sort=[("received_at", ASCENDING), ("_id", ASCENDING)], return_document=ReturnDocument.AFTER)
                if doc is None:
                    break
                claimed.append(self._reply(doc))
        return claimed

    async def finish_reply(self, key: str, owner: str, *, status: str, outcome: str, now: float,
                           retry_at: float | None = None) -> bool:
        with self._errors("finish reply"):
            result = await self._replies.update_one(
                {"_id": key, "status": "processing", "lease_owner": owner},
                {"$set": {"status": status, "outcome": outcome, "lease_owner": None, "lease_expires_at": 0.0,
                          "next_attempt_at": retry_at if retry_at is not None else now}})
        return result.modified_count == 1

    async def get_reply(self, key: str) -> InboundReply | None:
        with self._errors("read reply"):
            doc = await self._replies.find_one({"_id": key})
        return self._reply(doc) if doc else None

    async def find_cards_by_activity(self, activity_id: str) -> list[PostedCard]:
        with self._errors("read cards"):
            found = await self._cards.find({"activity_id": activity_id}).sort(
                [("posted_at", ASCENDING), ("_id", ASCENDING)]).to_list(None)
        return [c.card_from_dict(doc) for doc in found]


_SUB_FIELDS = {f.name for f in fields(GraphSubscription)}
_REPLY_FIELDS = {f.name for f in fields(InboundReply)}
