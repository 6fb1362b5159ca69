"""`events purge`, `store backup`, `ops admin-token`: as an admin runs them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.secrets import SecretBox, generate_master_key, MasterKey
from connector.store import NewEvent, open_store

CONFIG = """
[store]
url = "sqlite:///{db}"
[[environments]]
name = "contoso-prod"
base_url = "https://contoso.operations.dynamics.com"
"""
DAY = 86_400.0


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    db = tmp_path / "ml.db"
    cfg = tmp_path / "ml-connector.toml"
    cfg.write_text(CONFIG.format(db=db))
    key = generate_master_key()
    monkeypatch.setenv("ML_MASTER_KEY", key)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["--config", str(cfg), *args])

    run.db = db  # type: ignore[attr-defined]
    run.key = key  # type: ignore[attr-defined]
    return run


def _seed(db: Path, *, done_at: list[float], queued_at: list[float]) -> None:
    async def go() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            n = 0
            for at in done_at + queued_at:
                n += 1
                await store.enqueue(NewEvent("contoso-prod", "PurchaseOrderConfirmedBusinessEvent", n, f"e{n}",
                                             "usmf", {"n": n}), first_stage="enrich", now=at)
            for at in done_at:
                claim = await store.claim("w", now=at, lease_seconds=60)
                assert claim is not None
                await store.complete(claim, now=at)
        finally:
            await store.close()

    asyncio.run(go())


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_events_purge_older_than_deletes_only_old_done_events(cli) -> None:
    now = time.time()
    _seed(cli.db, done_at=[now - 100 * DAY, now - 95 * DAY, now - DAY], queued_at=[now - 200 * DAY])
    r = cli("events", "purge", "--older-than", "90d")
    assert r.exit_code == 0, r.output
    assert "purged 2 done event(s) older than 90d" in r.output
    assert _count(cli.db) == 2  # the recent done one and the (old) queued one stay


@pytest.mark.parametrize("bad", ["ninety", "0d", "-5h", ""])
def test_events_purge_refuses_a_bad_age(cli, bad: str) -> None:
    r = cli("events", "purge", "--older-than", bad)
    assert r.exit_code == 2 and "age" in r.output, r.output


def test_store_backup_copies_the_store_and_never_overwrites(cli, tmp_path: Path) -> None:
    _seed(cli.db, done_at=[time.time()], queued_at=[time.time()])
    dest = tmp_path / "backup.db"
    r = cli("store", "backup", str(dest))
    assert r.exit_code == 0, r.output
    assert _count(dest) == 2 and os.stat(dest).st_mode & 0o077 == 0
    again = cli("store", "backup", str(dest))
    assert again.exit_code == 1 and "exists" in again.output


def test_admin_token_is_generated_stored_encrypted_and_rotated_only_when_asked(cli) -> None:
    r = cli("ops", "admin-token")
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[0]
    assert len(token) >= 40

    async def stored() -> str:
        store = open_store(f"sqlite:///{cli.db}")
        await store.open()
        try:
            return (await SecretBox(store, MasterKey.from_text(cli.key)).get("ops/admin-token")).reveal()
        finally:
            await store.close()

    assert asyncio.run(stored()) == token
    assert token.encode() not in cli.db.read_bytes()  # encrypted at rest
    again = cli("ops", "admin-token")
    assert again.exit_code == 1 and "--rotate" in again.output
    rotated = cli("ops", "admin-token", "--rotate")
    assert rotated.exit_code == 0 and rotated.stdout.strip().splitlines()[0] != token
