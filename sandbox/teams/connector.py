"""The Bot Connector REST API at the serviceUrl (teams.md §1.2–1.4, spec A.4): conversations, activities, members,
teams. Every call is authenticated, logged, rate limited, and refused the way Teams refuses it.

Routes only; state lives in TeamsService/World. Refusals are ConnectorError, answered by `connector_middleware`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from sandbox.teams.lint import lint_activity
from sandbox.teams.service import ConnectorError, TeamsService
from sandbox.teams.world import Thread, chat_id, thread_key

SERVICE = web.AppKey("teams_service", TeamsService)


def _svc(request: web.Request) -> TeamsService:
    return request.app[SERVICE]


@web.middleware
async def connector_middleware(request: web.Request, handler):
    if not request.path.startswith("/v3/"):
        return await handler(request)
    svc = _svc(request)
    body = await request.read()
    entry = {"time": svc.clock(), "method": request.method, "path": request.path,
             "query": request.query_string, "auth": "Authorization" in request.headers,
             "body_size": len(body), "status": None, "code": None}
    if svc.knobs.latency_ms:
        await asyncio.sleep(svc.knobs.latency_ms / 1000)
    try:
        claims = await svc.authenticate(request)
        entry["appid"] = claims.get("appid") or claims.get("azp")
        fault = svc.injected(request.method, request.path)
        if fault:
            raise fault
        resp = await handler(request)
    except ConnectorError as err:
        resp = err.response()
        entry["code"] = err.code
    except web.HTTPException as exc:  # unknown route or method
        code = "NotFound" if exc.status in (404, 405) else "BadArgument"
        resp = web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status)
        entry["code"] = code
    except Exception as exc:  # noqa: BLE001 - a stand-in bug: answer like the service would, keep it in the log
        resp = web.json_response({"error": {"code": "ServiceError", "message": repr(exc)}}, status=500)
        entry["code"] = "ServiceError"
    entry["status"] = resp.status
    svc.record(entry)
    return resp


async def _json(request: web.Request) -> dict:
    try:
        data = json.loads(await request.read() or b"null")
    except ValueError:
        raise ConnectorError(400, "BadSyntax", "Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ConnectorError(400, "BadSyntax", "Request body must be a JSON object.")
    return data


def _check_activity(svc: TeamsService, request_size: int, activity) -> None:
    if not isinstance(activity, dict):
        raise ConnectorError(400, "BadArgument", "Activity is missing or not an object.")
    if request_size > svc.knobs.max_activity_bytes:
        raise ConnectorError(413, "MessageSizeTooBig", "Message size too large.")
    if svc.knobs.lint:
        problems = lint_activity(activity)
        if problems:
            raise ConnectorError(400, "BadArgument", "; ".join(problems))


def _resolve(svc: TeamsService, conversation_id: str) -> tuple[str, Any]:
    """(kind, target) of a conversation id, or the refusal Teams gives for it."""
    w = svc.world
    if conversation_id.startswith("a:"):
        person = w.person_for_chat(conversation_id)
        if person is None:
            raise ConnectorError(404, "ConversationNotFound", "Conversation not found.")
        if person.object_id in w.blocked_users:
            raise ConnectorError(403, "ConversationBlockedByUser", "User blocked the conversation with the bot.")
        if person.object_id not in w.personal_installs:
            raise ConnectorError(403, "ForbiddenOperationException", "Bot is not installed in user's personal scope")
        return "personal", person
    found = w.channel(thread_key(conversation_id))
    if found is None or found[1].deleted:
        raise ConnectorError(404, "ConversationNotFound", "Conversation not found.")
    if not found[0].installed:
        raise ConnectorError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
    return "channel", found


async def create_conversation(request: web.Request) -> web.Response:
    svc, w = _svc(request), _svc(request).world
    body = await _json(request)
    data = body.get("channelData") or {}
    tenant = body.get("tenantId") or body.get("tenantID") or (data.get("tenant") or {}).get("id")
    if tenant and tenant != w.tenant_id:
        raise ConnectorError(403, "ForbiddenOperationException", "The bot is not allowed in this tenant.")
    activity: Any = body.get("activity")  # checked by _check_activity before use
    channel_id = (data.get("channel") or {}).get("id")
    if body.get("isGroup") and channel_id:
        _, (team, channel) = _resolve(svc, channel_id)
        svc.admit("create", channel_id)
        _check_activity(svc, len(await request.read()), activity)
        root_id = w.next_message_id()
        thread = w.new_channel_thread(team, channel, root_id)
        w.add_message(thread, activity, svc.clock(), message_id=root_id)
        _count_post(svc, thread.id)
        return web.json_response({"id": thread.id, "activityId": root_id}, status=201)
    members = body.get("members") or []
    if not members or not isinstance(members[0], dict) or not members[0].get("id"):
        raise ConnectorError(400, "BadArgument", "Either channelData.channel.id (isGroup) or members[0].id is needed.")
    person = w.person(str(members[0]["id"]), teams_ids_only=True)
    if person is None:
        raise ConnectorError(400, "BadArgument", f"Unknown member {members[0]['id']!r}.")
    _resolve(svc, chat_id(person, w.bot_app_id))
    thread = w.personal_thread(person)
    svc.admit("create", thread.id)
    out = {"id": thread.id}
    if activity:
        _check_activity(svc, len(await request.read()), activity)
        out["activityId"] = w.add_message(thread, activity, svc.clock()).id
        _count_post(svc, thread.id)
    return web.json_response(out, status=201)


def _count_post(svc: TeamsService, conversation_id: str) -> None:
    svc.posts_per_thread[thread_key(conversation_id)] += 1
    svc.posts_per_conversation[conversation_id] += 1


async def send_activity(request: web.Request) -> web.Response:
    svc, w = _svc(request), _svc(request).world
    cid = request.match_info["conversation_id"]
    reply_to = request.match_info.get("activity_id")
    kind, target = _resolve(svc, cid)
    svc.admit("send", thread_key(cid))
    activity = await _json(request)
    _check_activity(svc, len(await request.read()), activity)
    if activity.get("type", "message") != "message":
        return web.json_response({"id": w.next_message_id()}, status=201)  # typing etc.: not stored
    if kind == "personal":
        thread = w.personal_thread(target)
    elif ";messageid=" in cid:
        thread = w.threads.get(cid) or w.threads.setdefault(cid, Thread(cid, "channel", target[0].id, target[1].id))
    else:  # posting to the channel itself starts a new thread
        mid = w.next_message_id()
        thread = w.new_channel_thread(target[0], target[1], mid)
        msg = w.add_message(thread, activity, svc.clock(), message_id=mid)
        _count_post(svc, thread.id)
        return web.json_response({"id": msg.id}, status=201)
    msg = w.add_message(thread, activity, svc.clock(), reply_to=reply_to or activity.get("replyToId"))
    _count_post(svc, thread.id)
    return web.json_response({"id": msg.id}, status=201)


async def update_activity(request: web.Request) -> web.Response:
    svc, w = _svc(request), _svc(request).world
    cid, aid = request.match_info["conversation_id"], request.match_info["activity_id"]
    _resolve(svc, cid)
    svc.admit("send", thread_key(cid))
    activity = await _json(request)
    msg = w.message(cid, aid)
    if msg is None:
        raise ConnectorError(404, "ActivityNotFoundInConversation", "Conversation not found.")
    _check_activity(svc, len(await request.read()), activity)
    msg.activity = dict(activity, id=aid)
    msg.versions += 1
    for key in [k for k in w.viewer_cards if k[1] == aid]:
        del w.viewer_cards[key]  # an update replaces the card for everyone
    svc.counters["updates"] += 1
    return web.json_response({"id": aid})


async def delete_activity(request: web.Request) -> web.Response:
    svc, w = _svc(request), _svc(request).world
    cid, aid = request.match_info["conversation_id"], request.match_info["activity_id"]
    _resolve(svc, cid)
    svc.admit("send", thread_key(cid))
    msg = w.message(cid, aid)
    if msg is None:
        raise ConnectorError(404, "ActivityNotFoundInConversation", "Conversation not found.")
    msg.deleted = True
    return web.Response(status=200)


def _members(svc: TeamsService, cid: str) -> list:
    kind, target = _resolve(svc, cid)
    if kind == "personal":
        return [target]
    team = target[0]
    return [p for p in svc.world.people if p.object_id in team.member_ids]


async def get_member(request: web.Request) -> web.Response:
    svc = _svc(request)
    cid, member = request.match_info["conversation_id"], request.match_info["member_id"]
    svc.admit("members", thread_key(cid))
    person = svc.world.person(member, teams_ids_only=True)
    if person is None or person not in _members(svc, cid):
        raise ConnectorError(404, "MemberNotFoundInConversation", "The member was not found in the conversation.")
    return web.json_response(svc.world.account(person))


async def get_members(request: web.Request) -> web.Response:
    svc = _svc(request)
    cid = request.match_info["conversation_id"]
    svc.admit("members", thread_key(cid))
    return web.json_response([svc.world.account(p) for p in _members(svc, cid)])


async def paged_members(request: web.Request) -> web.Response:
    svc = _svc(request)
    cid = request.match_info["conversation_id"]
    svc.admit("members", thread_key(cid))
    people = _members(svc, cid)
    try:
        size = max(1, min(500, int(request.query.get("pageSize") or 200)))
        start = int(request.query.get("continuationToken") or 0)
    except ValueError:
        raise ConnectorError(400, "BadArgument", "Bad pageSize or continuationToken.") from None
    out: dict = {"members": [svc.world.account(p) for p in people[start:start + size]]}
    if start + size < len(people):
        out["continuationToken"] = str(start + size)
    return web.json_response(out)


def _team(svc: TeamsService, team_id: str):
    team = svc.world.teams.get(team_id)
    if team is None:
        raise ConnectorError(404, "NotFound", "Team not found.")
    if not team.installed:
        raise ConnectorError(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.")
    return team


async def get_team(request: web.Request) -> web.Response:
    svc = _svc(request)
    svc.admit("conversations", request.match_info["team_id"])
    team = _team(svc, request.match_info["team_id"])
    return web.json_response({"id": team.id, "name": team.name, "aadGroupId": team.aad_group_id,
                              "channelCount": len(team.live_channels()), "memberCount": len(team.member_ids),
                              "type": "standard"})


async def team_conversations(request: web.Request) -> web.Response:
    svc = _svc(request)
    svc.admit("conversations", request.match_info["team_id"])
    team = _team(svc, request.match_info["team_id"])
    return web.json_response({"conversations": [{"id": c.id, "name": c.name} for c in team.live_channels()]})


def add_routes(app: web.Application) -> None:
    conv = "/v3/conversations/{conversation_id}"
    app.router.add_post("/v3/conversations", create_conversation)
    app.router.add_post(conv + "/activities", send_activity)
    app.router.add_post(conv + "/activities/{activity_id}", send_activity)
    app.router.add_put(conv + "/activities/{activity_id}", update_activity)
    app.router.add_delete(conv + "/activities/{activity_id}", delete_activity)
    app.router.add_get(conv + "/members", get_members)
    app.router.add_get(conv + "/members/{member_id}", get_member)
    app.router.add_get(conv + "/pagedmembers", paged_members)
    app.router.add_get("/v3/teams/{team_id}", get_team)
    app.router.add_get("/v3/teams/{team_id}/conversations", team_conversations)
