"""`ml-connector check` against the sandbox: all ✓ as configured by the demo, then one fault at a time, each giving
its own ✗ (or !) and fix while the other groups still run. One sandbox for the module; each test resets the knobs
it turned."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from connector.check import CheckResult, Status, failed, render_json, render_text, run_checks
from connector.config import Settings
from connector.demo import demo_settings, free_port, start_sandbox_process, store_demo_secrets
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store import Install, open_store

TEAM_CHANNELS = {"19:po@thread.tacv2": "Purchase orders", "19:inv@thread.tacv2": "Invoices",
                 "19:pay@thread.tacv2": "Payments", "19:appr@thread.tacv2": "Approvals"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("check-sandbox")
    proc, state = start_sandbox_process(workdir)
    try:
        yield state
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def admin(state: dict[str, Any]) -> AsyncIterator[Callable[..., Any]]:
    ctx = ssl.create_default_context(cafile=state["ca_cert"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async def call(method: str, url: str, body: Any = None) -> Any:
            async with http.request(method, url, json=body) as r:
                assert r.status < 300, (url, r.status, await r.text())
                return await r.json(content_type=None)
        yield call


@asynccontextmanager
async def https_site(state: dict[str, Any]) -> AsyncIterator[str]:
    """An https endpoint with the sandbox's loopback certificate, standing in for our public URL."""
    directory = Path(state["ca_cert"]).parent
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(directory / "server.pem", directory / "server-key.pem")
    runner = web.AppRunner(web.Application())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def install(team: str = "Procurement", team_id: str = "19:procurement@thread.tacv2") -> Install:
    return Install(id=f"team:{team_id}", scope="team", tenant_id="t", service_url="http://127.0.0.1/",
                   bot_id="28:bot", team_id=team_id, team_name=team, channels=dict(TEAM_CHANNELS))


class Setup:
    def __init__(self, settings: Settings, key: MasterKey) -> None:
        self.settings, self.key = settings, key

    async def run(self, **kw: Any) -> list[CheckResult]:
        return await run_checks(self.settings, master_key=self.key, timeout=10, **kw)

    async def store(self) -> Any:
        store = open_store(self.settings.store.url)
        await store.open()
        return store


async def prepared(state: dict[str, Any], workdir: Path, public_url: str,
                   installs: list[Install] | None = None, **changes: Any) -> Setup:
    workdir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(state, workdir, free_port())
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"public_url": public_url}),
                                           **changes})
    key = MasterKey.from_text(generate_master_key())
    await store_demo_secrets(settings, key, state)
    setup = Setup(settings, key)
    store = await setup.store()
    try:
        for i in [install()] if installs is None else installs:
            await store.upsert_install(i)
    finally:
        await store.close()
    return setup


def lines(results: list[CheckResult], status: Status) -> list[CheckResult]:
    return [r for r in results if r.status is status]


def one(results: list[CheckResult], group: str, item: str) -> CheckResult:
    found = [r for r in results if r.group == group and r.item == item]
    assert len(found) == 1, (group, item, render_text(results))
    return found[0]


def only_failures(results: list[CheckResult], *expected: tuple[str, str]) -> None:
    got = {(r.group, r.item) for r in lines(results, Status.FAIL)}
    assert got == set(expected), render_text(results)


ENV = "F&O contoso-sandbox"
BOT_GRAPH_ROLES = ["User.Read.All", "AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All",
                   "MailboxSettings.Read", "Application.Read.All", "ChannelMessage.Read.All"]  # the sandbox's grant


async def test_all_ok_against_the_sandbox(sandbox: dict[str, Any], tmp_path: Path) -> None:
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path, url)
        results = await setup.run()
    assert not failed(results) and not lines(results, Status.WARN), render_text(results)
    groups = {r.group for r in results}
    assert groups == {"Configuration", ENV, "Microsoft Graph", "Teams bot", "Public URL"}
    assert one(results, "Public URL", "server.public_url").detail.endswith(("TLSv1.2", "TLSv1.3"))
    assert one(results, "Teams bot", "route approvals").detail == "team Procurement, channel Approvals"
    items = {r.item for r in results if r.group == ENV}
    assert {"token", "$metadata", "app's F&O user", "plan purchase_order_confirmed", "approval actions",
            "legal entities"} <= items
    # Each plan states its F&O cost: what F&O's 6,000 requests per 5 minutes allow one app user (perf goal 1).
    assert one(results, ENV, "plan purchase_order_confirmed").detail.endswith(
        "1 OData request(s) per event: one F&O app user enriches at most 20.0 events/s under F&O's 6,000 requests "
        "per 5 minutes")
    parsed = json.loads(render_json(results))
    assert parsed[0] == {"group": "Configuration", "item": "settings", "status": "ok",
                         "detail": parsed[0]["detail"], "fix": ""}
    assert {p["status"] for p in parsed} == {"ok"}


