"""Rotating the events URL while the service runs: both tokens work during the grace period, the old one stops after
it (or after --revoke-previous), and the running service notices without a restart. The CLI is the real one, on
the same SQLite file, as an admin runs it beside the service."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from connector.app import create_app
from connector.cli import main
from connector.config import Settings
from connector.endpoint_tokens import ensure_token, read_tokens
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store import StoreUnavailable
from connector.store.factory import open_store
from connector.web import EventEndpoints, EventEnvironment

GRACE = 3600.0
PUBLIC = "https://connector.example.com"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # the CLI stamps rotations with the real time

    def __call__(self) -> float:
        return self.now


def _event(n: int) -> dict:
    return {"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf",
            "ControlNumber": n, "EventId": f"00000000-0000-4000-8000-{n:012d}", "EventTimeIso8601":
            "2026-11-26T10:15:00Z", "LegalEntity": "usmf", "MajorVersion": 0, "MinorVersion": 0,
            "PurchaseOrderNumber": f"PO-{n}", "ContextRecordSubject": "", "ParentContextRecordSubjects": [],
            "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "EventTime": "/Date(0)/"}


@pytest.fixture
async def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    db = tmp_path / "ml.db"
    cfg = tmp_path / "ml-connector.toml"
    cfg.write_text(f'[server]\npublic_url = "{PUBLIC}"\n[store]\nurl = "sqlite:///{db}"\n'
                   f'[[environments]]\nname = "prod"\nbase_url = "https://contoso.operations.dynamics.com"\n'
                   f"event_token_grace = {GRACE}\n")
    key_text = generate_master_key()
    monkeypatch.setenv("ML_MASTER_KEY", key_text)
    key = MasterKey.from_text(key_text)
    settings = Settings(server={"public_url": PUBLIC}, store={"url": f"sqlite:///{db}"},
                        identity={"tenant_id": "aaaaaaaa-0000-4000-8000-000000000001",
                                  "client_id": "bbbbbbbb-0000-4000-8000-000000000002"},
                        environments=[{"name": "prod", "base_url": "https://contoso.operations.dynamics.com",
                                       "event_token_grace": GRACE}])
    store = open_store(settings.store.url)
    await store.open()
    box = SecretBox(store, key)
    await box.put("entra-client-secret", "not-used-here")
    first, _ = await ensure_token(box, "env/prod/event-token")
    await store.close()

    clock = Clock()
    client = TestClient(TestServer(create_app(settings, master_key=key, clock=clock, start_pipeline=False)))
    await client.start_server()
    runner = CliRunner()
    numbers = iter(range(1, 1000))

    async def cli(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, main, ["--config", str(cfg), *args])
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    async def post(token: str) -> int:
        async with client.post(f"/api/dynamics/events/{token}", json=_event(next(numbers))) as r:
            return r.status

    try:
        yield first, clock, cli, post
    finally:
        await client.close()


def _token(url: str) -> str:
    assert url.startswith(f"{PUBLIC}/api/dynamics/events/"), url
    return url.rsplit("/", 1)[1]


async def test_rotation_keeps_both_tokens_for_the_grace_period_then_only_the_new(service) -> None:
    old, clock, cli, post = service
    assert await post(old) == 202
    new = _token(await cli("environments", "endpoint", "prod", "--rotate"))
    assert new != old
    clock.now += 6  # past the unknown-token reload limit: the first request with the new token reloads
    assert await post(new) == 202
    assert await post(old) == 202  # F&O has not read the new URL from Key Vault yet
    clock.now += GRACE - 60
    assert await post(old) == 202
    clock.now += 61  # the grace period is over
    assert await post(old) == 404
    assert await post(new) == 202


async def test_revoke_previous_ends_the_old_token_in_the_running_service(service) -> None:
    old, clock, cli, post = service
    new = _token(await cli("environments", "endpoint", "prod", "--rotate"))
    clock.now += 6
    assert (await post(new), await post(old)) == (202, 202)
    assert _token(await cli("environments", "endpoint", "prod", "--revoke-previous")) == new
    clock.now += 61  # the periodic refresh
    assert await post(old) == 404
    assert await post(new) == 202


async def test_a_token_created_after_start_is_accepted_without_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    table: list[EventEnvironment] = []

    async def loader() -> list[EventEnvironment]:
        return list(table)

    endpoints = EventEndpoints([], loader=loader, clock=clock)
    assert await endpoints.match("brand-new") is None
    table.append(EventEnvironment("prod", "brand-new"))
    assert await endpoints.match("brand-new") is None  # asked again too soon: no store read
    clock.now += 5
    assert (await endpoints.match("brand-new")).name == "prod"


async def test_a_flood_of_unknown_tokens_reloads_once_per_interval() -> None:
    clock = Clock()
    calls = 0

    async def loader() -> list[EventEnvironment]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return [EventEnvironment("prod", "the-token")]

    endpoints = EventEndpoints([EventEnvironment("prod", "the-token")], loader=loader, clock=clock)
    clock.now += 5
    found = await asyncio.gather(*(endpoints.match(f"guess-{i}") for i in range(200)))
    assert found == [None] * 200 and calls == 1
    assert await endpoints.match("guess-again") is None and calls == 1


async def test_a_failing_reload_keeps_the_tokens_it_had() -> None:
    clock = Clock()

    async def loader() -> list[EventEnvironment]:
        raise StoreUnavailable("down")

    endpoints = EventEndpoints([EventEnvironment("prod", "the-token")], loader=loader, clock=clock)
    clock.now += 120
    assert (await endpoints.match("the-token")).name == "prod"


async def test_rotating_twice_keeps_only_the_last_two(tmp_path: Path) -> None:
    from connector.endpoint_tokens import rotate

    store = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    await store.open()
    box = SecretBox(store, MasterKey.from_text(generate_master_key()))
    first, created = await ensure_token(box, "t")
    second, replaced = await rotate(box, "t", now=100.0)
    third, _ = await rotate(box, "t", now=200.0)
    assert replaced
    tokens = await read_tokens(box, "t")
    assert created and (tokens.current, tokens.previous, tokens.rotated_at) == (third, second, 200.0)
    assert first not in (tokens.current, tokens.previous)
    assert tokens.previous_valid_until(50.0) == 250.0
    await store.close()


async def test_a_known_token_of_a_fresh_table_is_matched_without_awaiting() -> None:
    """The front door's hot path: `match_fresh` answers from the table when no reload is due; None sends the
    caller to `match`, which reloads (a stale table, an unknown token) as before."""
    clock = Clock()
    table = [EventEnvironment("prod", "the-token")]

    async def loader() -> list[EventEnvironment]:
        return table

    endpoints = EventEndpoints(list(table), loader=loader, clock=clock)
    assert endpoints.match_fresh("the-token").name == "prod"
    assert endpoints.match_fresh("other") is None
    clock.now += 60  # the refresh interval: a revoked token must not be answered from the old table
    table.clear()
    assert endpoints.match_fresh("the-token") is None
    assert await endpoints.match("the-token") is None
    assert EventEndpoints([EventEnvironment("prod", "t")]).match_fresh("t").name == "prod"  # no loader
