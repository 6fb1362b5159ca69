"""One trust for every connection the bot makes: the system's CAs PLUS the configured extra CA (`ca_file`).

Two private CAs: "P" is the configured ca_file (a TLS-inspecting proxy's CA), "S" stands for the system store (the
test makes it the process's OpenSSL default with SSL_CERT_FILE / SSL_CERT_DIR). REQUESTS_CA_BUNDLE and
CURL_CA_BUNDLE point at an unrelated bundle: they are ignored. Each kind of call is made to a server signed by P and
to one signed by S, and must verify both: botbuilder's inbound OpenID metadata + JWKS fetch, botbuilder's in-turn
Connector reply (msrest/requests), and our proactive Connector call (aiohttp).
"""

from __future__ import annotations

import json

import pytest
import requests
from aiohttp import web

from sandbox.tls import make_ca
from tests.bot.conftest import FakeConnector, ThreadedServer, channel_keys_app


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
    return {"P": proxy_ca, "S": system_ca}


@pytest.fixture
def keys_servers(cas, channel_keys):
    servers = {name: ThreadedServer(channel_keys_app(channel_keys, "https"), ca.server_context()).start()
               for name, ca in cas.items()}
    yield {name: f"https://127.0.0.1:{s.port}/v1/.well-known/openidconfiguration" for name, s in servers.items()}
    for s in servers.values():
        s.stop()


@pytest.fixture
async def connectors(cas, aiohttp_server):
    made = {}
    for name, ca in cas.items():
        fake = FakeConnector()
        server = await aiohttp_server(fake.app(), ssl=ca.server_context())
        fake.url = f"https://127.0.0.1:{server.port}/"
        made[name] = fake
    return made


@pytest.mark.parametrize("keys_at,connector_at", [("P", "S"), ("S", "P")])
async def test_inbound_keys_and_in_turn_reply_trust_system_plus_extra_ca(cas, keys_servers, connectors, make_runtime,
                                                                       channel_keys, handlers, make_activity,
                                                                       aiohttp_client, keys_at, connector_at):
    runtime = make_runtime(ca_file=str(cas["P"].cert_path),
                           to_bot_from_channel_openid_metadata_url=keys_servers[keys_at])
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    client = await aiohttp_client(app)
    connector = connectors[connector_at]
    handlers.message_result = "Hello."  # answered in the turn, through botbuilder's msrest/requests client
    body = make_activity("message", connector.url, text="hi")
    header = f"Bearer {channel_keys.token(service_url=connector.url)}"
    response = await client.post("/api/messages", json=body, headers={"Authorization": header})
    assert response.status == 201, await response.text()  # the OpenID metadata and keys were fetched and trusted
    assert [name for name, _ in handlers.calls] == ["message"]
    [reply] = connector.requests  # the in-turn reply reached the Connector over TLS
    assert reply["method"] == "POST" and reply["json"]["text"] == "Hello."


@pytest.mark.parametrize("at", ["P", "S"])
async def test_proactive_connector_call_trusts_system_plus_extra_ca(cas, connectors, make_runtime, at):
    runtime = make_runtime(ca_file=str(cas["P"].cert_path))
    connector = connectors[at]
    message_id = await runtime.send_to_conversation(connector.url, "19:c@thread.tacv2",
                                                    {"type": "message", "text": "x"})
    assert message_id and json.dumps(connector.requests[0]["json"]).count('"x"') == 1


async def test_a_server_under_neither_ca_is_refused(cas, tmp_path, channel_keys, make_runtime, aiohttp_client,
                                                    make_activity, connectors):
    stranger = make_ca(tmp_path / "stranger")
    server = ThreadedServer(channel_keys_app(channel_keys, "https"), stranger.server_context()).start()
    try:
        runtime = make_runtime(ca_file=str(cas["P"].cert_path), to_bot_from_channel_openid_metadata_url=(
            f"https://127.0.0.1:{server.port}/v1/.well-known/openidconfiguration"))
        app = web.Application()
        app.router.add_post("/api/messages", runtime.messages_handler())
        client = await aiohttp_client(app)
        url = connectors["P"].url
        header = f"Bearer {channel_keys.token(service_url=url)}"
        response = await client.post("/api/messages", json=make_activity("message", url, text="hi"),
                                     headers={"Authorization": header})
        assert response.status == 503  # the keys could not be fetched: not trusted
    finally:
        server.stop()
