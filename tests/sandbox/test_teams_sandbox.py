"""The Teams half inside `start_sandbox`: sandbox.json keys, and tokens from the Entra stand-in work end to end."""

from __future__ import annotations

import json
import ssl
from urllib.parse import quote

import aiohttp

from sandbox.runner import start_sandbox


async def _token(http, state: dict, tenant: str, scope: str) -> str:
    teams = state["teams"]
    r = await http.post(f"{state['entra']['authority_host']}/{tenant}/oauth2/v2.0/token",
                        data={"grant_type": "client_credentials", "client_id": teams["bot_app_id"],
                              "client_secret": teams["bot_app_password"], "scope": scope})
    assert r.status == 200, await r.text()
    return (await r.json())["access_token"]


async def test_sandbox_json_and_real_tokens(tmp_path):
    running = await start_sandbox(tmp_path)
    try:
        state = json.loads((tmp_path / "sandbox.json").read_text())
        teams, graph = state["teams"], state["graph"]
        for key in ("base_url", "service_url", "openid_metadata_url", "bot_app_id", "admin_url", "page_url"):
            assert teams[key]
        assert teams["service_url"].endswith("/") and graph["graph_url"].startswith("https://")
        ctx = ssl.create_default_context(cafile=state["ca_cert"])
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            await http.post(teams["admin_url"] + "/emit", json={"kind": "install", "team": "Finance Operations",
                                                                "silent": True})
            bot_token = await _token(http, state, "botframework.com", "https://api.botframework.com/.default")
            r = await http.get(teams["service_url"] + "v3/teams/" + quote(
                running.services["teams"].world.team("Finance Operations").id, safe=""),
                headers={"Authorization": f"Bearer {bot_token}"})
            assert r.status == 200, await r.text()
            graph_token = await _token(http, state, state["tenant_id"], graph["scope"])
            r = await http.get(graph["graph_url"] + "/users?$filter="
                               + quote("mail eq 'adele.vance@contoso-distribution.example'"),
                               headers={"Authorization": f"Bearer {graph_token}"})
            assert r.status == 200 and len((await r.json())["value"]) == 1
            q = quote(f"externalId eq '{graph['teams_app_external_id']}'")
            r = await http.get(f"{graph['graph_url']}/appCatalogs/teamsApps?$filter={q}",
                               headers={"Authorization": f"Bearer {graph_token}"})
            assert (await r.json())["value"][0]["id"] == graph["teams_app_id"]
    finally:
        await running.close()
