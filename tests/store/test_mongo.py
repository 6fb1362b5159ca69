"""MongoDB specifics: stored shapes (Binary secrets, bounded embedded history), error mapping, schema version."""

from __future__ import annotations

import asyncio

import pytest
from bson import Binary
from mongomock_motor import AsyncMongoMockClient
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from connector.store.base import Approval, AuditEntry, EnqueueResult, StoreUnavailable, UserMapping
from connector.store.factory import open_store
from connector.store.mongo import SCHEMA_VERSION, MongoStore

from .conftest import make_event

T0 = 1_000_000.0


@pytest.fixture
async def client():
    return AsyncMongoMockClient()


@pytest.fixture
async def store(client):
    impl = MongoStore(client, "ml_test", history_limit=5)
    await impl.open()
    yield impl
    await impl.close()


async def test_secrets_are_stored_as_binary(store: MongoStore, client) -> None:
    await store.put_secret("s", b"\x00\xff", "k1", now=T0)
    raw = await client["ml_test"]["secrets"].find_one({"_id": "s"})
    assert isinstance(raw["ciphertext"], (Binary, bytes)) and bytes(raw["ciphertext"]) == b"\x00\xff"


async def test_history_is_bounded(store: MongoStore) -> None:
    _, event_id = await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    for i in range(10):
        await store.enqueue(make_event(1), first_stage="enrich", now=T0 + 1 + i)
    history = await store.history(event_id)
    assert len(history) == 5 and [h.at for h in history] == [T0 + 6 + i for i in range(5)]


async def test_schema_version_is_recorded_and_newer_refused(store: MongoStore, client) -> None:
    meta = client["ml_test"]["meta"]
    assert (await meta.find_one({"_id": "schema"}))["version"] == SCHEMA_VERSION
    await meta.update_one({"_id": "schema"}, {"$set": {"version": SCHEMA_VERSION + 1}})
    with pytest.raises(StoreUnavailable, match="schema version"):
        await MongoStore(client, "ml_test").open()


@pytest.mark.parametrize(
    "error", [ServerSelectionTimeoutError("no servers"), AutoReconnect("primary stepped down"),
              NetworkTimeout("timed out"), OperationFailure("not authorized")],
)
async def test_driver_errors_become_unavailable(store: MongoStore, monkeypatch: pytest.MonkeyPatch, error) -> None:
    async def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(store._events, "insert_one", fail)
    monkeypatch.setattr(store._events, "find_one_and_update", fail)
    with pytest.raises(StoreUnavailable) as caught:
        await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    assert caught.value.__cause__ is error
    with pytest.raises(StoreUnavailable):
        await store.claim("w1", now=T0, lease_seconds=30)


async def test_unreachable_server_is_unavailable() -> None:
    """A real AsyncMongoClient pointed at a closed loopback port: open fails fast, as StoreUnavailable."""
    store = open_store("mongodb://127.0.0.1:9/ml_test", server_selection_timeout=0.2)
    try:
        with pytest.raises(StoreUnavailable, match="open failed"):
            await store.open()
        with pytest.raises(StoreUnavailable):
            await store.enqueue(make_event(1), first_stage="enrich", now=T0)
    finally:
        await store.close()


async def test_stores_sharing_a_database_deduplicate_together(client) -> None:
    a, b = MongoStore(client, "ml_test"), MongoStore(client, "ml_test")
    await a.open()
    await b.open()
    first = await a.enqueue(make_event(1), first_stage="enrich", now=T0)
    second = await b.enqueue(make_event(1), first_stage="enrich", now=T0)
    assert (first[0], second[0], first[1]) == (EnqueueResult.NEW, EnqueueResult.DUPLICATE, second[1])
    got = await a.claim("a", now=T0, lease_seconds=30)
    assert got is not None and await b.claim("b", now=T0, lease_seconds=30) is None


async def test_write_concern_is_majority_journaled_unless_the_client_sets_one() -> None:
    from pymongo import AsyncMongoClient

    default = AsyncMongoClient("mongodb://127.0.0.1:9/", connect=False)
    chosen = AsyncMongoClient("mongodb://127.0.0.1:9/?w=1", connect=False)
    try:
        assert MongoStore(default)._events.write_concern.document == {"w": "majority", "j": True}
        assert MongoStore(chosen)._events.write_concern.document == {"w": 1}
    finally:
        await default.close()
        await chosen.close()


async def test_injected_client_stays_open(client) -> None:
    store = MongoStore(client, "ml_test")
    await store.open()
    await store.close()
    assert await client["ml_test"]["events"].count_documents({}) == 0  # still usable


# --- approvals, audit, user mappings (schema version 2) ---------------------------------------------------------
def _approval(work_item_id: str = "WI-1", **kw: object) -> Approval:
    return Approval(environment="contoso-prod", work_item_id=work_item_id, event_id="evt-1",
                    outcomes=["Approve", "Reject"], next_check_at=T0, **kw)  # type: ignore[arg-type]


