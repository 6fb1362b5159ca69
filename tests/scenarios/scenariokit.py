"""Helpers for the scenario tests: the sandbox's admin APIs, the connector in-process or as a subprocess, polling
with deadlines, and the secret scanner.

Everything goes through the front doors: real HTTP on loopback, TLS to the sandbox (its CA), MSAL tokens from the
sandbox Entra, the real SQLite store and the real bot. The connector is configured exactly as the demo does
(`connector.demo.demo_settings`), with per-test tweaks.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from connector.app import SERVICES, Services, create_app
from connector.config import Settings
from connector.demo import TEAM, connect_sender, demo_settings, free_port, install_team, settings_environment, \
    store_demo_secrets
from connector.secrets import MasterKey, generate_master_key
from connector.store import EventRecord, EventStatus, open_store

BUSY = (EventStatus.QUEUED, EventStatus.PROCESSING)


# --- time -------------------------------------------------------------------------------------------------------
async def until(predicate: Callable[[], Any], timeout: float, *, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return it. AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        await asyncio.sleep(interval)


# --- secrets and logs seen by the tests (scanned by test_s10) ------------------------------------------------------
@dataclass(repr=False)
class LeakRegistry:
    """Every secret value the tests handled and every log file they produced."""

    secrets: dict[str, str] = field(default_factory=dict)  # value -> label
    logs: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:  # a failing test prints its fixtures: never the values
        return f"LeakRegistry({len(self.secrets)} secrets, {len(self.logs)} logs)"

    def secret(self, label: str, value: str | None) -> None:
        if value and len(value) >= 8:
            self.secrets.setdefault(value, label)

    def log(self, path: Path) -> Path:
        if path not in self.logs:
            self.logs.append(path)
        return path


def needles(value: str) -> list[str]:
    """What to look for: the value itself and, for a JWT, its signature alone (a token cut at a dot)."""
    out = [value]
    parts = value.split(".")
    if len(parts) == 3 and value.startswith("eyJ") and len(parts[2]) >= 16:
        out.append(parts[2])
    return out


def scan_for_secrets(paths: list[Path], secrets: dict[str, str]) -> list[tuple[str, str, int]]:
    """(file, secret label, line number) for every secret value found in any of `paths`."""
    found: list[tuple[str, str, int]] = []
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for value, label in secrets.items():
            for needle in needles(value):
                idx = text.find(needle)
                if idx >= 0:
                    found.append((str(path), label, text.count("\n", 0, idx) + 1))
                    break
    return found


# --- the sandbox ----------------------------------------------------------------------------------------------------
@dataclass
class Sandbox:
    proc: subprocess.Popen[bytes]
    state: dict[str, Any] = field(repr=False)  # holds the F&O client secret and the bot password
    workdir: Path = Path()

    @property
    def log_path(self) -> Path:
        return self.workdir / "sandbox.log"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.state["ca_cert"])

    @property
    def sender(self) -> str:
        return self.state["sender"]["admin_url"]

    @property
    def scenario(self) -> str:
        return self.state["scenario"]["url"]

    @property
    def fno_admin(self) -> str:
        return self.state["fno"]["admin_url"] + "/fno"

    @property
    def entra_admin(self) -> str:
        return self.state["entra"]["admin_url"] + "/entra"

    @property
    def teams_admin(self) -> str:
        return self.state["teams"]["admin_url"]


class Admin:
    """JSON calls to the sandbox admin APIs (and the connector), over TLS trusting the sandbox CA."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def post(self, url: str, body: dict[str, Any] | None = None, *, ok: tuple[int, ...] = ()) -> Any:
        async with self.http.post(url, json=body if body is not None else {}) as r:
            text = await r.text()
            data = json.loads(text) if text else None
            if r.status >= 400 and r.status not in ok:
                raise AssertionError(f"POST {url} answered {r.status}: {data}")
            return data

    async def get(self, url: str) -> Any:
        async with self.http.get(url) as r:
            if r.status >= 400:
                raise AssertionError(f"GET {url} answered {r.status}: {await r.text()}")
            return await r.json(content_type=None)

    async def delete(self, url: str) -> Any:
        async with self.http.delete(url) as r:
            return await r.json(content_type=None)


