"""Status page sign-in with Entra ID: the authorization code flow (MSAL, PKCE) against the Entra stand-in over real
TLS. Only users with the configured app role (or in the configured group) get a session."""

from __future__ import annotations

import html
import re
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from connector.app import create_app
from connector.config import ConfigError, Settings
from connector.endpoint_tokens import ensure_token
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store.factory import open_store
from sandbox.entra import EntraIssuer, serve_entra
from sandbox.people import PEOPLE, TENANT_ID
from sandbox.tls import make_ca

APP_ID = "5a6b7c8d-0000-4000-8000-00000000a0a1"
SECRET = "Tk~8Q-the-admin-app-secret_5678"
ROLE = "Connector.Admin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def entra(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    ca = make_ca(tmp_path / "ca")
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret=SECRET)
    runner, host = await serve_entra(issuer, ca.server_context())
    yield host, str(ca.cert_path)
    await runner.cleanup()


def _settings(tmp_path: Path, host: str, ca: str, port: int, **ops) -> Settings:
    cloud = {"name": "custom", "authority_host": host, "graph_url": "https://127.0.0.1:9/v1.0"}
    if ca:
        cloud["ca_bundle"] = ca
    return Settings(server={"public_url": f"http://127.0.0.1:{port}"}, store={"url": f"sqlite:///{tmp_path / 'ml.db'}"},
                    cloud=cloud,
                    identity={"tenant_id": TENANT_ID, "client_id": APP_ID},
                    environments=[{"name": "prod", "base_url": "https://contoso.operations.dynamics.com"}],
                    ops={"admin_sign_in": "entra", **ops})


@pytest.fixture
async def service(tmp_path: Path, entra):
    host, ca = entra
    port = _free_port()
    settings = _settings(tmp_path, host, ca, port, admin_role=ROLE)
    key = MasterKey.from_text(generate_master_key())
    store = open_store(settings.store.url)
    await store.open()
    await SecretBox(store, key).put("entra-client-secret", SECRET)
    await ensure_token(SecretBox(store, key), "env/prod/event-token")
    await store.close()
    client = TestClient(TestServer(create_app(settings, master_key=key, clock=time.time, start_pipeline=False),
                                   port=port))
    await client.start_server()
    trusted = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca)))
    yield client, trusted, host
    await trusted.close()
    await client.close()


async def _sign_in(client: TestClient, browser: aiohttp.ClientSession, host: str, *, upn: str,
                   roles: list[str]) -> aiohttp.ClientResponse:
    async with browser.post(f"{host}/_sandbox/entra/signin", json={"upn": upn, "roles": {APP_ID: roles}}) as r:
        assert r.status == 200
    async with client.get("/admin/signin", allow_redirects=False) as r:
        assert r.status == 302
        authorize = r.headers["Location"]
    assert authorize.startswith(f"{host}/{TENANT_ID}/oauth2/v2.0/authorize?")
    assert "code_challenge=" in authorize and "nonce=" in authorize  # MSAL's PKCE and nonce
    assert "response_mode=form_post" in authorize  # the code comes back in a POST body, never in a URL
    async with browser.get(authorize, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
        action, fields = _form(await r.text())
    assert urlsplit(action).path == "/admin/callback" and set(fields) >= {"code", "state"}
    return await client.post("/admin/callback", data=fields, allow_redirects=False)


def _form(page: str) -> tuple[str, dict[str, str]]:
    """The action and hidden fields of Entra's form_post page (what the browser submits)."""
    action = re.search(r'<form method="POST"[^>]* action="([^"]+)"', page)
    assert action is not None, page
    fields = {html.unescape(k): html.unescape(v)
              for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)}
    return html.unescape(action.group(1)), fields


async def test_an_admin_with_the_app_role_signs_in_with_microsoft(service) -> None:
    client, browser, host = service
    async with client.get("/admin") as r:
        assert r.status == 401 and 'href="/admin/signin"' in await r.text()
    r = await _sign_in(client, browser, host, upn=PEOPLE[0].upn, roles=[ROLE])
    assert r.status == 303, await r.text()
    async with client.get("/admin") as page:
        assert page.status == 200 and "Parked events" in await page.text()


async def test_a_user_without_the_role_is_refused(service) -> None:
    client, browser, host = service
    r = await _sign_in(client, browser, host, upn=PEOPLE[1].upn, roles=["Something.Else"])
    assert r.status == 403
    assert "may not use the status page" in await r.text() and ROLE in await r.text()
    async with client.get("/admin") as page:
        assert page.status == 401


async def test_a_callback_cannot_be_replayed_or_forged(service) -> None:
    client, browser, host = service
    async with browser.post(f"{host}/_sandbox/entra/signin", json={"upn": PEOPLE[0].upn, "roles": {APP_ID: [ROLE]}}):
        pass
    async with client.get("/admin/signin", allow_redirects=False) as r:
        authorize = r.headers["Location"]
    async with browser.get(authorize) as r:
        _, fields = _form(await r.text())
    async with client.post("/admin/callback", data=fields, allow_redirects=False) as first:
        assert first.status == 303
    client.session.cookie_jar.clear()
    async with client.post("/admin/callback", data=fields, allow_redirects=False) as again:
        assert again.status == 400  # the state was used up
    async with client.get(f"/admin/callback?{urlencode(fields)}", allow_redirects=False) as again_by_get:
        assert again_by_get.status == 400
    async with client.post("/admin/callback", data={"code": "made-up", "state": "made-up"},
                           allow_redirects=False) as forged:
        assert forged.status == 400


def test_entra_sign_in_needs_a_role_or_group(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "https://login.microsoftonline.com", "", 8080)
    with pytest.raises(ConfigError, match="admin_role"):
        create_app(settings, master_key=MasterKey.from_text(generate_master_key()), start_pipeline=False)
