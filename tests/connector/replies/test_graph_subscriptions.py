"""The Graph side of typed replies, against the sandbox Graph stand-in on loopback (its subscription rules,
handshakes, deliveries, lifecycle events and clock) and our real endpoints, store, SecretBox and GraphClient."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from approvals_fakes import ADELE, ENV, MEGAN, SU, TENANT, WI
from replies_kit import settle

from bot import GraphClient
from connector.replies.config import ReplySettings
from connector.replies.manager import Channel
from connector.replies.wiring import Replies
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store import Install, PostedCard
from sandbox.entra import EntraIssuer
from sandbox.people import PEOPLE
from sandbox.teams import start_teams

APP_ID = "5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"
GRAPH = "https://graph.microsoft.com"
PEOPLE_BY_ID = {p.object_id: p for p in PEOPLE}


class Env:
    """The sandbox Teams + Graph, our endpoints on loopback, and one or more Replies over the approvals world."""

    def __init__(self, world, teams, http, base_url, token) -> None:
        self.world, self.teams, self.http, self.base_url, self.token = world, teams, http, base_url, token
        self.replies: list[Replies] = []
        self.box = SecretBox(world.store, MasterKey.from_text(generate_master_key()))
        team = teams.world.team("Finance Operations")
        self.team = team
        self.channel_id = next(c.id for c in team.channels.values() if c.name == "Approvals")
        self.thread = ""
        self.root = ""

    @property
    def stand_in(self):
        return self.teams.graph.subscriptions

    def build(self, owner: str = "i-1", settings: ReplySettings | None = None) -> Replies:
        graph = GraphClient(self.http, self.teams.state["graph"]["graph_url"], self.token, wall_clock=self.world.clock)
        r = Replies.build(store=self.world.store, settings=settings or ReplySettings(source="graph"),
                          service=self.world.service, poster=self.world.poster, graph=graph, secrets_box=self.box,
                          public_url=self.base_url, routes=[], owner=owner, clock=self.world.clock,
                          sleep=self.world.fake_sleep, bot_app_id=APP_ID)
        self.replies.append(r)
        return r

    async def post_card(self) -> None:
        """The approval card in Finance Operations / Approvals (the sandbox thread), recorded as we record ours."""
        await self.world.work_item_event(post=False)
        async with self.http.post(self.teams.state["teams"]["admin_url"] + "/post",
                                  json={"team": "Finance Operations", "channel": "Approvals",
                                        "card": {"type": "AdaptiveCard", "version": "1.5", "body": []}}) as r:
            posted = await r.json()
        self.thread, self.root = posted["id"], posted["activityId"]
        await self.world.store.record_card(PostedCard(
            event_id=self.world.records[WI].id, route="approvals", conversation_id=self.thread,
            activity_id=self.root, service_url=SU, kind="thread", channel_id=self.channel_id,
            posted_at=self.world.clock()))
        await self.world.store.upsert_install(Install(
            id=f"team:{self.team.id}", scope="team", tenant_id=TENANT, service_url=SU, bot_id=f"28:{APP_ID}",
            team_id=self.team.id, aad_group_id=self.team.aad_group_id, channels={self.channel_id: "Approvals"}))

    async def type_reply(self, person, text: str) -> str:
        async with self.http.post(self.teams.state["teams"]["admin_url"] + "/ui/reply",
                                  json={"viewer": person.upn, "conversation": self.thread, "text": text}) as r:
            assert r.status == 201, await r.text()
            return (await r.json())["id"]

    async def deliveries(self) -> None:
        await asyncio.gather(*list(self.teams.graph.tasks), return_exceptions=True)

    async def post(self, path: str, body=None, **params) -> aiohttp.ClientResponse:
        async with self.http.post(self.base_url + path, params=params,
                                  data=json.dumps(body) if body is not None else b"") as r:
            await r.read()
            return r


@pytest.fixture
async def env(world, aiohttp_server):
    issuer = EntraIssuer(TENANT)
    issuer.register_app(APP_ID, secret="s", roles={GRAPH: ["User.Read.All", "ChannelMessage.Read.All"]})
    teams = await start_teams(verify_token=issuer.verify, bot_endpoint=None, bot_app_id=APP_ID, tenant_id=TENANT,
                              preinstalled=True)
    teams.graph.subscriptions.wall = world.clock  # one fake clock for Graph and the connector

    async def token(*, force_refresh: bool = False) -> str:
        return issuer.issue(APP_ID, GRAPH)[0]

    holder: dict[str, Env] = {}
    app = web.Application()

    async def route(request: web.Request) -> web.StreamResponse:
        endpoints = holder["env"].replies[0].endpoints
        assert endpoints is not None
        kind = request.path.rsplit("/", 1)[-1]
        return await (endpoints.notifications if kind == "notifications" else endpoints.lifecycle)(request)

    app.router.add_post("/api/graph/notifications", route)
    app.router.add_post("/api/graph/lifecycle", route)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        e = Env(world, teams, http, str(server.make_url("")).rstrip("/"), token)
        holder["env"] = e
        yield e
        for r in e.replies:
            await r.drain()
    await teams.close()


async def subscribed(env: Env, owner: str = "i-1") -> Replies:
    await env.post_card()
    r = env.build(owner) if not env.replies else env.replies[0]
    assert r.manager is not None
    done = await r.manager.sync()
    assert done["created"] == 1, done
    return r


async def test_the_handshake_is_answered_with_the_decoded_token_on_both_urls(env):
    env.build()
    for path in ("/api/graph/notifications", "/api/graph/lifecycle"):
        async with env.http.post(env.base_url + path + "?validationToken=Validation%3A%20a%2Bb%2Fc%20%3D") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            assert await r.text() == "Validation: a+b/c ="


async def test_a_subscription_is_created_per_approval_channel_with_a_secret_client_state(env):
    r = await subscribed(env)
    [sub] = await env.world.store.list_graph_subscriptions()
    assert sub.resource == f"/teams/{env.team.aad_group_id}/channels/{env.channel_id}/messages"
    assert sub.status == "active" and sub.expires_at == pytest.approx(env.world.clock() + 4320 * 60, abs=1)
    [graph_side] = env.stand_in.subs.values()
    assert graph_side.id == sub.subscription_id and graph_side.lifecycle_url.endswith("/api/graph/lifecycle")
    assert 40 <= len(graph_side.client_state) <= 128
    assert graph_side.client_state == await r.manager.client_state(sub)
    stored = json.dumps([s.__dict__ for s in await env.world.store.list_graph_subscriptions()])
    assert graph_side.client_state not in stored  # a secret: only in the SecretBox, encrypted
    assert env.stand_in.counts["handshakes"] == 2  # both URLs validated
    assert (await r.manager.sync())["created"] == 0  # idempotent


async def test_a_wrong_client_state_or_an_unknown_subscription_is_dropped_without_any_work(env):
    r = await subscribed(env)
    [sub] = await env.world.store.list_graph_subscriptions()
    reads_before = [x for x in env.teams.graph.log if "/messages/" in x["path"]]
    resource = f"teams('{env.team.aad_group_id}')/channels('{env.channel_id}')/messages('{env.root}')/replies('9')"
    forged = {"value": [{"subscriptionId": sub.subscription_id, "clientState": "guess", "changeType": "created",
                         "resource": resource, "resourceData": {"id": "9"}}]}
    assert (await env.post("/api/graph/notifications", forged)).status == 202
    unknown = {"value": [dict(forged["value"][0], subscriptionId="nope",
                              clientState=await r.manager.client_state(sub))]}
    assert (await env.post("/api/graph/notifications", unknown)).status == 202
    assert r.endpoints.counts["dropped_client_state"] == 1 and r.endpoints.counts["dropped_unknown"] == 1
    assert await env.world.store.get_reply("9") is None and await r.inbox.run_once() == 0
    assert [x for x in env.teams.graph.log if "/messages/" in x["path"]] == reads_before  # no Graph read
    assert env.world.workflow.completions == []
    assert (await env.post("/api/graph/notifications", {"nope": 1})).status == 400


async def test_a_typed_reply_is_notified_fetched_and_decided_once_even_when_delivered_twice(env):
    r = await subscribed(env)
    mid = await env.type_reply(PEOPLE_BY_ID[MEGAN.id], "reject: wrong cost centre")
    await env.deliveries()
    assert env.stand_in.counts["delivered"] == 1 and r.endpoints.counts["accepted"] == 1
    [sub] = await env.world.store.list_graph_subscriptions()
    body = {"value": [{"subscriptionId": sub.subscription_id, "clientState": await r.manager.client_state(sub),
                       "changeType": "created", "resource": f"teams('{env.team.aad_group_id}')/channels("
                       f"'{env.channel_id}')/messages('{env.root}')/replies('{mid}')"}]}
    assert (await env.post("/api/graph/notifications", body)).status == 202  # Graph delivers it again
    assert r.endpoints.counts["duplicate"] == 1
    await settle(env.world, r)
    assert env.world.workflow.completions == [
        (WI, "Reject", f"Rejected in Microsoft Teams by Megan Bowen ({MEGAN.upn}): wrong cost centre")]
    audit = [e for e in await env.world.store.list_audit(environment=ENV, work_item_id=WI) if e.action == "press"]
    assert len(audit) == 1 and "teams.microsoft.com/l/message/" in audit[0].detail  # the link to the message
    assert (await env.world.store.get_graph_subscription(sub.resource)).last_notification_at is not None


async def test_someone_else_typing_approve_is_answered_in_the_thread(env):
    r = await subscribed(env)
    await env.type_reply(PEOPLE_BY_ID[ADELE.id], "approve")
    await env.deliveries()
    await settle(env.world, r)
    assert env.world.workflow.completions == []
    [(conv, _, text)] = env.world.poster.replies
    assert conv == env.thread and "Only Megan Bowen can decide" in text


async def test_a_simulated_week_never_lets_the_subscription_expire(env):
    r = await subscribed(env)
    [first] = env.stand_in.subs
    for _ in range(7 * 24):
        env.world.clock.now += 3600
        await r.manager.sync()
        assert list(env.stand_in.subs) == [first], "the subscription expired or was replaced"
    renewed = r.manager.counts["renewed"]
    assert 4 <= renewed <= 6 and env.stand_in.counts["renewed"] == renewed  # every 1.5 days: bounded
    assert env.stand_in.counts["created"] == 1


async def test_graph_forgetting_the_subscription_re_creates_it_at_renewal(env):
    r = await subscribed(env)
    env.stand_in.subs.clear()  # Graph lost it: PATCH answers 404
    env.world.clock.now += 2 * 86400
    assert (await r.manager.sync())["recreated"] == 1
    [sub] = await env.world.store.list_graph_subscriptions()
    assert list(env.stand_in.subs) == [sub.subscription_id]


async def test_subscription_removed_re_creates_and_replies_typed_meanwhile_are_decided_once(env):
    r = await subscribed(env)
    resp = await env.http.post(env.teams.state["graph"]["admin_url"] + "/lifecycle",
                               json={"event": "subscriptionRemoved"})
    assert resp.status == 200
    await env.type_reply(PEOPLE_BY_ID[MEGAN.id], "approve – ok to pay")  # nobody is subscribed now
    assert env.stand_in.pending == []
    await r.drain()  # the lifecycle handling: re-create, then resync
    assert r.manager.counts["recreated"] == 1 and len(env.stand_in.subs) == 1
    await r.manager.resync_all()  # the slow resync finds it again: stored once
    await settle(env.world, r)
    assert env.world.workflow.completions == [
        (WI, "Approve", f"Approved in Microsoft Teams by Megan Bowen ({MEGAN.upn}): ok to pay")]


async def test_reauthorization_required_reauthorizes(env):
    r = await subscribed(env)
    await env.http.post(env.teams.state["graph"]["admin_url"] + "/lifecycle",
                        json={"event": "reauthorizationRequired"})
    await r.drain()
    assert env.stand_in.counts["reauthorized"] == 1 and r.manager.counts["reauthorized"] == 1


async def test_graph_429_is_waited_out(env):
    await env.post_card()
    r = env.build()
    await env.http.post(env.teams.state["graph"]["admin_url"] + "/fail",
                        json={"path": "/v1.0/subscriptions", "status": 429, "count": 50, "retry_after": 120})
    assert (await r.manager.sync())["throttled"] == 1
    calls = len(env.teams.graph.log)
    env.world.clock.now += 30
    await r.manager.sync()
    assert len(env.teams.graph.log) == calls  # no call before Retry-After
    await env.http.post(env.teams.state["graph"]["admin_url"] + "/reset")
    env.world.clock.now += 600
    assert (await r.manager.sync())["created"] == 1


async def test_two_instances_on_one_store_create_and_renew_each_subscription_once(env):
    await env.post_card()
    a, b = env.build("i-a"), env.build("i-b")
    await asyncio.gather(a.manager.sync(), b.manager.sync())
    assert env.stand_in.counts["created"] == 1 and len(env.stand_in.subs) == 1
    env.world.clock.now += 2 * 86400
    await asyncio.gather(a.manager.sync(), b.manager.sync())
    assert env.stand_in.counts["renewed"] == 1 and env.stand_in.counts["created"] == 1


async def test_the_notification_is_acknowledged_while_f_and_o_is_still_busy(env):
    r = await subscribed(env)
    env.world.workflow.gate = asyncio.Event()  # F&O's complete does not answer
    await env.type_reply(PEOPLE_BY_ID[MEGAN.id], "approve")
    await env.deliveries()
    await r.inbox.run_once()
    busy = asyncio.ensure_future(env.world.run_pipeline())
    await asyncio.wait_for(env.world.workflow.entered.wait(), 10)
    mid = await env.type_reply(PEOPLE_BY_ID[MEGAN.id], "approve again")
    await env.deliveries()  # acknowledged with 202 while complete still hangs
    assert env.stand_in.counts["delivered"] == 2 and not busy.done()
    assert (await env.world.store.get_reply(mid)).status == "queued"
    env.world.workflow.gate.set()
    await busy
    assert len(env.world.workflow.completions) == 1


async def test_the_manager_wants_a_subscription_for_every_channel_with_a_pending_approval_card(env):
    await env.post_card()
    r = env.build()
    assert await r.manager.channels() == [Channel(env.team.aad_group_id, env.channel_id)]
    await env.world.store.transition_approval(ENV, WI, from_status=("pending",), changes={"status": "closed"})
    assert await r.manager.channels() == []


async def test_two_syncs_in_one_process_at_once_create_one_subscription(env):
    """An install recorded (the manager wakes) while an admin runs a sync: the same lease owner twice."""
    await env.post_card()
    r = env.build()
    await asyncio.gather(r.manager.sync(), r.manager.sync(), r.manager.sync())
    assert env.stand_in.counts["created"] == 1 and len(env.stand_in.subs) == 1
    [sub] = await env.world.store.list_graph_subscriptions()
    assert list(env.stand_in.subs) == [sub.subscription_id]
