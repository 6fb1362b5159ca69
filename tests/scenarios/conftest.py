"""Scenario fixtures: one sandbox process for the session, a registry of secrets and logs, and `until`.

The sandbox (`python -m sandbox serve`) starts once (`connector.demo.start_sandbox_process`) and stops at the end of
the session; each test starts its own connector (in-process or `ml-connector serve`) on its own SQLite file and
resets the sandbox knobs it touched (scenariokit.reset_sandbox), so no test depends on another's side effects.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from connector.demo import start_sandbox_process
from scenariokit import LeakRegistry, Sandbox, until as _until


async def until(predicate: Callable[[], Any], timeout: float, *, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` (sync or async) until it is truthy, at most `timeout` seconds (AssertionError then)."""
    return await _until(predicate, timeout, interval=interval, what=what)


@pytest.fixture(name="until")
def until_fixture() -> Callable[..., Any]:
    return until


@pytest.fixture(scope="session")
def leak_registry() -> LeakRegistry:
    """Secret values used and log files written by the scenario tests (scanned by test_s10_secrets_in_logs)."""
    return LeakRegistry()


def _post(sandbox_state: dict[str, Any], url: str, body: dict[str, Any]) -> Any:
    ctx = ssl.create_default_context(cafile=sandbox_state["ca_cert"])
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:  # noqa: S310 - loopback sandbox
        return json.loads(r.read() or b"null")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, leak_registry: LeakRegistry) -> Any:
    """The whole sandbox (Entra, F&O + sender, Bot Framework/Teams, Graph) in its own process, for the session."""
    workdir = tmp_path_factory.mktemp("sandbox")
    proc, state = start_sandbox_process(workdir)
    try:
        # F&O's per-user service protection (6,000 requests per 5 minutes) would throttle the big bursts of
        # several tests in a row; the tests that want F&O throttling ask for it explicitly (/fno/throttle).
        _post(state, f"{state['fno']['admin_url']}/fno/limits", {"requests": 1_000_000, "execution_seconds": 1e6})
        leak_registry.secret("F&O client secret", state["fno"]["client_secret"])
        leak_registry.secret("bot app password", state["teams"]["bot_app_password"])
        leak_registry.log(workdir / "sandbox.log")
        yield Sandbox(proc, state, workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path

