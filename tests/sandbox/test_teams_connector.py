"""The Bot Connector stand-in: auth, thread/1:1 creation, replies, updates, refusals, size, lint, rate limits."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from sandbox.entra import EntraIssuer
from sandbox.people import PEOPLE, TENANT_ID
from sandbox.teams import ChannelKeys, start_teams

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
OTHER_APP = "9a9a9a9a-1111-2222-3333-444444444444"
CONNECTOR = "https://api.botframework.com"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
KEYS = ChannelKeys()
ADELE = PEOPLE[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def card(text: str = "PO-1 confirmed", **extra) -> dict:
    return {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": text}], **extra}


def message(c: dict | None = None) -> dict:
    return {"type": "message", "attachments": [{"contentType": CARD_TYPE, "content": c or card()}]}


class Client:
    def __init__(self, teams, http, token: str) -> None:
        self.teams, self.http, self.token = teams, http, token

    async def call(self, method: str, path: str, body=None, token: str | None = "default"):
        headers = {}
        tok = self.token if token == "default" else token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        async with self.http.request(method, self.teams.service_url + path.lstrip("/"), json=body,
                                     headers=headers) as r:
            text = await r.text()
            return r.status, (await r.json() if text else None), r.headers

    async def create_thread(self, channel_id: str, activity: dict | None = None, **kw):
        body = {"isGroup": True, "bot": {"id": f"28:{APP_ID}"}, "activity": activity or message(),
                "channelData": {"channel": {"id": channel_id}}, "tenantID": TENANT_ID, **kw}
        return await self.call("POST", "v3/conversations", body)

    async def reply(self, conversation_id: str, activity: dict | None = None, reply_to: str | None = None):
        path = f"v3/conversations/{quote(conversation_id, safe='')}/activities"
        if reply_to:
            path += "/" + reply_to
        return await self.call("POST", path, activity or {"type": "message", "text": "reply"})


@pytest.fixture
async def env():
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret="s")
    issuer.register_app(OTHER_APP, secret="s")
    clock = FakeClock()
    teams = await start_teams(verify_token=issuer.verify, bot_endpoint=None, bot_app_id=APP_ID,
                              tenant_id=TENANT_ID, keys=KEYS, clock=clock, preinstalled=["Finance Operations"])
    token, _ = issuer.issue(APP_ID, CONNECTOR, tenant="botframework.com")
    async with aiohttp.ClientSession() as http:
        yield Client(teams, http, token), teams, issuer, clock
    await teams.close()


def chan(teams, team: str = "Finance Operations", channel: str | None = "Approvals") -> str:
    t = teams.world.team(team)
    return teams.world.find_channel(t, channel).id


async def test_every_call_needs_the_bots_own_connector_token(env):
    client, teams, issuer, _ = env
    graph_token, _ = issuer.issue(APP_ID, "https://graph.microsoft.com")
    other_app, _ = issuer.issue(OTHER_APP, CONNECTOR)
    for token in (None, "not-a-jwt", graph_token, other_app):
        status, body, _ = await client.call("POST", "v3/conversations", {"isGroup": True}, token=token)
        assert status == 401, token
        assert body == {"message": "Authorization has been denied for this request."}
    status, _, _ = await client.create_thread(chan(teams))
    assert status == 201
    log = (await (await client.http.get(teams.base_url + "/_sandbox/teams/log")).json())["requests"]
    assert [e["auth"] for e in log[:2]] == [False, True]
    assert [e["status"] for e in log] == [401, 401, 401, 401, 201]
    assert log[-1]["body_size"] > 0 and log[-1]["appid"] == APP_ID


async def test_single_tenant_token_is_accepted_too(env):
    client, teams, issuer, _ = env
    token, _ = issuer.issue(APP_ID, CONNECTOR)  # SingleTenant bots get it from their own tenant
    status, _, _ = await client.call("GET", f"v3/teams/{quote(chan(teams, channel=None), safe='')}", token=token)
    assert status == 200


async def test_thread_reply_update_delete(env):
    client, teams, _, _ = env
    channel = chan(teams)
    status, created, _ = await client.create_thread(channel)
    assert status == 201
    assert created["id"] == f"{channel};messageid={created['activityId']}"
    status, reply, _ = await client.reply(created["id"], reply_to=created["activityId"])
    assert status == 201 and reply["id"] != created["activityId"]
    thread = teams.world.threads[created["id"]]
    assert [m.id for m in thread.messages] == [created["activityId"], reply["id"]]

    conv = quote(created["id"], safe="")
    updated = message(card("PO-1 approved"))
    status, body, _ = await client.call("PUT", f"v3/conversations/{conv}/activities/{created['activityId']}", updated)
    assert (status, body) == (200, {"id": created["activityId"]})
    assert thread.messages[0].cards()[0]["body"][0]["text"] == "PO-1 approved"
    assert thread.messages[0].versions == 2

    status, body, _ = await client.call("PUT", f"v3/conversations/{conv}/activities/999", updated)
    assert status == 404 and body["error"]["code"] == "ActivityNotFoundInConversation"
    status, _, _ = await client.call("DELETE", f"v3/conversations/{conv}/activities/{reply['id']}")
    assert status == 200 and thread.messages[1].deleted


async def test_posting_to_the_channel_itself_starts_a_thread_and_tenant_spellings_are_accepted(env):
    client, teams, _, _ = env
    channel = chan(teams, channel="Payments")
    status, body, _ = await client.reply(channel, message())
    assert status == 201 and f"{channel};messageid={body['id']}" in teams.world.threads
    for key in ("tenantId", "tenantID"):
        status, _, _ = await client.call("POST", "v3/conversations", {
            "isGroup": True, "activity": message(), "channelData": {"channel": {"id": channel}}, key: TENANT_ID})
        assert status == 201
    status, body, _ = await client.create_thread(channel, tenantID="00000000-0000-0000-0000-000000000000")
    assert status == 403


async def test_size_limit_is_100_kb(env):
    client, teams, _, _ = env
    filler = "x" * (100 * 1024)
    status, body, _ = await client.create_thread(chan(teams), message(card(filler)))
    assert status == 413 and body["error"]["code"] == "MessageSizeTooBig"
    status, _, _ = await client.create_thread(chan(teams), message(card("x" * (99 * 1024))))
    assert status == 201


async def test_card_lint_version_and_mentions(env):
    client, teams, _, _ = env
    too_new = dict(card(), version="1.6")
    status, body, _ = await client.create_thread(chan(teams), message(too_new))
    assert status == 400 and body["error"]["code"] == "BadArgument" and "1.5" in body["error"]["message"]

    mention = {"type": "mention", "text": "<at>Adele Vance</at>",
               "mentioned": {"id": ADELE.object_id, "name": "Adele Vance"}}
    good = card("Approver: <at>Adele Vance</at>", msteams={"entities": [mention]})
    assert (await client.create_thread(chan(teams), message(good)))[0] == 201
    dangling = card("Approver: Adele", msteams={"entities": [mention]})
    status, body, _ = await client.create_thread(chan(teams), message(dangling))
    assert status == 400 and "does not occur" in body["error"]["message"]
    bad_id = card("<at>Adele Vance</at>", msteams={"entities": [dict(mention, mentioned={"id": "adele"})]})
    assert (await client.create_thread(chan(teams), message(bad_id)))[0] == 400

    await client.http.post(teams.base_url + "/_sandbox/teams/knobs", json={"lint": False})
    assert (await client.create_thread(chan(teams), message(too_new)))[0] == 201


async def test_rate_limit_per_thread_windows(env):
    client, teams, _, clock = env
    status, created, _ = await client.create_thread(chan(teams))
    clock.now += 10
    start = clock.now
    for i in range(7):  # 7 per second
        clock.now = start + i * 0.1
        assert (await client.reply(created["id"]))[0] == 201
    clock.now = start + 0.7
    status, body, headers = await client.reply(created["id"])
    assert status == 429 and body["error"]["code"] == "Throttled"
    assert headers["Retry-After"] == "1"
    # another reply chain of the same channel is the same thread
    assert (await client.reply(chan(teams)))[0] == 429
    clock.now = start + 1.05  # the 1 s window has room again; the 2 s window takes its 8th
    assert (await client.reply(created["id"]))[0] == 201
    clock.now = start + 1.1
    status, _, headers = await client.reply(created["id"])
    assert status == 429 and headers["Retry-After"] == "1"  # 8 per 2 s
    clock.now = start + 2.01
    assert (await client.reply(created["id"]))[0] == 201
    # a different channel is a different thread
    assert (await client.reply(chan(teams, channel="Purchasing")))[0] == 201

    stats = await (await client.http.get(teams.base_url + "/_sandbox/teams/stats")).json()
    assert stats["throttled"] == 3 and stats["status_429"] == 3
    assert stats["posts_per_thread"][chan(teams)] == 1 + 7 + 1 + 1


async def test_thirty_second_window_and_missing_retry_after_knob(env):
    client, teams, _, clock = env
    await client.http.post(teams.base_url + "/_sandbox/teams/knobs", json={"retry_after_header": False})
    _, created, _ = await client.create_thread(chan(teams))
    for i in range(60):
        clock.now += 0.3  # under the 1 s and 2 s limits
        assert (await client.reply(created["id"]))[0] == 201, i
    clock.now += 0.3
    status, body, headers = await client.reply(created["id"])  # the 61st within 30 s
    assert status == 429 and "60/30s" in body["error"]["message"]
    assert "Retry-After" not in headers


async def test_tenant_wide_50_requests_per_second(env):
    client, teams, _, _ = env
    team = teams.world.team("Finance Operations")
    for i in range(10):
        teams.world.add_channel(team, f"c{i}")
    channels = [c.id for c in team.live_channels()]
    statuses = []
    for i in range(51):  # at most 7 per channel, so only the tenant limit can bite
        statuses.append((await client.create_thread(channels[i % len(channels)]))[0])
    assert statuses[:50] == [201] * 50 and statuses[50] == 429


async def test_uninstalled_team_and_deleted_channel(env):
    client, teams, _, _ = env
    status, body, _ = await client.create_thread(chan(teams, "IT Helpdesk", None))
    assert status == 403 and body["error"]["code"] == "BotNotInConversationRoster"
    _, created, _ = await client.create_thread(chan(teams))
    await client.http.post(teams.base_url + "/_sandbox/teams/emit",
                           json={"kind": "uninstall", "team": "Finance Operations", "silent": True})
    status, body, _ = await client.reply(created["id"])
    assert status == 403 and body["error"]["code"] == "BotNotInConversationRoster"
    await client.http.post(teams.base_url + "/_sandbox/teams/emit",
                           json={"kind": "install", "team": "Finance Operations", "silent": True})
    await client.http.post(teams.base_url + "/_sandbox/teams/emit",
                           json={"kind": "channel_deleted", "team": "Finance Operations", "channel": "Approvals",
                                 "silent": True})
    status, body, _ = await client.reply(created["id"])
    assert status == 404 and body["error"]["code"] == "ConversationNotFound"
    status, body, _ = await client.reply("19:nope@thread.tacv2;messageid=1")
    assert status == 404


async def test_one_to_one_needs_a_personal_install(env):
    client, teams, _, _ = env
    body = {"bot": {"id": f"28:{APP_ID}"}, "members": [{"id": ADELE.object_id}],
            "channelData": {"tenant": {"id": TENANT_ID}}, "tenantId": TENANT_ID}
    status, err, _ = await client.call("POST", "v3/conversations", body)
    assert status == 403 and err["error"]["code"] == "ForbiddenOperationException"
    await client.http.post(teams.base_url + "/_sandbox/teams/emit",
                           json={"kind": "install_personal", "user": "adele", "silent": True})
    status, created, _ = await client.call("POST", "v3/conversations", body)
    assert status == 201 and created["id"].startswith("a:")
    mri = teams.world.account(ADELE)["id"]
    _, again, _ = await client.call("POST", "v3/conversations", dict(body, members=[{"id": mri}]))
    assert again["id"] == created["id"]
    status, sent, _ = await client.reply(created["id"], message())
    assert status == 201
    assert teams.world.threads[created["id"]].messages[0].id == sent["id"]
    await client.http.post(teams.base_url + "/_sandbox/teams/emit", json={"kind": "block", "user": "adele"})
    status, err, _ = await client.reply(created["id"], message())
    assert status == 403 and err["error"]["code"] == "ConversationBlockedByUser"


async def test_members_and_team_routes(env):
    client, teams, _, _ = env
    _, created, _ = await client.create_thread(chan(teams))
    conv = quote(created["id"], safe="")
    for member in (ADELE.object_id, ADELE.upn, teams.world.account(ADELE)["id"]):
        status, body, _ = await client.call("GET", f"v3/conversations/{conv}/members/{quote(member, safe='')}")
        assert status == 200 and body["aadObjectId"] == ADELE.object_id and body["userPrincipalName"] == ADELE.upn
    status, body, _ = await client.call("GET", f"v3/conversations/{conv}/members/nobody@example.com")
    assert status == 404 and body["error"]["code"] == "MemberNotFoundInConversation"
    status, page1, _ = await client.call("GET", f"v3/conversations/{conv}/pagedmembers?pageSize=5")
    assert len(page1["members"]) == 5 and page1["continuationToken"]
    status, rest, _ = await client.call(
        "GET", f"v3/conversations/{conv}/pagedmembers?pageSize=50&continuationToken={page1['continuationToken']}")
    assert len(page1["members"]) + len(rest["members"]) == len(PEOPLE) and "continuationToken" not in rest
    team = teams.world.team("Finance Operations")
    status, details, _ = await client.call("GET", f"v3/teams/{quote(team.id, safe='')}")
    assert details["aadGroupId"] == team.aad_group_id and details["name"] == "Finance Operations"
    status, convs, _ = await client.call("GET", f"v3/teams/{quote(team.id, safe='')}/conversations")
    assert {"id": team.id, "name": None} in convs["conversations"] and len(convs["conversations"]) == 5
    it = teams.world.team("IT Helpdesk")
    assert (await client.call("GET", f"v3/teams/{quote(it.id, safe='')}"))[0] == 403


async def test_injected_faults_then_recovery(env):
    client, teams, _, _ = env
    r = await client.http.post(teams.base_url + "/_sandbox/teams/fail",
                               json={"path": "/v3/conversations", "status": 503, "count": 2, "retry_after": 3})
    assert r.status == 200
    for _ in range(2):
        status, _, headers = await client.create_thread(chan(teams))
        assert status == 503 and headers["Retry-After"] == "3"
    assert (await client.create_thread(chan(teams)))[0] == 201
    await client.http.post(teams.base_url + "/_sandbox/teams/fail", json={"path": "/v3/", "status": 412})
    assert (await client.create_thread(chan(teams)))[0] == 412
    stats = await (await client.http.get(teams.base_url + "/_sandbox/teams/stats")).json()
    assert stats["injected"] == 3 and stats["throttled"] == 0
    await client.http.post(teams.base_url + "/_sandbox/teams/reset", json={"threads": True})
    stats = await (await client.http.get(teams.base_url + "/_sandbox/teams/stats")).json()
    assert stats["requests"] == 0 and teams.world.threads == {}
