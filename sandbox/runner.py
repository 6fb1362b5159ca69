"""Start the sandbox: the CA, then each stand-in on a free loopback port, then `sandbox.json` (DEVELOPERS.md).

`start_sandbox(...)` is the composable entry point (tests and the demo run it in-process; `SandboxThread` runs it
on its own loop in a thread). Stand-ins are "service starters": `async def start_x(ctx: SandboxContext) -> None`
that start a server, add their keys to `ctx.state` and push a cleanup onto `ctx.cleanups`. The Teams and Graph
stand-ins join by being appended to `SERVICE_STARTERS` (or passed as `extra_starters`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import secrets
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from aiohttp import web

from sandbox import contracts
from sandbox.entra import EntraIssuer, serve_entra
from sandbox.fno import FnoConfig, FnoService, add_fno_admin_routes, create_fno_app
from sandbox.people import TENANT_ID
from sandbox.scenario import Scenario, add_scenario_routes
from sandbox.seed import SERVICE_USER_ID, seed_state
from sandbox.sender import EventSender, add_sender_admin_routes
from sandbox.tls import SandboxCA, make_ca

ENVIRONMENT = "contoso-sandbox"


@dataclass
class SandboxContext:
    """What service starters share. `services` holds live objects (issuer, F&O service, sender...) by name."""

    state_dir: Path
    host: str
    ca: SandboxCA
    state: dict[str, Any]
    options: dict[str, Any]
    services: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts the system CAs and the sandbox CA (how the sender calls the connector)."""
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cafile=str(self.ca.cert_path))
        return ctx

    async def serve(self, app: web.Application) -> str:
        """Serve `app` over TLS on a free port of `host`; returns its https base URL (no trailing slash)."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0, ssl_context=self.ca.server_context())
        await site.start()
        self.cleanups.append(runner.cleanup)
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{port}"


ServiceStarter = Callable[[SandboxContext], Awaitable[None]]


async def start_entra(ctx: SandboxContext) -> None:
    issuer = EntraIssuer(TENANT_ID)
    runner, authority = await serve_entra(issuer, ctx.ca.server_context(), host=ctx.host)
    ctx.cleanups.append(runner.cleanup)
    ctx.services["entra"] = issuer
    ctx.state["entra"] = {"authority_host": authority, "admin_url": f"{authority}/_sandbox"}


async def start_fno(ctx: SandboxContext) -> None:
    """F&O: OData, the Business Events sender and the scenario API, on one https port."""
    issuer: EntraIssuer = ctx.services["entra"]
    opts = ctx.options
    state = seed_state(seed=opts.get("seed", 20261126), today=opts.get("today") or dt.date.today())
    config = FnoConfig(environment=ENVIRONMENT)
    if opts.get("fno_page_size"):
        config.page_size = int(opts["fno_page_size"])
    service = FnoService(state, issuer.verify, config=config)
    sender = EventSender(ssl_context=ctx.client_ssl_context(), rng=random.Random(opts.get("seed", 20261126)))
    scenario = Scenario(state, sender)
    service.on_complete.append(scenario.on_work_item_completed)
    app = create_fno_app(service, add_fno_admin_routes)
    add_sender_admin_routes(app, sender)
    add_scenario_routes(app, scenario)
    await sender.start()
    ctx.cleanups.append(sender.close)
    base = await ctx.serve(app)
    config.base_url = base  # the token audience: the environment URL without a trailing slash
    client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
    issuer.register_app(client_id, secret=secret)
    state.register_app(client_id, SERVICE_USER_ID, "ml-connector")
    ctx.services.update(fno=service, sender=sender, scenario=scenario)
    ctx.state["fno"] = {"base_url": base, "environment": ENVIRONMENT, "client_id": client_id,
                        "client_secret": secret, "admin_url": f"{base}/_sandbox"}
    ctx.state["sender"] = {"admin_url": f"{base}/_sandbox/events"}
    ctx.state["scenario"] = {
        "url": f"{base}/_sandbox/scenario",
        # what an F&O admin would activate in the business event catalog for this scenario
        "event_ids": [contracts.PO_CONFIRMED, contracts.VENDOR_INVOICE_POSTED, contracts.VENDOR_PAYMENT_POSTED,
                      scenario.work_item_event_id, scenario.element_event_id, scenario.workflow_event_id],
    }


SERVICE_STARTERS: list[ServiceStarter] = [start_entra, start_fno]  # the Teams half appends its starters here


@dataclass
class RunningSandbox:
    state: dict[str, Any]  # what sandbox.json holds
    context: SandboxContext

    @property
    def services(self) -> dict[str, Any]:
        return self.context.services

    async def close(self) -> None:
        while self.context.cleanups:
            await self.context.cleanups.pop()()


def write_state_file(state_dir: Path, state: dict[str, Any]) -> Path:
    """Write sandbox.json atomically (temp file + rename): readers never see half a file."""
    path = state_dir / "sandbox.json"
    tmp = state_dir / f".sandbox.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    tmp.chmod(0o600)  # it holds a client secret
    os.replace(tmp, path)
    return path


async def start_sandbox(state_dir: Path | str, *, host: str = "127.0.0.1", fno_page_size: int | None = None,
                        seed: int = 20261126, today: dt.date | None = None,
                        extra_starters: Sequence[ServiceStarter] = (),
                        teams_renderer_dir: str | None = None) -> RunningSandbox:
    """Start every stand-in and write `state_dir/sandbox.json` once all listen. Close with `await .close()`."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "sandbox.json").unlink(missing_ok=True)
    ca = make_ca(state_dir)
    ctx = SandboxContext(state_dir, host, ca, {"ca_cert": str(ca.cert_path), "tenant_id": TENANT_ID},
                         {"fno_page_size": fno_page_size, "seed": seed, "today": today,
                          "teams_renderer_dir": teams_renderer_dir})
    running = RunningSandbox(ctx.state, ctx)
    try:
        for starter in [*SERVICE_STARTERS, *extra_starters]:
            await starter(ctx)
    except BaseException:
        await running.close()
        raise
    write_state_file(state_dir, ctx.state)
    return running


class SandboxThread:
    """The sandbox on its own event loop in a daemon thread: `with SandboxThread(dir) as sb: sb.state[...]`."""

    def __init__(self, state_dir: Path | str, **kwargs: Any) -> None:
        self._args, self._kwargs = state_dir, kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)
        self.running: RunningSandbox | None = None

    def start(self, timeout: float = 60) -> dict[str, Any]:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(start_sandbox(self._args, **self._kwargs), self._loop)
        self.running = future.result(timeout)
        return self.running.state

    @property
    def state(self) -> dict[str, Any]:
        assert self.running is not None, "not started"
        return self.running.state

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run a coroutine on the sandbox's loop (e.g. `sb.call(sb.running.services['sender'].drain())`)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 30) -> None:
        if self.running is not None:
            self.call(self.running.close(), timeout)
            self.running = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> "SandboxThread":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --- Teams half (owned by sandbox/teams/): Bot Framework channel + Connector + page, and Graph --------------------
from sandbox.teams.starter import start_teams_services  # noqa: E402  (kept at the end: one block to move or drop)

SERVICE_STARTERS.append(start_teams_services)
