"""bot/ against the sandbox's Bot Framework channel + Connector + Graph stand-in (sandbox/teams/), end to end.

The stand-in and our bot share ONE event loop here on purpose: our inbound token validation (botbuilder's
blocking OpenID fetch) runs on its own threads, so it cannot deadlock against a same-loop metadata server.
Tokens come from the sandbox's Entra issuer, and the Connector refuses anything else.
"""

from __future__ import annotations

from functools import partial

import aiohttp
import pytest
from aiohttp import web

from bot import (
    BotRuntime,
    BotSettings,
    BotTrust,
    CardTooLarge,
    GraphClient,
    GraphForbidden,
    RetryPolicy,
    TeamsForbidden,
    TeamsPoster,
)
from connector.tls import TrustAdapter, client_ssl_context

teams_sandbox = pytest.importorskip("sandbox.teams")
entra = pytest.importorskip("sandbox.entra")
people = pytest.importorskip("sandbox.people")

APP_ID = "6a0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e60"
GRAPH = "https://graph.microsoft.com"
TEAM = "Finance Operations"
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "PO-9 confirmed"}]}


class IssuerToken:
    """Our token callable, minting from the sandbox's Entra issuer (a new token on force_refresh)."""

    def __init__(self, issuer, resource: str, tenant: str | None = None) -> None:
        self.issuer, self.resource, self.tenant = issuer, resource, tenant
        self.calls: list[bool] = []
        self._token: str | None = None

    async def __call__(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if self._token is None or force_refresh:
            self._token, _ = self.issuer.issue(APP_ID, self.resource, tenant=self.tenant)
        return self._token


@pytest.fixture(scope="module")
def channel_keys_sandbox():
    return teams_sandbox.ChannelKeys()


@pytest.fixture
async def world(aiohttp_server, handlers, fake_time, channel_keys_sandbox):
    issuer = entra.EntraIssuer(people.TENANT_ID)
    issuer.register_app(APP_ID, secret="s", roles={GRAPH: ["User.Read.All"]})
    teams = await teams_sandbox.start_teams(verify_token=issuer.verify, bot_endpoint=None, bot_app_id=APP_ID,
                                            tenant_id=people.TENANT_ID, keys=channel_keys_sandbox)
    state = teams.state
    settings = BotSettings(app_id=APP_ID, tenant_id=people.TENANT_ID,
                           to_bot_from_channel_openid_metadata_url=state["teams"]["openid_metadata_url"],
                           to_bot_from_channel_token_issuer=state["teams"]["token_issuer"], auth_timeout=10)
    connector_token = IssuerToken(issuer, "https://api.botframework.com", "botframework.com")
    system = client_ssl_context()  # the system's CAs only: the sandbox's Teams here is plain http
    runtime = BotRuntime(settings, connector_token, handlers, trust=BotTrust(system, partial(TrustAdapter, system)))
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    server = await aiohttp_server(app)
    teams.set_bot_endpoint(str(server.make_url("/api/messages")))
    poster = TeamsPoster(runtime, policy=RetryPolicy(max_attempts=4, max_inline_wait=10), sleep=fake_time.sleep,
                         clock=fake_time.clock, rng=lambda: 0.0)
    async with aiohttp.ClientSession() as http:
        async def admin(endpoint: str, **args) -> dict:
            response = await http.post(f"{teams.base_url}/_sandbox/teams/{endpoint}", json=args)
            assert response.status == 200, await response.text()
            return await response.json()

        graph = GraphClient(http, state["graph"]["graph_url"], IssuerToken(issuer, GRAPH), sleep=fake_time.sleep,
                            clock=fake_time.clock)
        yield {"teams": teams, "runtime": runtime, "poster": poster, "admin": admin, "graph": graph,
               "token": connector_token, "issuer": issuer}
    await runtime.close()
    await teams.close()


def _channel_id(teams, name: str) -> str:
    w = teams.world
    return w.find_channel(w.team(TEAM), name).id


async def test_install_lists_channels_and_every_defect_is_401(world, handlers):
    admin, teams = world["admin"], world["teams"]
    out = await admin("emit", kind="install", team=TEAM)
    assert [d["status"] for d in out["deliveries"]] == [201, 201]
    installs = [e for n, e in handlers.calls if n == "install"]
    assert [e.source for e in installs] == ["installationUpdate", "conversationUpdate"]
    first = installs[0]
    assert first.team_name == TEAM and first.aad_group_id and first.tenant_id == people.TENANT_ID
    assert _channel_id(teams, "Approvals") in first.channels
    for defect in teams_sandbox.DEFECTS:
        out = await admin("emit", kind="message", team=TEAM, channel="Approvals", text="x", defect=defect)
        assert out["status"] == 401, (defect, out)
    assert [n for n, _ in handlers.calls] == ["install", "install"]  # no defective activity got through
    lidia = next(p for p in teams.world.people if p.fo_user_id == "lidia")
    out = await admin("emit", kind="install_personal", user="lidia")
    assert {d["status"] for d in out["deliveries"]} == {201}
    personal = [e for n, e in handlers.calls[2:] if n == "install"]
    assert personal and all(e.scope == "personal" and e.user_aad_object_id == lidia.object_id and e.conversation_id
                            for e in personal)


async def test_post_reply_update_and_throttling_against_the_connector(world, fake_time):
    teams, poster, admin = world["teams"], world["poster"], world["admin"]
    await admin("emit", kind="install", team=TEAM, silent=True)
    channel = _channel_id(teams, "Approvals")
    url = teams.service_url
    ref = await poster.create_channel_thread(url, people.TENANT_ID, channel, CARD, text="New PO")
    assert ref.conversation_id == f"{channel};messageid={ref.activity_id}"
    await admin("fail", path="/v3/conversations", status=429, count=1, retry_after=2, method="POST")
    reply = await poster.reply(url, ref.conversation_id, CARD)
    assert fake_time.sleeps == [2.0]
    updated = dict(CARD, body=[{"type": "TextBlock", "text": "PO-9 approved"}])
    await poster.update(url, ref.conversation_id, ref.activity_id, updated)
    thread = teams.world.threads[ref.conversation_id]
    assert [m.id for m in thread.messages] == [ref.activity_id, reply.activity_id]
    assert thread.messages[0].cards()[0]["body"][0]["text"] == "PO-9 approved"
    log = teams.service.log
    assert all(e["auth"] for e in log), log


async def test_oversized_card_and_personal_without_install(world):
    teams, poster, admin = world["teams"], world["poster"], world["admin"]
    await admin("emit", kind="install", team=TEAM, silent=True)
    channel = _channel_id(teams, "Approvals")
    big = dict(CARD, body=[{"type": "TextBlock", "text": "x" * 150_000}])
    with pytest.raises(CardTooLarge):
        await poster.create_channel_thread(teams.service_url, people.TENANT_ID, channel, big)
    megan = next(p for p in teams.world.people if p.fo_user_id == "megan")
    with pytest.raises(TeamsForbidden):
        await poster.create_personal(teams.service_url, people.TENANT_ID, megan.object_id, CARD)
    await admin("emit", kind="install_personal", user="megan", silent=True)
    ref = await poster.create_personal(teams.service_url, people.TENANT_ID, megan.object_id, CARD)
    assert ref.activity_id


async def test_submit_and_execute_round_trip(world, handlers):
    teams, poster, admin = world["teams"], world["poster"], world["admin"]
    await admin("emit", kind="install", team=TEAM, silent=True)
    ref = await poster.create_channel_thread(teams.service_url, people.TENANT_ID, _channel_id(teams, "Approvals"),
                                             CARD)
    handlers.submit_result = dict(CARD, body=[{"type": "TextBlock", "text": "Approved by Alex"}])
    out = await admin("emit", kind="submit", user="alex", conversation=ref.conversation_id,
                      reply_to=ref.activity_id, value={"action": "approve"})
    assert out["status"] == 201
    [submit] = [e for n, e in handlers.calls if n == "submit"]
    assert dict(submit.value) == {"action": "approve"} and submit.reply_to_id == ref.activity_id
    thread = teams.world.threads[ref.conversation_id]
    assert thread.messages[0].cards()[0]["body"][0]["text"] == "Approved by Alex"

    handlers.execute_result = dict(CARD, body=[{"type": "TextBlock", "text": "You approved"}])
    out = await admin("emit", kind="execute", user="alex", conversation=ref.conversation_id,
                      reply_to=ref.activity_id, verb="approve", data={"workItemId": "W-1"})
    assert out["status"] == 200 and out.get("replaced") is True
    [execute] = [e for n, e in handlers.calls if n == "execute"]
    assert execute.verb == "approve" and dict(execute.data)["workItemId"] == "W-1"


async def test_graph_lookups_against_the_stand_in(world):
    graph, teams = world["graph"], world["teams"]
    alex = next(p for p in teams.world.people if p.fo_user_id == "alex")
    assert (await graph.get_user(alex.upn)).id == alex.object_id
    assert (await graph.find_user_by_mail(alex.upn)).id == alex.object_id
    guest = await graph.get_user(next(u.userPrincipalName for u in teams.graph.users if "#EXT#" in
                                      u.userPrincipalName))
    assert guest is not None
    found = await graph.get_users([p.upn for p in teams.world.people] + ["ghost@nowhere.example"])
    assert found["ghost@nowhere.example"] is None
    assert sum(u is not None for u in found.values()) == len(teams.world.people)
    with pytest.raises(GraphForbidden) as info:  # the app was granted User.Read.All only
        await graph.install_app_for_user(alex.object_id, teams.graph.teams_app_id)
    assert info.value.permission