async def test_wrong_client_secret(sandbox: dict[str, Any], tmp_path: Path) -> None:
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path, url)
        store = await setup.store()
        try:
            await SecretBox(store, setup.key).put("fo-client-secret", "not-the-secret-" + uuid.uuid4().hex)
        finally:
            await store.close()
        results = await setup.run()
    only_failures(results, (ENV, "token"))
    line = one(results, ENV, "token")
    assert "AADSTS7000215" in line.detail and "invalid client secret" in line.detail
    assert "`ml-connector secrets set fo-client-secret`" in line.fix
    assert one(results, "Microsoft Graph", "user read").status is Status.OK  # the other groups still ran


async def test_unknown_app_and_wrong_tenant(sandbox: dict[str, Any], tmp_path: Path) -> None:
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path, url)
        ident = setup.settings.identity
        setup.settings = setup.settings.model_copy(
            update={"identity": ident.model_copy(update={"client_id": str(uuid.uuid4())})})
        results = await setup.run()
        assert "AADSTS700016" in one(results, ENV, "token").detail, render_text(results)
        assert "Application (client) ID" in one(results, ENV, "token").fix
        setup.settings = setup.settings.model_copy(
            update={"identity": ident.model_copy(update={"tenant_id": str(uuid.uuid4())})})
        results = await setup.run()
    line = one(results, ENV, "token")
    assert "AADSTS90002" in line.detail and "Directory (tenant) ID" in line.fix, render_text(results)


async def test_certificate_not_registered(sandbox: dict[str, Any], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path, url)
        store = await setup.store()
        try:
            await SecretBox(store, setup.key).put("fo-cert-key", pem)
        finally:
            await store.close()
        ident = setup.settings.identity.model_copy(update={"credential": "fo-cert-key", "credential_type":
                                                           "certificate", "certificate_thumbprint": "AB" * 20})
        setup.settings = setup.settings.model_copy(update={"identity": ident})
        results = await setup.run()
    only_failures(results, (ENV, "token"))
    line = one(results, ENV, "token")
    assert "AADSTS700027" in line.detail and "Certificates & secrets" in line.fix
    assert "PRIVATE KEY" not in render_text(results) + render_json(results)


async def test_missing_graph_role(sandbox: dict[str, Any], tmp_path: Path) -> None:
    graph = sandbox["graph"]
    resource = graph.get("resource") or "https://graph.microsoft.com"
    bot = sandbox["teams"]["bot_app_id"]
    entra = sandbox["entra"]["admin_url"] + "/entra/roles"
    async with https_site(sandbox) as url, admin(sandbox) as call:
        setup = await prepared(sandbox, tmp_path, url)
        await call("POST", entra, {"client_id": bot, "resource": resource, "roles": ["User.Read.All"]})
        try:
            results = await setup.run()
        finally:
            await call("POST", entra, {"client_id": bot, "resource": resource, "roles": BOT_GRAPH_ROLES})
    only_failures(results, ("Microsoft Graph", "permissions"))
    line = one(results, "Microsoft Graph", "permissions")
    assert "TeamsAppInstallation.ReadWriteSelfForUser.All" in line.detail and "AppCatalog.Read.All" in line.detail
    assert "admin consent" in line.fix


