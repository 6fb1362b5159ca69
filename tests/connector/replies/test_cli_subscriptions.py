"""`ml-connector subscriptions list | sync | delete`: what the store holds, and clear errors when Graph is not
set up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.secrets import generate_master_key
from connector.store import GraphSubscription, open_store

CONFIG = """
[store]
url = "sqlite:///{db}"
[[environments]]
name = "contoso-prod"
base_url = "https://contoso.operations.dynamics.com"
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    db = tmp_path / "ml.db"
    cfg = tmp_path / "ml-connector.toml"
    cfg.write_text(CONFIG.format(db=db))
    monkeypatch.setenv("ML_MASTER_KEY", generate_master_key())
    runner = CliRunner()

    def run(*args: str, env: dict | None = None):
        return runner.invoke(main, ["--config", str(cfg), *args], env=env)

    run.db = db  # type: ignore[attr-defined]
    return run


def test_list_shows_each_subscription_and_says_when_there_are_none(cli) -> None:
    r = cli("subscriptions", "list")
    assert r.exit_code == 0 and "no Graph subscriptions" in r.output

    async def seed() -> None:
        store = open_store(f"sqlite:///{cli.db}")
        await store.open()
        await store.put_graph_subscription(GraphSubscription(
            resource="/teams/g-1/channels/19:c@thread.tacv2/messages", team_id="g-1", channel_id="19:c@thread.tacv2",
            status="active", subscription_id="sub-1", expires_at=1_795_959_200.0, created_at=1_795_700_000.0,
            renewals=2, detail="throttled by Graph: retry after 30s"))
        await store.close()
    asyncio.run(seed())
    r = cli("subscriptions", "list")
    assert r.exit_code == 0, r.output
    assert "active  /teams/g-1/channels/19:c@thread.tacv2/messages" in r.output and "id sub-1" in r.output
    assert "(2x)" in r.output and "throttled by Graph" in r.output


def test_sync_and_delete_say_what_is_missing(cli) -> None:
    r = cli("subscriptions", "sync")
    assert r.exit_code == 2 and 'source = "graph" or "both"' in r.output and "server.public_url" in r.output
    r = cli("subscriptions", "delete")
    assert r.exit_code == 2 and "--all" in r.output
    r = cli("subscriptions", "sync", env={"ML_REPLIES__SOURCE": "graph"})
    assert r.exit_code == 2 and "server.public_url" in r.output