async def test_approval_collections_and_their_indexes(store: MongoStore, client) -> None:
    db = client["ml_test"]
    approvals = await db["approvals"].index_information()
    assert approvals["approvals_key"]["key"] == [("environment", 1), ("work_item_id", 1)]
    assert approvals["approvals_key"].get("unique") is True
    audit = await db["audit"].index_information()
    assert audit["audit_item"]["key"][:3] == [("environment", 1), ("work_item_id", 1), ("at", -1)]
    mappings = await db["user_mappings"].index_information()
    assert mappings["user_mappings_key"]["key"] == [("environment", 1), ("fo_user_key", 1)]
    assert mappings["user_mappings_key"].get("unique") is True


async def test_stored_shapes(store: MongoStore, client) -> None:
    db = client["ml_test"]
    await store.upsert_approval(_approval())
    raw = await db["approvals"].find_one({"work_item_id": "WI-1"})
    assert raw["outcomes"] == ["Approve", "Reject"] and raw["status"] == "pending"  # a real array, plain fields
    await store.put_user_mapping(UserMapping("contoso-prod", "Alex.Wilber", "oid", "a@x", "Alex", T0))
    raw = await db["user_mappings"].find_one({})
    assert (raw["fo_user"], raw["fo_user_key"]) == ("Alex.Wilber", "alex.wilber")
    await store.append_audit(AuditEntry(at=T0, environment="contoso-prod", work_item_id="WI-1", action="press"))
    raw = await db["audit"].find_one({})
    assert isinstance(raw["_id"], str) and raw["action"] == "press"


async def test_the_unique_key_refuses_a_second_approval_document(store: MongoStore, client) -> None:
    await store.upsert_approval(_approval())
    with pytest.raises(DuplicateKeyError):
        await client["ml_test"]["approvals"].insert_one({"environment": "contoso-prod", "work_item_id": "WI-1"})


async def test_a_version_1_database_is_upgraded_and_keeps_its_events(client) -> None:
    old = MongoStore(client, "ml_test")
    await old.open()
    _, event_id = await old.enqueue(make_event(1), first_stage="enrich", now=T0)
    meta = client["ml_test"]["meta"]
    await meta.update_one({"_id": "schema"}, {"$set": {"version": 1}})  # as the previous release left it
    await client["ml_test"]["approvals"].drop()
    await client["ml_test"]["user_mappings"].drop()

    new = MongoStore(client, "ml_test")
    await new.open()
    assert (await meta.find_one({"_id": "schema"}))["version"] == SCHEMA_VERSION == 5
    assert (await new.get_event(event_id)).control_number == 1
    assert "approvals_key" in await client["ml_test"]["approvals"].index_information()
    await new.upsert_approval(_approval())
    assert (await new.get_approval("contoso-prod", "WI-1")).outcomes == ["Approve", "Reject"]


@pytest.mark.parametrize("error", [AutoReconnect("primary stepped down"), OperationFailure("not authorized")])
async def test_driver_errors_on_approvals_become_unavailable(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, error
) -> None:
    async def fail(*args, **kwargs):
        raise error

    def fail_find(*args, **kwargs):
        raise error

    for collection in (store._approvals, store._audit, store._user_mappings):
        for name in ("replace_one", "find_one", "find_one_and_update", "insert_one"):
            monkeypatch.setattr(collection, name, fail)
        monkeypatch.setattr(collection, "find", fail_find)
    calls = [
        store.upsert_approval(_approval()),
        store.get_approval("contoso-prod", "WI-1"),
        store.transition_approval("contoso-prod", "WI-1", from_status=("pending",), changes={"status": "x"}),
        store.transition_approval("contoso-prod", "WI-1", from_status=("pending",), changes={}),
        store.list_approvals(),
        store.append_audit(AuditEntry(at=T0, environment="e", work_item_id="w", action="press")),
        store.list_audit(),
        store.put_user_mapping(UserMapping("e", "u", None, None, None, T0)),
        store.get_user_mapping("e", "u"),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable) as caught:
            await call
        assert caught.value.__cause__ is error


async def test_an_upsert_that_loses_an_insert_race_is_retried(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store._approvals.replace_one
    calls = 0

    async def racing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:  # another instance inserted the same key between our match and our insert
            await real(*args, **kwargs)
            raise DuplicateKeyError("E11000 duplicate key error collection: approvals index: approvals_key")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store._approvals, "replace_one", racing)
    await store.upsert_approval(_approval(subject="mine"))
    assert calls == 2 and (await store.get_approval("contoso-prod", "WI-1")).subject == "mine"


async def test_stores_sharing_a_database_make_one_decision(client) -> None:
    a, b = MongoStore(client, "ml_test"), MongoStore(client, "ml_test")
    await a.open()
    await b.open()
    await a.upsert_approval(_approval())
    answers = await asyncio.gather(
        *(s.transition_approval("contoso-prod", "WI-1", from_status=("pending",), changes={"status": "submitting"})
          for _ in range(10) for s in (a, b))
    )
    assert sum(x is not None for x in answers) == 1
    assert (await b.get_approval("contoso-prod", "WI-1")).status == "submitting"
