"""The Graph stand-in: users (id, UPN, ('...') form, #EXT#), $filter, $select, $batch, app catalog, installs."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from sandbox.entra import EntraIssuer
from sandbox.people import PEOPLE, TENANT_ID
from sandbox.teams import ChannelKeys, start_teams
from sandbox.tls import make_ca

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
NO_ROLES_APP = "7e7e7e7e-1111-2222-3333-444444444444"
GRAPH = "https://graph.microsoft.com"
KEYS = ChannelKeys()
ADELE = PEOPLE[0]


@pytest.fixture
async def graph(tmp_path):
    ca = make_ca(tmp_path)
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret="s", roles={GRAPH: ["User.Read.All", "AppCatalog.Read.All",
                                                           "TeamsAppInstallation.ReadWriteSelfForUser.All"]})
    issuer.register_app(NO_ROLES_APP, secret="s")
    teams = await start_teams(ca=ca, verify_token=issuer.verify, bot_endpoint=None, bot_app_id=APP_ID,
                              tenant_id=TENANT_ID, keys=KEYS, teams_app_external_id="manifest-0001")
    token, _ = issuer.issue(APP_ID, GRAPH)
    weak, _ = issuer.issue(NO_ROLES_APP, GRAPH)
    wrong_aud, _ = issuer.issue(APP_ID, "https://api.botframework.com")
    connector = aiohttp.TCPConnector(ssl=ca.client_context())
    async with aiohttp.ClientSession(connector=connector) as http:
        async def call(method: str, path: str, body=None, tok: str | None = token):
            headers = {"Authorization": f"Bearer {tok}"} if tok else {}
            async with http.request(method, teams.state["graph"]["graph_url"] + path, json=body,
                                    headers=headers) as r:
                text = await r.text()
                return r.status, (await r.json() if text else None), r.headers
        yield call, teams, {"weak": weak, "wrong_aud": wrong_aud}, http
    await teams.close()


async def test_graph_is_https_signed_by_the_sandbox_ca(graph):
    _, teams, _, _ = graph
    assert teams.state["graph"]["graph_url"].startswith("https://127.0.0.1:")
    assert teams.state["graph"]["graph_url"].endswith("/v1.0")


async def test_get_user_by_id_upn_and_quoted_form(graph):
    call, *_ = graph
    for key in (ADELE.object_id, ADELE.upn, ADELE.upn.upper()):
        status, body, _ = await call("GET", f"/users/{key}")
        assert status == 200 and body["id"] == ADELE.object_id and body["displayName"] == ADELE.name
        assert body["userPrincipalName"] == ADELE.upn and body["mail"] == ADELE.upn
        assert body["jobTitle"] == ADELE.job_title
    status, body, _ = await call("GET", f"/users('{ADELE.upn}')")
    assert status == 200 and body["id"] == ADELE.object_id
    status, body, _ = await call("GET", "/users/nobody@contoso-distribution.example")
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"


async def test_guest_upn_with_encoded_ext(graph):
    call, *_ = graph
    status, body, _ = await call("GET", "/users/kari.nordmann_fabrikam.example%23EXT%23@contoso-distribution.example")
    assert status == 200 and body["displayName"] == "Kari Nordmann"


async def test_filter_and_select(graph):
    call, *_ = graph
    q = quote(f"userPrincipalName eq '{ADELE.upn.upper()}'")
    status, body, _ = await call("GET", f"/users?$filter={q}&$select=id,displayName")
    assert status == 200 and body["value"] == [{"id": ADELE.object_id, "displayName": ADELE.name}]
    q = quote(f"mail eq '{PEOPLE[1].upn}'")
    status, body, _ = await call("GET", f"/users?$filter={q}")
    assert [u["id"] for u in body["value"]] == [PEOPLE[1].object_id]
    q = quote("mail eq 'nobody@example.com'")
    assert (await call("GET", f"/users?$filter={q}"))[1]["value"] == []
    q = quote("startswith(displayName,'A')")
    assert (await call("GET", f"/users?$filter={q}"))[0] == 400


async def test_permissions_and_audience(graph):
    call, _, tokens, _ = graph
    status, body, _ = await call("GET", f"/users/{ADELE.object_id}", tok=tokens["weak"])
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    assert (await call("GET", f"/users/{ADELE.object_id}", tok=tokens["wrong_aud"]))[0] == 401
    assert (await call("GET", f"/users/{ADELE.object_id}", tok=None))[0] == 401


async def test_batch_limits_and_throttled_sub_requests(graph):
    call, teams, _, http = graph
    reqs = [{"id": str(i), "method": "GET", "url": f"/users/{p.object_id}?$select=id"} for i, p in enumerate(PEOPLE)]
    status, body, _ = await call("POST", "/$batch", {"requests": reqs})
    assert status == 200
    assert {r["id"]: r["body"]["id"] for r in body["responses"]} == {str(i): p.object_id for i, p in enumerate(PEOPLE)}
    too_many = [{"id": str(i), "method": "GET", "url": f"/users/{ADELE.object_id}"} for i in range(21)]
    assert (await call("POST", "/$batch", {"requests": too_many}))[0] == 400

    r = await http.post(teams.state["graph"]["admin_url"] + "/fail",
                        json={"path": "/v1.0/users", "status": 429, "count": 2, "retry_after": 7})
    assert r.status == 200
    status, body, _ = await call("POST", "/$batch", {"requests": reqs[:3]})
    assert status == 200
    subs = {r["id"]: r for r in body["responses"]}
    assert [subs[str(i)]["status"] for i in range(3)] == [429, 429, 200]
    assert subs["0"]["headers"]["Retry-After"] == "7"
    assert subs["0"]["body"]["error"]["code"] == "TooManyRequests"


async def test_direct_429_knob(graph):
    call, teams, _, http = graph
    await http.post(teams.state["graph"]["admin_url"] + "/fail", json={"path": "/v1.0/users", "status": 429,
                                                                      "retry_after": 2})
    status, _, headers = await call("GET", f"/users/{ADELE.object_id}")
    assert status == 429 and headers["Retry-After"] == "2"
    assert (await call("GET", f"/users/{ADELE.object_id}"))[0] == 200


async def test_catalog_and_personal_install(graph):
    call, teams, tokens, _ = graph
    q = quote("externalId eq 'manifest-0001'")
    status, body, _ = await call("GET", f"/appCatalogs/teamsApps?$filter={q}")
    assert status == 200 and len(body["value"]) == 1
    app_id = body["value"][0]["id"]
    assert app_id == teams.state["graph"]["teams_app_id"]
    bind = {"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"}
    status, body, _ = await call("POST", f"/users/{ADELE.object_id}/teamwork/installedApps", bind,
                                 tok=tokens["weak"])
    assert status == 403 and body["error"]["code"] == "Authorization_RequestDenied"
    assert ADELE.object_id not in teams.world.personal_installs
    status, _, _ = await call("POST", f"/users/{ADELE.object_id}/teamwork/installedApps", bind)
    assert status == 201 and ADELE.object_id in teams.world.personal_installs
    assert (await call("POST", f"/users/{ADELE.object_id}/teamwork/installedApps", bind))[0] == 409
    status, body, _ = await call("GET", f"/users/{ADELE.object_id}/teamwork/installedApps")
    assert body["value"][0]["teamsApp"]["externalId"] == "manifest-0001"
    bad = {"teamsApp@odata.bind": "https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/nope"}
    assert (await call("POST", f"/users/{PEOPLE[1].object_id}/teamwork/installedApps", bad))[0] == 404


async def test_app_only_channel_message_post_is_refused(graph):
    call, *_ = graph
    status, body, _ = await call("POST", "/teams/abc/channels/19:x@thread.tacv2/messages", {"body": {"content": "x"}})
    assert status == 401 and "only for import purposes" in body["error"]["message"]
