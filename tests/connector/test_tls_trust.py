"""`[cloud] ca_bundle` means one thing for every TLS connection: an extra CA ADDED to the system's.

Two private CAs: "P" is the configured ca_bundle (a TLS-inspecting proxy's CA), "S" stands for the system store
(made the process's OpenSSL default with SSL_CERT_FILE / SSL_CERT_DIR). REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE point at
an unrelated bundle and are ignored. MSAL's token call (requests) and the aiohttp OData and Graph calls must
verify a server signed by P and one signed by S. (botbuilder's OpenID/JWKS fetch and the Connector calls:
tests/bot/test_bot_tls.py.)
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import requests
from aiohttp import web

from bot import GraphClient
from connector.secrets import Secret
from connector.tls import client_ssl_context, trusting_session
from connector.tokens import ClientSecret, TokenProvider, TokenUnavailable, fo_scope
from dynamics import ODataClient
from sandbox.entra import EntraIssuer, serve_entra
from sandbox.people import TENANT_ID
from sandbox.tls import make_ca

APP_ID = "5a6b7c8d-0000-4000-8000-00000000c001"
SECRET = "Tk~8Q-another-secret-value_5678"
FO = "https://contoso.operations.dynamics.com"


@pytest.fixture
def cas(tmp_path, monkeypatch):
    proxy_ca = make_ca(tmp_path / "p")
    system_ca = make_ca(tmp_path / "s")
    empty = tmp_path / "no-system-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(system_ca.cert_path))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # knows neither P nor S
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    return {"P": proxy_ca, "S": system_ca, "stranger": make_ca(tmp_path / "x")}


@pytest.fixture
async def entra(cas):
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret=SECRET)
    runners, hosts = [], {}
    for name, ca in cas.items():
        runner, hosts[name] = await serve_entra(issuer, ca.server_context())
        runners.append(runner)
    yield issuer, hosts
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("at", ["P", "S"])
async def test_msal_token_call_trusts_system_plus_ca_bundle(cas, entra, at):
    issuer, hosts = entra
    provider = TokenProvider(authority_host=hosts[at], ca_bundle=str(cas["P"].cert_path))
    try:
        token = await provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))()
        issuer.verify(token, FO)
    finally:
        provider.close()


async def test_msal_token_call_refuses_a_ca_it_was_not_given(cas, entra):
    _, hosts = entra
    provider = TokenProvider(authority_host=hosts["stranger"], ca_bundle=str(cas["P"].cert_path))
    try:
        with pytest.raises(TokenUnavailable, match="SSLError"):
            await provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))()
    finally:
        provider.close()


def _service_app() -> web.Application:
    """Just enough F&O OData and Graph for one call each."""
    app = web.Application()

    async def vendors(request: web.Request) -> web.Response:
        return web.json_response({"value": [{"VendorAccountNumber": "V-1"}]})

    async def user(request: web.Request) -> web.Response:
        return web.json_response({"id": "u-1", "displayName": "Alex Wilber",
                                  "userPrincipalName": request.match_info["who"]})

    app.router.add_get("/data/VendorsV2", vendors)
    app.router.add_get("/v1.0/users/{who}", user)
    return app


async def _token(*, force_refresh: bool = False) -> str:
    return "t"


@pytest.mark.parametrize("at", ["P", "S"])
async def test_aiohttp_odata_and_graph_calls_trust_system_plus_ca_bundle(cas, aiohttp_server, at):
    server = await aiohttp_server(_service_app(), ssl=cas[at].server_context())
    base = f"https://127.0.0.1:{server.port}"
    tls = client_ssl_context(cas["P"].cert_path)  # what create_app hands every aiohttp client
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        odata = ODataClient(session, base, _token, ssl=tls, max_attempts=1)
        assert await odata.query("VendorsV2", company=None) == [{"VendorAccountNumber": "V-1"}]
        graph = GraphClient(session, f"{base}/v1.0", _token, ssl=tls)
        assert (await graph.get_user("alex@contoso.com")).display_name == "Alex Wilber"


async def test_requests_session_ignores_requests_ca_bundle_and_verify_paths(cas, aiohttp_server):
    servers = {}
    for name in ("P", "S", "stranger"):
        server = await aiohttp_server(_service_app(), ssl=cas[name].server_context())
        servers[name] = f"https://127.0.0.1:{server.port}/data/VendorsV2"
    session = trusting_session(cas["P"].cert_path)
    try:
        for name in ("P", "S"):
            # even a verify=<file> naming only the stranger's CA does not replace the trust
            response = await _get(session, servers[name], verify=str(cas["stranger"].cert_path))
            assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            await _get(session, servers["stranger"])
        with pytest.raises(requests.exceptions.SSLError):
            await _get(session, servers["stranger"], verify=False)  # verification cannot be switched off
    finally:
        session.close()


async def _get(session: requests.Session, url: str, **kwargs) -> requests.Response:
    return await asyncio.to_thread(session.get, url, timeout=10, **kwargs)