@asynccontextmanager
async def admin_session(sandbox: Sandbox) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sandbox.ssl_context())) as http:
        yield Admin(http)


async def reset_sandbox(admin: Admin, sandbox: Sandbox) -> None:
    """Knobs back to defaults, counters and Teams messages cleared: each test starts from the same sandbox.

    Every test resets when it ends, so this is also where each scenario's posted cards are checked before they go:
    AssertionError (after the reset) if any shows a raw `${...}` template expression."""
    leftovers = unexpanded_in_state(await admin.get(f"{sandbox.teams_admin}/state"))
    await admin.post(f"{sandbox.teams_admin}/reset", {"threads": True})
    await admin.post(f"{sandbox.teams_admin}/knobs", {"latency_ms": 0, "rate_limits": True, "sso": "silent"})
    await admin.post(f"{sandbox.entra_admin}/sso", {"consent_missing": False, "mfa_required": False})
    await admin.post(f"{sandbox.fno_admin}/config", {"completion_policy": "any_authenticated"})
    await admin.post(f"{sandbox.sender}/config", {"duplicate_next": 0, "duplicate_probability": 0.0,
                                                  "out_of_order": 0, "delay": 0.0})
    await admin.post(f"{sandbox.fno_admin}/stats/reset")
    await admin.post(f"{sandbox.fno_admin}/config", {"latency_ms": 0})
    await admin.post(f"{sandbox.fno_admin}/schema", {"reset": True})
    await admin.post(f"{sandbox.entra_admin}/token-lifetime", {"seconds": 3599})
    assert not leftovers, "cards posted with unexpanded template expressions:\n" + "\n".join(leftovers)


async def teams_bot_messages(admin: Admin, sandbox: Sandbox, team: str = TEAM) -> list[dict[str, Any]]:
    """Every message the bot has in `team`'s channels (thread roots and replies), with its channel name."""
    state = await admin.get(f"{sandbox.teams_admin}/state")
    out = []
    for t in state["teams"]:
        if t["name"] != team:
            continue
        for ch in t["channels"]:
            for th in ch["threads"]:
                for m in th["messages"]:
                    if m["sender"] == "bot":
                        out.append(dict(m, channel=ch["name"], thread=th["id"]))
    return out


def unexpanded_in_state(state: dict[str, Any]) -> list[str]:
    """Every bot message (channel threads, 1:1 chats, per-viewer refresh cards) whose card still holds a `${`: a
    template expression that reached Teams unexpanded. One line per message: where, and the first offending text."""
    found: list[str] = []

    def first_leftover(node: Any) -> str | None:
        if isinstance(node, str):
            return node if "${" in node else None
        items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for item in items:
            hit = first_leftover(item)
            if hit is not None:
                return hit
        return None

    threads = [(f"{t['name']} / {ch['name']}", th) for t in state.get("teams", []) for ch in t["channels"]
               for th in ch["threads"]]
    threads += [(f"chat with {c.get('user')}", c) for c in state.get("chats", [])]
    for where, thread in threads:
        for m in thread["messages"]:
            if m.get("sender") == "bot" and (hit := first_leftover([m.get("text"), m.get("cards")])) is not None:
                found.append(f"{where}, message {m['id']}: {hit[:200]!r}")
    for viewer, cards in (state.get("viewerCards") or {}).items():
        for mid, card in cards.items():
            if (hit := first_leftover(card)) is not None:
                found.append(f"refresh card of {mid} for {viewer}: {hit[:200]!r}")
    return found


