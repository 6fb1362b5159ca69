"""A real service (create_app on a SQLite file, the real secrets box) for the operations tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.app import SERVICES, create_app
from connector.config import Settings
from connector.endpoint_tokens import ensure_token
from connector.ops.routes import metrics_app
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store.factory import open_store

FNO = "https://contoso.operations.dynamics.com"


def business_event(n: int) -> dict[str, Any]:
    return {"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf",
            "ControlNumber": n, "EventId": f"00000000-0000-4000-8000-{n:012d}", "EventTimeIso8601":
            "2026-11-26T10:15:00Z", "LegalEntity": "usmf", "MajorVersion": 0, "MinorVersion": 0,
            "PurchaseOrderNumber": f"PO-{n}", "ContextRecordSubject": "", "ParentContextRecordSubjects": [],
            "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "EventTime": "/Date(0)/"}


class Service:
    def __init__(self, client: TestClient, ops: TestClient, token: str, box: SecretBox, services: Any) -> None:
        self.client, self.ops, self.token, self.box, self.services = client, ops, token, box, services

    async def post_event(self, n: int, token: str | None = None) -> int:
        async with self.client.post(f"/api/dynamics/events/{token or self.token}", json=business_event(n)) as r:
            return r.status


async def start_service(tmp_path: Path, **ops: Any) -> Service:
    db = tmp_path / "ml.db"
    settings = Settings(store={"url": f"sqlite:///{db}"},
                        identity={"tenant_id": "aaaaaaaa-0000-4000-8000-000000000001",
                                  "client_id": "bbbbbbbb-0000-4000-8000-000000000002"},
                        environments=[{"name": "prod", "base_url": FNO}], ops=ops)
    key = MasterKey.from_text(generate_master_key())
    store = open_store(settings.store.url)
    await store.open()
    box = SecretBox(store, key)
    await box.put("entra-client-secret", "not-used-here")
    token, _ = await ensure_token(box, "env/prod/event-token")
    await store.close()
    app = create_app(settings, master_key=key, clock=time.time, start_pipeline=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    services = app[SERVICES]
    assert services.ops is not None and services.secrets is not None
    ops_client = TestClient(TestServer(metrics_app(services.ops)))
    await ops_client.start_server()
    return Service(client, ops_client, token, services.secrets, services)


@pytest.fixture
async def service(tmp_path: Path):
    started: list[Service] = []

    async def start(**ops: Any) -> Service:
        svc = await start_service(tmp_path, **ops)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        await svc.ops.close()
        await svc.client.close()