async def test_typed_replies_through_graph_need_channel_message_read_all(sandbox: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    graph = sandbox["graph"]
    resource = graph.get("resource") or "https://graph.microsoft.com"
    bot = sandbox["teams"]["bot_app_id"]
    entra = sandbox["entra"]["admin_url"] + "/entra/roles"
    async with https_site(sandbox) as url, admin(sandbox) as call:
        setup = await prepared(sandbox, tmp_path, url)
        replies = setup.settings.replies
        await call("POST", entra, {"client_id": bot, "resource": resource,
                                   "roles": [r for r in BOT_GRAPH_ROLES if r != "ChannelMessage.Read.All"]})
        try:
            setup.settings = setup.settings.model_copy(update={"replies": replies.model_copy(update={"source": "bot"})})
            bot_only = await setup.run()
            setup.settings = setup.settings.model_copy(
                update={"replies": replies.model_copy(update={"source": "graph"})})
            results = await setup.run()
        finally:
            await call("POST", entra, {"client_id": bot, "resource": resource, "roles": BOT_GRAPH_ROLES})
    only_failures(bot_only)  # the bot's own feed needs the manifest's RSC grant, not this tenant-wide permission
    only_failures(results, ("Microsoft Graph", "permissions"))
    line = one(results, "Microsoft Graph", "permissions")
    assert "ChannelMessage.Read.All" in line.detail and "typed approval replies" in line.detail, line.detail


async def test_plan_field_and_approval_action_missing_from_metadata(sandbox: dict[str, Any], tmp_path: Path) -> None:
    """A missing key field (the read cannot be made: events would park) is ✗; a missing selected field only costs
    the card that field (the service leaves it out, as a real environment's differences degrade), so it is !."""
    schema = sandbox["fno"]["admin_url"] + "/fno/schema"
    async with https_site(sandbox) as url, admin(sandbox) as call:
        setup = await prepared(sandbox, tmp_path, url)
        await call("POST", schema, {"remove_fields": {"PurchaseOrderHeadersV2": ["PurchaseOrderName"],
                                                      "PurchaseOrderLinesV2": ["PurchaseOrderNumber"]},
                                    "remove_actions": ["complete"]})
        try:
            results = await setup.run()
            await call("POST", schema, {"reset": True})
            await call("POST", schema, {"remove_fields": {"PurchaseOrderHeadersV2": ["PurchaseOrderName"]}})
            only_selected = await setup.run()
        finally:
            await call("POST", schema, {"reset": True})
    only_failures(results, (ENV, "plan purchase_order_confirmed"), (ENV, "approval actions"))
    plan = one(results, ENV, "plan purchase_order_confirmed")
    assert "PurchaseOrderLinesV2 has no PurchaseOrderNumber to read record.lines by" in plan.detail, plan.detail
    assert "PurchaseOrderHeadersV2 has no PurchaseOrderName" in plan.detail
    assert "record.order.PurchaseOrderName" in plan.detail and "PurchaseOrderConfirmedBusinessEvent" in plan.detail
    assert "[[enrichment]]" in plan.fix and "[[enrichment.plans]]" not in plan.fix
    action = one(results, ENV, "approval actions")
    assert "no bound action 'complete'" in action.detail and "complete_action" in action.fix

    only_failures(only_selected)
    degraded = one(only_selected, ENV, "plan purchase_order_confirmed")
    assert degraded.status is Status.WARN and "leaves it out" in degraded.detail, degraded


async def test_plan_navigation_missing_from_metadata_is_a_warning_with_the_request_count(
        sandbox: dict[str, Any], tmp_path: Path) -> None:
    """A declared $expand navigation $metadata lacks: the service reads that fetch on its own (the card still goes
    out), so it is ! and says what it costs in F&O requests."""
    schema = sandbox["fno"]["admin_url"] + "/fno/schema"
    async with https_site(sandbox) as url, admin(sandbox) as call:
        setup = await prepared(sandbox, tmp_path, url)
        healthy = await setup.run()
        await call("POST", schema, {"remove_fields": {"PurchaseOrderHeadersV2": ["Vendor"]}})
        try:
            results = await setup.run()
        finally:
            await call("POST", schema, {"reset": True})
    ok = one(healthy, ENV, "plan purchase_order_confirmed")
    assert ok.status is Status.OK and "1 OData request(s) per event" in ok.detail, ok.detail
    only_failures(results)
    line = one(results, ENV, "plan purchase_order_confirmed")
    assert line.status is Status.WARN, line
    assert "PurchaseOrderHeadersV2 has no navigation property Vendor" in line.detail, line.detail
    assert "record.vendor separately" in line.detail and "2 OData request(s) per event here instead of 1" in line.detail
    assert "expand" in line.fix


async def test_unknown_legal_entity(sandbox: dict[str, Any], tmp_path: Path) -> None:
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path, url)
        env = setup.settings.environments[0].model_copy(update={"legal_entities": ["usmf", "zz99"]})
        routes = [dict(setup.settings.routes[0], legal_entities=["demf", "xx01"])] + setup.settings.routes[1:]
        setup.settings = setup.settings.model_copy(update={"environments": [env], "routes": routes})
        results = await setup.run()
    only_failures(results, (ENV, "legal entities"))
    line = one(results, ENV, "legal entities")
    assert "zz99 (environments 'contoso-sandbox' legal_entities) does not exist" in line.detail
    assert "xx01 (route 'purchase-orders') does not exist" in line.detail
    assert "usmf" not in line.detail.split("does not exist")[-1] and "usmf" in line.fix


