"""environments[].resource: F&O reached through another host (a proxy, a gateway) still gets a token for F&O itself.

The sandbox's F&O checks the token's audience against its own URL (https://127.0.0.1:PORT); the Entra stand-in
issues tokens for whatever resource is asked. Reaching F&O as https://localhost:PORT plays the proxy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connector.app import SERVICES, create_app
from connector.config import ConfigError, Settings, load_settings
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store.factory import open_store
from dynamics.errors import ODataAuthError

runner = pytest.importorskip("sandbox.runner")


@pytest.fixture
async def sandbox(tmp_path: Path):
    running = await runner.start_sandbox(tmp_path / "sandbox")
    try:
        yield running.state
    finally:
        await running.close()


async def _odata_through_proxy(state: dict, tmp_path: Path, **env_keys: str):
    port = state["fno"]["base_url"].rsplit(":", 1)[1]
    settings = Settings(
        store={"url": f"sqlite:///{tmp_path / 'c.db'}"},
        cloud={"authority_host": state["entra"]["authority_host"], "ca_bundle": state["ca_cert"]},
        identity={"tenant_id": state["tenant_id"], "client_id": state["fno"]["client_id"]},
        environments=[{"name": "via-proxy", "base_url": f"https://localhost:{port}", **env_keys}],
    )
    key = MasterKey.from_text(generate_master_key())
    store = open_store(settings.store.url)
    await store.open()
    await SecretBox(store, key).put("entra-client-secret", state["fno"]["client_secret"])
    await store.close()
    app = create_app(settings, master_key=key, start_pipeline=False)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, app[SERVICES].environments["via-proxy"].odata


async def test_the_token_is_for_the_configured_resource(sandbox: dict, tmp_path: Path) -> None:
    client, odata = await _odata_through_proxy(sandbox, tmp_path, resource=sandbox["fno"]["base_url"])
    try:
        rows = await odata.query("PurchaseOrderHeadersV2", company="usmf", top=1)
        assert len(rows) == 1
    finally:
        await client.close()


async def test_without_resource_the_proxys_host_is_the_audience_and_fo_refuses_it(
    sandbox: dict, tmp_path: Path
) -> None:
    client, odata = await _odata_through_proxy(sandbox, tmp_path)
    try:
        with pytest.raises(ODataAuthError):
            await odata.query("PurchaseOrderHeadersV2", company="usmf", top=1)
    finally:
        await client.close()


def test_resource_must_be_an_https_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environments\[0\]\.resource"):
        load_settings(environ={"ML_ENVIRONMENTS": '[{"name": "p", "base_url": "https://gw.example", '
                                                  '"resource": "contoso.operations.dynamics.com"}]'})
    s = load_settings(environ={"ML_ENVIRONMENTS": '[{"name": "p", "base_url": "https://gw.example"}]'})
    assert s.environments[0].token_resource == "https://gw.example"
