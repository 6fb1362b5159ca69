"""Oracle: botbuilder-python's own inbound authentication accepts the channel's activities and refuses each defect.

The bot runs on its own loop in a thread (botbuilder fetches OpenID metadata with blocking `requests` calls;
the stand-in runs on the test's loop). Expected outcomes per teams.md §1.6 / bot-sdk.md: a good token is
accepted; every defect is refused (botbuilder 4.17 answers 401 for some and 500 for others).
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from aiohttp import web

from sandbox.people import TENANT_ID
from sandbox.teams import DEFECTS, ChannelKeys, start_teams

botbuilder = pytest.importorskip("botbuilder.integration.aiohttp")
from botbuilder.core import TurnContext  # noqa: E402
from botbuilder.core import MessageFactory  # noqa: E402
from botbuilder.core.teams import TeamsActivityHandler  # noqa: E402
from botbuilder.schema import Attachment, ChannelAccount, ConversationParameters  # noqa: E402
from botframework.connector.auth import MicrosoftAppCredentials, PasswordServiceClientCredentialFactory  # noqa: E402

from sandbox.entra import EntraIssuer  # noqa: E402

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
KEYS = ChannelKeys()


class RecordingBot(TeamsActivityHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def on_turn(self, turn_context: TurnContext):
        a = turn_context.activity
        self.seen.append((a.type, (a.channel_data or {}).get("eventType") if isinstance(a.channel_data, dict)
                          else None))


class FixedTokenCredentials(MicrosoftAppCredentials):
    """The bot's outbound token from the Entra stand-in (teams.md §1.7: a credentials factory is the way in)."""

    def __init__(self, token: str) -> None:
        super().__init__(APP_ID, "unused")
        self._token = token

    def get_access_token(self, force_refresh: bool = False) -> str:
        return self._token


class FixedTokenFactory(PasswordServiceClientCredentialFactory):
    def __init__(self, token: str) -> None:
        super().__init__(APP_ID, "unused")
        self._token = token

    async def create_credentials(self, app_id, oauth_scope, login_endpoint, validate_authority):
        return FixedTokenCredentials(self._token)


