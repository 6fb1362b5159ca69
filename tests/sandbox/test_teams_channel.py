"""The Bot Framework channel stand-in: OpenID/JWKS, signed inbound activities and their defects, emits, clicks.

A small fake bot here validates tokens the way botbuilder does (teams.md §1.6): key by kid from the published
JWKS, `msteams` endorsement, RS256, iss, aud = app id, serviceurl = the activity's serviceUrl, exp/nbf.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import jwt
import pytest
from aiohttp import web

from sandbox.entra import EntraIssuer
from sandbox.people import PEOPLE, TENANT_ID
from sandbox.teams import DEFECTS, ChannelKeys, start_teams

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
KEYS = ChannelKeys()  # RSA generation is slow-ish: one set for the module
ADELE, MEGAN = PEOPLE[0], PEOPLE[2]


class FakeBot:
    """Checks each inbound request like botbuilder's JwtTokenExtractor + EndorsementsValidator would."""

    def __init__(self) -> None:
        self.metadata_url = ""
        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.invoke_card: dict | None = None

    async def handle(self, request: web.Request) -> web.Response:
        activity = await request.json()
        try:
            await self.check(request.headers.get("Authorization"), activity)
        except ValueError as exc:
            self.rejected.append(str(exc))
            return web.json_response({"error": str(exc)}, status=401)
        self.received.append(activity)
        if activity["type"] == "invoke":
            if self.invoke_card:
                return web.json_response({"statusCode": 200, "type": CARD_TYPE, "value": self.invoke_card})
            return web.json_response({"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                                      "value": "ok"})
        return web.Response(status=201)

    async def check(self, header: str | None, activity: dict) -> None:
        if not header or not header.startswith("Bearer "):
            raise ValueError("missing token")
        token = header[7:]
        async with aiohttp.ClientSession() as s:
            meta = await (await s.get(self.metadata_url)).json()
            jwks = await (await s.get(meta["jwks_uri"])).json()
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in jwks["keys"] if k["kid"] == kid), None)
        if key is None:
            raise ValueError("unknown kid")
        if activity["channelId"] not in key.get("endorsements", []):
            raise ValueError("endorsement missing")
        try:
            claims = jwt.decode(token, jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(key)), algorithms=["RS256"],
                                audience=APP_ID, issuer=meta["issuer"], leeway=300)
        except jwt.ExpiredSignatureError:
            raise ValueError("expired") from None
        except jwt.InvalidAudienceError:
            raise ValueError("audience") from None
        except jwt.InvalidSignatureError:
            raise ValueError("signature") from None
        if claims.get("serviceurl") != activity["serviceUrl"]:
            raise ValueError("serviceurl")


@pytest.fixture
async def world():
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret="s3cret", roles={
        "https://graph.microsoft.com": ["User.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All"]})
    bot = FakeBot()
    app = web.Application()
    app.router.add_post("/api/messages", bot.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    teams = await start_teams(verify_token=issuer.verify, bot_endpoint=f"http://127.0.0.1:{port}/api/messages",
                              bot_app_id=APP_ID, tenant_id=TENANT_ID, keys=KEYS)
    bot.metadata_url = teams.state["teams"]["openid_metadata_url"]
    async with aiohttp.ClientSession() as http:
        yield teams, bot, http, issuer
    await teams.close()
    await runner.cleanup()


async def _emit(http, teams, **args) -> dict:
    r = await http.post(teams.base_url + "/_sandbox/teams/emit", json=args)
    assert r.status == 200, await r.text()
    return await r.json()


async def test_openid_metadata_and_keys_carry_endorsements(world):
    teams, _, http, _ = world
    meta = await (await http.get(teams.state["teams"]["openid_metadata_url"])).json()
    assert meta["issuer"] == "https://api.botframework.com"
    assert meta["jwks_uri"] == teams.base_url + "/v1/keys"
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    keys = (await (await http.get(meta["jwks_uri"])).json())["keys"]
    by_kid = {k["kid"]: k for k in keys}
    assert by_kid["sandbox-msteams-1"]["endorsements"] == ["msteams"]
    assert "msteams" not in by_kid["sandbox-unendorsed-1"]["endorsements"]
    assert by_kid["sandbox-unendorsed-1"]["endorsements"]  # empty would make botbuilder skip the check
    assert all(k["kty"] == "RSA" and k["use"] == "sig" and k["n"] and k["e"] for k in keys)


async def test_team_install_sends_signed_install_events(world):
    teams, bot, http, _ = world
    out = await _emit(http, teams, kind="install", team="Finance Operations", user="patti")
    assert [d["status"] for d in out["deliveries"]] == [201, 201]
    install, update = bot.received
    team = teams.world.team("Finance Operations")
    assert install["type"] == "installationUpdate" and install["action"] == "add"
    assert install["serviceUrl"] == teams.service_url and install["serviceUrl"].endswith("/")
    data = install["channelData"]
    assert data["team"] == {"id": team.id, "name": "Finance Operations", "aadGroupId": team.aad_group_id}
    assert data["channel"]["id"] == team.id == data["settings"]["selectedChannel"]["id"]  # General
    assert data["tenant"]["id"] == install["conversation"]["tenantId"] == TENANT_ID
    assert install["recipient"]["id"] == f"28:{APP_ID}"
    assert update["type"] == "conversationUpdate" and update["channelData"]["eventType"] == "teamMemberAdded"
    assert update["membersAdded"] == [{"id": f"28:{APP_ID}"}]
    assert team.installed

    await _emit(http, teams, kind="uninstall", team="Finance Operations")
    assert bot.received[2]["action"] == "remove" and not team.installed
    assert bot.received[3]["channelData"]["eventType"] == "teamMemberRemoved"


async def test_the_token_verifies_with_pyjwt_against_the_published_jwks(world):
    teams, bot, http, _ = world
    token = KEYS.token(audience=APP_ID, service_url=teams.service_url)
    jwks = await (await http.get(teams.base_url + "/v1/keys")).json()
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=APP_ID, issuer="https://api.botframework.com")
    assert claims["serviceurl"] == teams.service_url
    assert claims["nbf"] < claims["exp"]
    assert jwt.get_unverified_header(token)["kid"] == "sandbox-msteams-1"