# --- the connector ------------------------------------------------------------------------------------------------
def tweak(settings: Settings, **sections: dict[str, Any]) -> Settings:
    """A copy of `settings` with some keys of some sections changed, e.g. tweak(s, pipeline={"lease_seconds": 20})."""
    update: dict[str, Any] = {}
    for name, changes in sections.items():
        current = getattr(settings, name)
        if isinstance(current, dict):
            update[name] = {**current, **changes}
        else:
            update[name] = current.model_copy(update=changes)
    return settings.model_copy(update=update)


@dataclass
class Connector:
    """A running connector (either kind) and what the tests need to drive and inspect it."""

    settings: Settings
    master_key: str = field(repr=False)
    event_token: str = field(repr=False)
    port: int = 0
    endpoint_id: str = ""
    services: Services | None = None  # in-process only

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/api/dynamics/events/{self.event_token}"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/api/messages"

    @property
    def db_path(self) -> Path:
        return Path(self.settings.store.url.removeprefix("sqlite:///"))


@asynccontextmanager
async def store_of(connector: Connector) -> AsyncIterator[Any]:
    """The connector's store opened from the test (for subprocess connectors, and after a kill)."""
    store = open_store(connector.settings.store.url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def prepare(sandbox: Sandbox, workdir: Path, registry: LeakRegistry,
                  change: Callable[[Settings], Settings] | None = None, *, port: int | None = None) -> Connector:
    """Settings (the demo's, tweaked), a master key and the stored secrets for a new connector in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    settings = demo_settings(sandbox.state, workdir, port)
    settings = tweak(settings, logging={"level": "INFO"})
    if change:
        settings = change(settings)
    key = generate_master_key()
    token = await store_demo_secrets(settings, MasterKey.from_text(key), sandbox.state)
    registry.secret("master key", key)
    registry.secret("events URL token", token)
    return Connector(settings, key, token, port)


async def wait_installed(store: Any, team: str = TEAM, *, active: bool = True, timeout: float = 30) -> Any:
    async def installed() -> Any:
        for i in await store.list_installs():
            if i.team_name == team and i.active == active and (not active or len(i.channels) >= 5):
                return i
        return None

    return await until(installed, timeout, what=f"install of {team} recorded as active={active}")


async def connect(admin: Admin, sandbox: Sandbox, connector: Connector, *, install: bool = True) -> None:
    """Point the Teams stand-in at the bot, install the app in the team, and register + activate the endpoint."""
    async with store_of(connector) as store:
        if install:
            await install_team(admin.http, sandbox.state, connector.messages_url)
            await wait_installed(store)
    connector.endpoint_id = await connect_sender(admin.http, sandbox.state, connector.events_url)


async def disconnect(admin: Admin, sandbox: Sandbox, connector: Connector) -> None:
    if connector.endpoint_id:
        await admin.delete(f"{sandbox.sender}/endpoints/{connector.endpoint_id}")
        connector.endpoint_id = ""


@asynccontextmanager
async def file_logging(path: Path, level: int = logging.INFO) -> AsyncIterator[None]:
    """Everything logged in this process goes (also) to `path` while the context is open, as `serve` logs."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    saved = (root.level, logging.getLogger("msal").level, logging.getLogger("aiohttp.access").level)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("msal").setLevel(logging.WARNING)  # as connector.app.configure_logging does
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(saved[0])
        logging.getLogger("msal").setLevel(saved[1])
        logging.getLogger("aiohttp.access").setLevel(saved[2])


@asynccontextmanager
async def inproc_connector(sandbox: Sandbox, workdir: Path, registry: LeakRegistry,
                           change: Callable[[Settings], Settings] | None = None, *,
                           install: bool = True) -> AsyncIterator[tuple[Connector, Admin]]:
    """The connector in this process (create_app + AppRunner), installed in Procurement and connected to the
    F&O sender. Its logs go to workdir/connector.log (registered for the secrets scan)."""
    connector = await prepare(sandbox, workdir, registry, change)
    log_path = registry.log(workdir / "connector.log")
    async with file_logging(log_path), admin_session(sandbox) as admin:
        await reset_sandbox(admin, sandbox)
        app = create_app(connector.settings, master_key=MasterKey.from_text(connector.master_key))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", connector.port).start()
            connector.services = app[SERVICES]
            await connect(admin, sandbox, connector, install=install)
            yield connector, admin
        finally:
            try:
                await disconnect(admin, sandbox, connector)
            finally:
                collect_tokens(connector.services, registry)
                await runner.cleanup()
                await reset_sandbox(admin, sandbox)


def collect_tokens(services: Services | None, registry: LeakRegistry) -> None:
    """The access tokens the connector holds now (F&O, Bot Connector, Graph) go into the scan list."""
    tokens = getattr(services, "tokens", None) if services else None
    for source in getattr(tokens, "_sources", {}).values():
        registry.secret(f"access token for {source.scope}", getattr(source, "_token", None))


def ml_connector_exe() -> list[str]:
    exe = Path(sys.executable).with_name("ml-connector")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ml-connector")
    assert found, "the ml-connector script is not installed in this environment"
    return [found]


def subprocess_env(settings: Settings, master_key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update(settings_environment(settings))
    if master_key:
        env["ML_MASTER_KEY"] = master_key
    return env


class ConnectorProcess:
    """`ml-connector serve` as a subprocess (so it can be SIGKILLed), logging to a file."""

    def __init__(self, connector: Connector, log_path: Path) -> None:
        self.connector = connector
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(ml_connector_exe() + ["serve"], cwd=self.connector.db_path.parent,
                                     env=subprocess_env(self.connector.settings, self.connector.master_key),
                                     stdout=self._log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 60) -> None:
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"ml-connector serve exited with {self.proc.returncode}; "
                                         f"log:\n{self.log_path.read_text(errors='replace')[-3000:]}")
                try:
                    async with http.get(f"{self.connector.base_url}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await until(healthy, timeout, interval=0.1, what="ml-connector serve to answer /healthz")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, in-flight work is lost mid-step."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=15)
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


# --- store checks ---------------------------------------------------------------------------------------------------
async def settled(store: Any) -> bool:
    counts = await store.count_by_status()
    return sum(counts.get(s, 0) for s in BUSY) == 0


async def events_by_control(store: Any) -> dict[int, EventRecord]:
    return {r.control_number: r for r in await store.list_events(limit=1_000_000)}


async def posted_messages(admin: Admin, sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in await teams_bot_messages(admin, sandbox)}


async def raise_events(admin: Admin, sandbox: Sandbox, op: str, n: int, **args: Any) -> list[dict[str, Any]]:
    """Run a scenario operation n times (F&O commits, the sender delivers through its queue); the payloads."""
    payloads: list[dict[str, Any]] = []
    for _ in range(n):
        payloads += (await admin.post(f"{sandbox.scenario}/{op}", {"legal_entity": "usmf", **args}))["events"]
    return payloads


def steps(history: list[Any], step: str, outcome: str) -> list[Any]:
    return [h for h in history if h.step == step and h.outcome == outcome]


def run_cli(args: list[str], connector: Connector, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ml_connector_exe() + args, cwd=connector.db_path.parent, capture_output=True, text=True,
                          env=subprocess_env(connector.settings, connector.master_key), timeout=timeout)



async def wait_finished(store: Any, payloads: list[dict[str, Any]], timeout: float, *,
                        what: str = "") -> dict[int, EventRecord]:
    """Wait until every payload's event is stored and no longer queued/processing; the records by ControlNumber."""
    wanted = {p["ControlNumber"] for p in payloads}

    async def finished() -> dict[int, EventRecord] | None:
        counts = await store.count_by_status()  # cheap first: listing thousands of payloads is not
        if sum(counts.values()) < len(wanted) or any(counts.get(s, 0) for s in BUSY):
            return None
        by = await events_by_control(store)
        if wanted <= set(by) and all(by[c].status not in BUSY for c in wanted):
            return {c: by[c] for c in wanted}
        return None

    return await until(finished, timeout, interval=0.1, what=what or f"{len(wanted)} event(s) to finish")