async def test_app_without_fno_user(sandbox: dict[str, Any], tmp_path: Path) -> None:
    apps = sandbox["fno"]["admin_url"] + "/fno/apps"
    client_id = sandbox["fno"]["client_id"]
    async with https_site(sandbox) as url, admin(sandbox) as call:
        setup = await prepared(sandbox, tmp_path, url)
        saved = next(a for a in await call("GET", apps) if a["client_id"].lower() == client_id.lower())
        config = sandbox["fno"]["admin_url"] + "/fno/config"
        await call("POST", apps + "/remove", {"client_id": client_id})
        try:
            results = await setup.run()
            # real F&O's status for an unmapped app is unconfirmed (dynamics.md §4): a 401 gets the same answer
            await call("POST", config, {"unknown_client_status": 401})
            results_401 = await setup.run()
        finally:
            await call("POST", config, {"unknown_client_status": 403})
            await call("POST", apps, saved)
    for status, found in (("403", results), ("401", results_401)):
        only_failures(found, (ENV, "app's F&O user"))
        line = one(found, ENV, "app's F&O user")
        assert f"HTTP {status}" in line.detail and "not mapped" in line.detail
        assert "System administration > Setup > Microsoft Entra ID applications" in line.fix and client_id in line.fix


async def test_app_not_installed_and_ambiguous_team(sandbox: dict[str, Any], tmp_path: Path) -> None:
    async with https_site(sandbox) as url:
        setup = await prepared(sandbox, tmp_path / "none", url, installs=[])
        results = await setup.run()
        route = one(results, "Teams bot", "route payments")
        assert route.status is Status.FAIL and "not installed in team Procurement" in route.detail
        assert "add it in Teams" in route.fix
        twice = [install(), install(team_id="19:other@thread.tacv2")]
        setup = await prepared(sandbox, tmp_path / "twice", url, installs=twice)
        results = await setup.run()
    route = one(results, "Teams bot", "route payments")
    assert route.status is Status.FAIL and "matches 2 installed teams" in route.detail
    assert "use the team id" in route.fix


async def test_unreachable_hosts(sandbox: dict[str, Any], tmp_path: Path) -> None:
    """The F&O host and the public URL do not answer: one ✗ for F&O (the token still comes: the sandbox's Entra
    issues tokens for any resource), a ! for the public URL, and every other group still runs."""
    closed = free_port()
    setup = await prepared(sandbox, tmp_path, f"https://127.0.0.1:{free_port()}")
    env = setup.settings.environments[0].model_copy(update={"base_url": f"https://127.0.0.1:{closed}"})
    setup.settings = setup.settings.model_copy(update={"environments": [env]})
    results = await setup.run()
    only_failures(results, (ENV, "$metadata"))
    line = one(results, ENV, "$metadata")
    assert line.detail == (f"cannot reach https://127.0.0.1:{closed}: connection refused; check the URL, DNS, "
                           "proxy"), line.detail
    public = one(results, "Public URL", "server.public_url")
    assert public.status is Status.WARN and "cannot reach" in public.detail  # ! not ✗
    assert one(results, "Teams bot", "signing keys").status is Status.OK
    assert one(results, "Microsoft Graph", "user read").status is Status.OK


async def test_master_key_file_mode(sandbox: dict[str, Any], tmp_path: Path) -> None:
    setup = await prepared(sandbox, tmp_path, None)
    keyfile = tmp_path / "master.key"
    keyfile.write_text(generate_master_key())
    keyfile.chmod(0o644)
    results = await run_checks(setup.settings, timeout=10, environ={"ML_MASTER_KEY_FILE": str(keyfile)})
    line = one(results, "Configuration", "master key file mode")
    assert line.status is Status.FAIL and "0644" in line.detail and f"chmod 600 {keyfile}" in line.fix
    assert one(results, "Public URL", "server.public_url").status is Status.WARN  # unset: a warning
    os.chmod(keyfile, 0o600)
    results = await run_checks(setup.settings, timeout=10, environ={"ML_MASTER_KEY_FILE": str(keyfile)})
    assert one(results, "Configuration", "master key file mode").status is Status.OK
    secret = one(results, "Configuration", "secret fo-client-secret")  # stored under another key
    assert secret.status is Status.FAIL and "master key" in secret.fix