@pytest.mark.parametrize("defect,reason", [
    ("no_token", "missing token"), ("wrong_audience", "audience"), ("wrong_serviceurl", "serviceurl"),
    ("expired", "expired"), ("unendorsed_key", "endorsement missing"), ("unknown_kid", "unknown kid"),
    ("bad_signature", "signature"),
])
async def test_each_defect_is_refused_for_its_own_reason(world, defect, reason):
    teams, bot, http, _ = world
    out = await _emit(http, teams, kind="message", team="Finance Operations", channel="Approvals", text="hi",
                      defect=defect)
    assert out["status"] == 401
    assert bot.rejected == [reason]
    assert bot.received == []


def test_defect_list_is_complete():
    assert set(DEFECTS) == {"no_token", "wrong_audience", "wrong_serviceurl", "expired", "unendorsed_key",
                            "unknown_kid", "bad_signature"}


async def test_channel_message_mentions_the_bot(world):
    teams, bot, http, _ = world
    await _emit(http, teams, kind="message", team="Finance Operations", channel="Purchasing", user="alex",
                text="status of PO-1?")
    (msg,) = bot.received
    assert msg["text"] == "<at>ML Connector</at> status of PO-1?"
    mention = msg["entities"][0]
    assert mention["type"] == "mention" and mention["mentioned"]["id"] == f"28:{APP_ID}"
    assert mention["text"] in msg["text"]
    assert msg["conversation"]["id"].endswith(";messageid=" + msg["id"])
    assert msg["from"]["aadObjectId"] == PEOPLE[1].object_id


async def test_channel_events_change_the_world_and_reach_the_bot(world):
    teams, bot, http, _ = world
    await _emit(http, teams, kind="install", team="Einkauf DE", silent=True)
    created = await _emit(http, teams, kind="channel_created", team="Einkauf DE", name="Zahlungen")
    await _emit(http, teams, kind="channel_renamed", team="Einkauf DE", channel=created["channel"]["id"],
                name="Zahlungsläufe")
    await _emit(http, teams, kind="channel_deleted", team="Einkauf DE", channel=created["channel"]["id"])
    kinds = [(a["type"], a["channelData"]["eventType"], a["channelData"]["channel"]["name"]) for a in bot.received]
    assert kinds == [("conversationUpdate", "channelCreated", "Zahlungen"),
                     ("conversationUpdate", "channelRenamed", "Zahlungsläufe"),
                     ("conversationUpdate", "channelDeleted", "Zahlungsläufe")]
    team = teams.world.team("Einkauf DE")
    assert created["channel"]["id"] not in [c.id for c in team.live_channels()]


async def _seed_card(http, teams) -> dict:
    await _emit(http, teams, kind="install", team="Finance Operations", silent=True)
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Approve PO-7?"}],
            "actions": [{"type": "Action.Execute", "verb": "approve", "data": {"workItemId": "W-1"}}]}
    r = await http.post(teams.base_url + "/_sandbox/teams/post",
                        json={"team": "Finance Operations", "channel": "Approvals", "card": card})
    assert r.status == 201
    return await r.json()