class BotThread:
    """botbuilder's CloudAdapter behind aiohttp, on its own event loop."""

    def __init__(self, metadata_url: str, token: str = "") -> None:
        self.token = token
        self.adapter = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.bot = RecordingBot()
        self.metadata_url = metadata_url
        self.runner: web.AppRunner | None = None

    async def _start(self) -> int:
        class Config:
            APP_ID = globals()["APP_ID"]
            APP_PASSWORD = "unused-inbound-only"
            APP_TYPE = "MultiTenant"
            APP_TENANTID = None
            TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = self.metadata_url
            TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = "https://api.botframework.com"

        adapter = botbuilder.CloudAdapter(botbuilder.ConfigurationBotFrameworkAuthentication(
            Config(), credentials_factory=FixedTokenFactory(self.token)))
        self.adapter = adapter

        async def messages(request: web.Request) -> web.Response:
            try:
                return await adapter.process(request, self.bot)
            except Exception as exc:  # noqa: BLE001 - botbuilder raises for auth failures; report, as aiohttp would
                return web.Response(status=500, text=type(exc).__name__)

        app = web.Application()
        app.router.add_post("/api/messages", messages)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]

    def start(self) -> str:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return f"http://127.0.0.1:{port}/api/messages"

    async def run(self, coro):
        """Run a coroutine on the bot's loop (where botbuilder's clients live) and await it from the test's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.runner:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
async def sdk():
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret="s")
    token, _ = issuer.issue(APP_ID, "https://api.botframework.com", tenant="botframework.com")
    teams = await start_teams(verify_token=issuer.verify, bot_endpoint=None, bot_app_id=APP_ID,
                              tenant_id=TENANT_ID, keys=KEYS, preinstalled=["Finance Operations"])
    bot = BotThread(teams.state["teams"]["openid_metadata_url"], token)
    teams.set_bot_endpoint(bot.start())
    async with aiohttp.ClientSession() as http:
        async def emit(**args) -> dict:
            r = await http.post(teams.base_url + "/_sandbox/teams/emit", json=args)
            assert r.status == 200, await r.text()
            return await r.json()
        yield teams, bot, emit
    bot.stop()
    await teams.close()


async def test_botbuilder_accepts_the_channel_and_refuses_every_defect(sdk):
    teams, bot, emit = sdk
    good = await emit(kind="install", team="Finance Operations")
    assert all(200 <= d["status"] < 300 for d in good["deliveries"]), good["deliveries"]
    assert bot.bot.seen == [("installationUpdate", None), ("conversationUpdate", "teamMemberAdded")]
    ok = await emit(kind="message", team="Finance Operations", channel="Approvals", text="hello")
    assert 200 <= ok["status"] < 300

    refused = {}
    for defect in DEFECTS:
        out = await emit(kind="message", team="Finance Operations", channel="Approvals", text="x", defect=defect)
        refused[defect] = out["status"]
    assert all(status in (401, 403, 500) for status in refused.values()), refused
    assert len(bot.bot.seen) == 3  # none of the defective activities reached the bot's handler

    conv = ok["deliveries"][0]["activity"]["conversation"]["id"]
    root = ok["deliveries"][0]["activity"]["id"]
    submitted = await emit(kind="submit", user="megan", conversation=conv, reply_to=root, value={"a": 1})
    assert 200 <= submitted["status"] < 300
    await emit(kind="execute", user="megan", conversation=conv, reply_to=root, verb="approve", data={"a": 1})
    assert [t for t, _ in bot.bot.seen[3:]] == ["message", "invoke"]  # both authenticated and dispatched


async def test_botbuilder_outbound_calls_work_against_the_connector(sdk):
    """create_conversation (new channel thread), a reply inside it, an update, a proactive continue_conversation."""
    teams, bot, _ = sdk
    world = teams.world
    channel = world.find_channel(world.team("Finance Operations"), "Approvals").id
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "PO-9 confirmed"}]}
    seen: dict = {}

    async def on_created(turn_context: TurnContext):
        seen["conversation"] = turn_context.activity.conversation.id
        seen["root"] = turn_context.activity.id
        seen["reply"] = (await turn_context.send_activity("first reply")).id
        updated = MessageFactory.attachment(Attachment(content_type=CARD_TYPE, content=dict(
            card, body=[{"type": "TextBlock", "text": "PO-9 approved"}])))
        updated.id = turn_context.activity.id
        await turn_context.update_activity(updated)
        seen["reference"] = TurnContext.get_conversation_reference(turn_context.activity)

    params = ConversationParameters(
        is_group=True, bot=ChannelAccount(id=f"28:{APP_ID}"), tenant_id=TENANT_ID,
        channel_data={"channel": {"id": channel}},
        activity=MessageFactory.attachment(Attachment(content_type=CARD_TYPE, content=card)))
    await bot.run(bot.adapter.create_conversation(APP_ID, on_created, params, "msteams", teams.service_url,
                                                  "https://api.botframework.com"))
    thread = world.threads[seen["conversation"]]
    assert seen["conversation"] == f"{channel};messageid={seen['root']}"
    assert [m.id for m in thread.messages] == [seen["root"], seen["reply"]]
    assert thread.messages[0].cards()[0]["body"][0]["text"] == "PO-9 approved"

    async def later(turn_context: TurnContext):
        await turn_context.send_activity("proactive follow-up")

    await bot.run(bot.adapter.continue_conversation(seen["reference"], later, APP_ID))
    assert [m.activity.get("text") for m in thread.messages[1:]] == ["first reply", "proactive follow-up"]
    log = teams.service.log
    assert all(e["auth"] and e["status"] in (200, 201) for e in log), log
    assert [e["method"] for e in log] == ["POST", "POST", "PUT", "POST"]
