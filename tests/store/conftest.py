"""Store fixtures: every contract test runs against SQLite (a temp file), MongoDB via mongomock-motor, and a real
MongoDB server when ML_TEST_MONGODB_URI is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.store.base import NewEvent, Store
from connector.store.mongo import MongoStore
from connector.store.sqlite import SQLiteStore

MONGODB_URI = os.environ.get("ML_TEST_MONGODB_URI")


def make_event(n: int, *, env: str = "contoso-prod", ignore: bool = False, **payload: object) -> NewEvent:
    return NewEvent(
        environment=env,
        business_event_id="PurchaseOrderConfirmedBusinessEvent",
        control_number=n,
        event_id=f"evt-{n}",
        legal_entity="usmf",
        payload={"ControlNumber": n, "PurchaseOrderNumber": f"PO-{n:05d}", **payload},
        ignore=ignore,
    )


@pytest.fixture(params=["sqlite", "mongomock", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    database = None
    if kind == "sqlite":
        impl: Store = SQLiteStore(tmp_path / "store.db")
    elif kind == "mongomock":
        from mongomock_motor import AsyncMongoMockClient

        impl = MongoStore(AsyncMongoMockClient(), "ml_test")
    else:
        if not MONGODB_URI:
            pytest.skip("real MongoDB not configured: set ML_TEST_MONGODB_URI=mongodb://host:port to run it")
        from pymongo import AsyncMongoClient

        database = f"ml_test_{uuid.uuid4().hex[:12]}"
        client = AsyncMongoClient(MONGODB_URI, serverSelectionTimeoutMS=3000)
        impl = MongoStore(client, database, owns_client=False)
    await impl.open()
    try:
        yield impl
    finally:
        await impl.close()
        if database is not None:
            await client.drop_database(database)
            await client.close()