async def test_ui_submit_sends_a_signed_action_submit_as_the_viewer(world):
    teams, bot, http, _ = world
    posted = await _seed_card(http, teams)
    r = await http.post(teams.base_url + "/_sandbox/teams/ui/submit", json={
        "viewer": MEGAN.object_id, "conversation": posted["id"], "messageId": posted["activityId"],
        "action": {"type": "Action.Submit", "data": {"action": "approve", "comment": "fine"}}})
    assert (await r.json())["status"] == 201
    (act,) = bot.received
    assert act["type"] == "message" and act["value"] == {"action": "approve", "comment": "fine"}
    assert act["replyToId"] == posted["activityId"]
    assert act["conversation"]["id"] == posted["id"]
    assert act["from"]["aadObjectId"] == MEGAN.object_id
    assert act["channelData"]["team"]["id"] == teams.world.team("Finance Operations").id


async def test_ui_execute_invokes_and_a_returned_card_replaces_it_for_that_viewer_only(world):
    teams, bot, http, _ = world
    posted = await _seed_card(http, teams)
    bot.invoke_card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Approved"}]}
    r = await http.post(teams.base_url + "/_sandbox/teams/ui/submit", json={
        "viewer": ADELE.object_id, "conversation": posted["id"], "messageId": posted["activityId"],
        "action": {"type": "Action.Execute", "verb": "approve", "data": {"workItemId": "W-1"}}})
    out = await r.json()
    assert out["status"] == 200 and out["replaced"] is True
    (act,) = bot.received
    assert act["type"] == "invoke" and act["name"] == "adaptiveCard/action"
    assert act["value"]["action"] == {"type": "Action.Execute", "verb": "approve", "data": {"workItemId": "W-1"}}
    state = await (await http.get(teams.base_url + "/_sandbox/teams/state")).json()
    assert state["viewerCards"] == {ADELE.object_id: {posted["activityId"]: bot.invoke_card}}


async def test_emit_rejects_unknown_things(world):
    teams, _, http, _ = world
    for args in ({"kind": "nope"}, {"kind": "install", "team": "No Such Team"},
                 {"kind": "message", "team": "Finance Operations", "defect": "made-up"}):
        r = await http.post(teams.base_url + "/_sandbox/teams/emit", json=args)
        assert r.status == 400


async def test_unreachable_bot_is_reported_not_raised(world):
    teams, _, http, _ = world
    teams.set_bot_endpoint("http://127.0.0.1:9/api/messages")
    out = await _emit(http, teams, kind="install", team="IT Helpdesk")
    assert out["status"] is None and out["deliveries"][0]["error"]
    log = await (await http.get(teams.base_url + "/_sandbox/teams/log")).json()
    assert [e["type"] for e in log["inbound"]] == ["installationUpdate", "conversationUpdate"]


async def test_graph_install_makes_the_channel_send_a_personal_install(world):
    teams, bot, http, issuer = world
    token, _ = issuer.issue(APP_ID, "https://graph.microsoft.com")
    app_id = teams.state["graph"]["teams_app_id"]
    r = await http.post(f"{teams.graph_base_url}/v1.0/users/{ADELE.object_id}/teamwork/installedApps",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"teamsApp@odata.bind": f"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{app_id}"})
    assert r.status == 201
    for _ in range(200):  # the channel tells the bot shortly after the install, not within the request
        if len(bot.received) >= 2:
            break
        await asyncio.sleep(0.01)
    install, update = bot.received
    assert install["type"] == "installationUpdate" and install["action"] == "add"
    assert install["conversation"]["conversationType"] == "personal"
    assert install["conversation"]["id"].startswith("a:")
    assert install["from"]["aadObjectId"] == ADELE.object_id
    assert update["type"] == "conversationUpdate" and update["membersAdded"] == [{"id": f"28:{APP_ID}"}]


async def test_personal_chat_message_needs_the_personal_install(world):
    teams, bot, http, _ = world
    r = await http.post(teams.base_url + "/_sandbox/teams/emit", json={"kind": "message", "user": "megan",
                                                                       "text": "help"})
    assert r.status == 400
    await _emit(http, teams, kind="install_personal", user="megan")
    out = await _emit(http, teams, kind="message", user="megan", text="help")
    assert out["status"] == 201
    msg = bot.received[-1]
    assert msg["conversation"]["conversationType"] == "personal" and msg["text"] == "help"
    assert msg["conversation"]["id"] == bot.received[0]["conversation"]["id"]  # the chat of the install event
    assert msg["from"]["aadObjectId"] == MEGAN.object_id
