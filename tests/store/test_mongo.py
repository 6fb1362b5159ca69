"""MongoDB specifics: stored shapes (Binary secrets, bounded embedded history), error mapping, schema version."""

from __future__ import annotations

import pytest
from bson import Binary
from mongomock_motor import AsyncMongoMockClient
from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure, ServerSelectionTimeoutError

from connector.store.base import EnqueueResult, StoreUnavailable
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
