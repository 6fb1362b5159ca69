"""The command line as an admin uses it: secrets never echoed, clear errors, events shown and replayed."""

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.secrets import generate_master_key
from connector.store import NewEvent, open_store

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
    key = generate_master_key()
    monkeypatch.setenv("ML_MASTER_KEY", key)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict | None = None):
        return runner.invoke(main, ["--config", str(cfg), *args], input=input, env=env)

    run.db = db  # type: ignore[attr-defined]
    return run


def test_secret_set_from_stdin_is_never_printed(cli) -> None:
    r = cli("secrets", "set", "entra-client-secret", input="very-secret-value-42\n")
    assert r.exit_code == 0, r.output
    listing = cli("secrets", "list")
    assert "entra-client-secret" in listing.output and "very-secret-value-42" not in listing.output


def test_wrong_master_key_is_a_clear_error(cli) -> None:
    assert cli("secrets", "set", "x", input="value-value\n").exit_code == 0
    endpoint = cli("environments", "endpoint", "contoso-prod")
    assert endpoint.exit_code == 0 and "/api/dynamics/events/" in endpoint.output
    r = cli("environments", "endpoint", "contoso-prod", env={"ML_MASTER_KEY": generate_master_key()})
    assert r.exit_code == 2 and "does not match the key that encrypted" in r.output


def test_missing_master_key_says_how_to_make_one(cli) -> None:
    r = cli("secrets", "set", "x", input="value\n", env={"ML_MASTER_KEY": ""})
    assert r.exit_code == 2 and "secrets generate-key" in r.output


def test_bad_configuration_names_the_key(cli) -> None:
    r = cli("config", "check", env={"ML_PIPELINE__CONCURRENCY": "lots"})
    assert r.exit_code == 2 and "pipeline.concurrency" in r.output


def test_events_show_and_replay_a_parked_event(cli) -> None:
    async def seed() -> str:
        store = open_store(f"sqlite:///{cli.db}")
        await store.open()
        try:
            _, eid = await store.enqueue(
                NewEvent("contoso-prod", "PurchaseOrderConfirmedBusinessEvent", 5637144576, "E1", "usmf",
                         {"PurchaseOrderNumber": "00000123"}), first_stage="enrich", now=time.time())
            claim = await store.claim("w", now=time.time(), lease_seconds=30)
            await store.park(claim, reason="enrich: F&O refused the app", now=time.time())
            return eid
        finally:
            await store.close()

    eid = asyncio.run(seed())
    listing = cli("events", "list", "--status", "failed")
    assert eid in listing.output and "F&O refused the app" in listing.output
    shown = cli("events", "show", eid, "--payload")
    assert "received" in shown.output and "parked" in shown.output and "00000123" in shown.output
    replay = cli("events", "replay", "--all-failed")
    assert replay.exit_code == 0 and f"re-queued {eid}" in replay.output
    assert cli("events", "show", "no-such-id").exit_code == 1


def test_a_database_others_can_read_is_refused_in_one_line_saying_what_to_run(cli) -> None:
    assert cli("secrets", "set", "x", input="value-value\n").exit_code == 0
    assert cli.db.stat().st_mode & 0o777 == 0o600  # created private
    cli.db.chmod(0o644)
    r = cli("events", "list")
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [
        f"error: SQLite store: {cli.db} has mode 0644: other users of this host can read the events and secrets in "
        f"it; run `chmod 600 {cli.db}`"]


@pytest.mark.parametrize("public_url,warning,printed", [
    (None, "[server].public_url is not set", "/api/dynamics/events/"),
    ("http://connector.example.com", "is not https", "http://connector.example.com/api/dynamics/events/"),
    ("https://connector.example.com/", None, "https://connector.example.com/api/dynamics/events/"),
])
def test_endpoint_url_warns_instead_of_inventing_an_address(cli, public_url, warning, printed) -> None:
    env = {"ML_SERVER__PUBLIC_URL": public_url} if public_url else {}
    r = cli("environments", "endpoint", "contoso-prod", env={**env, "ML_SERVER__HOST": "0.0.0.0"})
    assert r.exit_code == 0, r.output
    url = r.stdout.strip()
    assert url.startswith(printed) and len(url) > len(printed) + 30 and "0.0.0.0" not in r.output
    if warning:
        assert warning in r.stderr
    else:
        assert "warning" not in r.stderr
