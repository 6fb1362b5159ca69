"""Outbound Connector calls are plain REST on ONE aiohttp session of the runtime (no msrest client per post)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from bot import TeamsPoster, TeamsUnavailable
from bot.retry import RetryPolicy

TENANT = "11111111-1111-1111-1111-111111111111"
CHANNEL = "19:approvals@thread.tacv2"
CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Zoë <at>Alex</at>"}],
        "msteams": {"entities": [{"type": "mention", "text": "<at>Alex</at>", "mentioned": {"id": "aad-alex",
                                                                                        "name": "Alex"}}]}}


@pytest.fixture
async def peers(aiohttp_server):
    """A Connector that records each request's client socket (ip, port) and raw body."""
    seen: list[tuple] = []
    raw: list[bytes] = []
    n = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal n
        n += 1
        seen.append(request.transport.get_extra_info("peername"))
        raw.append(await request.read())
        if request.path == "/v3/conversations":
            return web.json_response({"id": f"{CHANNEL};messageid=m{n}", "activityId": f"m{n}"}, status=201)
        return web.json_response({"id": f"m{n}"}, status=201 if request.method == "POST" else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("/")), seen, raw


async def test_many_posts_share_one_session_and_one_connection(make_runtime, peers):
    url, seen, _ = peers
    runtime = make_runtime()
    poster = TeamsPoster(runtime)
    ref = await poster.create_channel_thread(url, TENANT, CHANNEL, CARD, text="New <at>Alex</at>")
    session = runtime._http  # noqa: SLF001
    for _ in range(10):
        await poster.reply(url, ref.conversation_id, CARD)
        await poster.update(url, ref.conversation_id, ref.activity_id, CARD)
    await poster.create_personal(url, TENANT, "aad-alex", CARD)
    assert runtime._http is session and not session.closed  # noqa: SLF001
    assert len(seen) == 23
    assert len(set(seen)) == 1  # sequential posts: one keep-alive connection of one pool
    await runtime.close()
    assert session.closed and runtime._http is None  # noqa: SLF001


async def test_concurrent_posts_use_the_same_pool(make_runtime, peers):
    url, seen, _ = peers
    runtime = make_runtime()
    poster = TeamsPoster(runtime)
    await asyncio.gather(*(poster.reply(url, "a:chat", CARD) for _ in range(20)))
    session = runtime._http  # noqa: SLF001
    await asyncio.gather(*(poster.reply(url, "a:chat", CARD) for _ in range(20)))
    assert runtime._http is session  # noqa: SLF001
    assert len(seen) == 40 and len(set(seen)) <= 20  # the second burst reused the first burst's connections


async def test_session_is_made_again_after_close(make_runtime, peers):
    url, seen, _ = peers
    runtime = make_runtime()
    poster = TeamsPoster(runtime)
    await poster.reply(url, "a:chat", CARD)
    await runtime.close()
    await poster.reply(url, "a:chat", CARD)
    assert len(seen) == 2 and runtime._http is not None and not runtime._http.closed  # noqa: SLF001


async def test_bodies_are_msrest_json(make_runtime, peers):
    """Same bytes as botbuilder's msrest serializer: json.dumps defaults (ASCII escapes), its key order."""
    url, _, raw = peers
    poster = TeamsPoster(make_runtime())
    await poster.reply(url, "a:chat", CARD, text="Zoë <at>Alex</at>")
    body = json.loads(raw[0])
    assert raw[0] == json.dumps(body).encode()
    assert list(body) == ["type", "serviceUrl", "channelId", "from", "conversation", "text", "attachments",
                          "entities"]
    assert body["entities"] == [{"mentioned": {"id": "aad-alex", "name": "Alex"}, "text": "<at>Alex</at>",
                                 "type": "mention"}]


async def test_thread_without_activity_id_takes_the_one_in_the_conversation_id(poster, connector):
    connector.answer(201, {"id": f"{CHANNEL};messageid=1700000000077"})
    ref = await poster.create_channel_thread(connector.url, TENANT, CHANNEL, CARD)
    assert ref.activity_id == "1700000000077"


async def test_connector_timeout_is_unavailable(make_runtime, aiohttp_server, fake_time):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"id": "late"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = await aiohttp_server(app)
    poster = TeamsPoster(make_runtime(connector_timeout=0.2), policy=RetryPolicy(max_attempts=3),
                         sleep=fake_time.sleep, clock=fake_time.clock)
    with pytest.raises(TeamsUnavailable) as info:
        await poster.reply(str(server.make_url("/")), "a:chat", CARD)
    assert info.value.status is None and fake_time.sleeps == []  # no answer: not retried inline


async def test_the_callers_middleware_sees_every_connector_call_and_may_add_headers(make_runtime, connector):
    """The service passes its client middleware (connector/ops/outbound.py): a client-request-id on each Connector
    call, and the answer for its metrics and failure logs."""
    answers: list[int] = []

    async def middleware(request, handler):
        request.headers["client-request-id"] = "00000000-0000-4000-8000-00000000c0de"
        response = await handler(request)
        answers.append(response.status)
        return response

    runtime = make_runtime(middlewares=[middleware])
    await runtime.send_to_conversation(connector.url, "19:team@thread.tacv2", {"type": "message", "text": "hi"})
    (request,) = connector.requests
    assert request["headers"]["client-request-id"] == "00000000-0000-4000-8000-00000000c0de"
    assert answers == [201]
