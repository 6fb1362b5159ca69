"""Things that happen in Teams and reach the bot: installs, channel events, messages, card button clicks.

Each `emit` kind changes the world the way Teams would and sends the matching signed activities (activities.py,
channel.py). Used by `POST /_sandbox/teams/emit`, the page's button clicks and the Graph stand-in's app installs.
"""

from __future__ import annotations

from typing import Any

from sandbox.teams import activities as acts
from sandbox.teams.service import TeamsService
from sandbox.teams.world import CARD_TYPE


class EmitError(ValueError):
    """Bad emit arguments (unknown team, user, kind...): answered 400."""


def _person(svc: TeamsService, args: dict, default: str = "adele"):
    key = args.get("user") or args.get("from") or default
    person = svc.world.person(str(key))
    if person is None:
        raise EmitError(f"unknown user {key!r}")
    return person


def _team(svc: TeamsService, args: dict):
    team = svc.world.team(str(args.get("team") or ""))
    if team is None:
        raise EmitError(f"unknown team {args.get('team')!r}")
    return team


def _channel(svc: TeamsService, team, args: dict):
    channel = svc.world.find_channel(team, args.get("channel"))
    if channel is None:
        raise EmitError(f"unknown channel {args.get('channel')!r} in team {team.name!r}")
    return channel


async def _send_all(svc: TeamsService, activities: list[dict], defect: str | None) -> dict:
    deliveries = [await svc.channel.send(a, defect=defect) for a in activities]
    return {"deliveries": [d.as_json() for d in deliveries],
            "status": deliveries[-1].status if deliveries else None,
            "body": deliveries[-1].body if deliveries else None}


async def emit(svc: TeamsService, args: dict[str, Any]) -> dict:
    """Run one emit; returns what was sent and how the bot answered. Raises EmitError for bad arguments."""
    kind = args.get("kind")
    w, url, defect, silent = svc.world, svc.channel.service_url, args.get("defect"), bool(args.get("silent"))
    if kind in ("install", "uninstall"):
        team = _team(svc, args)
        team.installed = kind == "install"
        by = _person(svc, args, "patti")
        return {} if silent else await _send_all(svc, acts.team_install(w, url, team, by, remove=kind == "uninstall"),
                                                 defect)
    if kind in ("install_personal", "uninstall_personal"):
        person = _person(svc, args)
        return await personal_install(svc, person, remove=kind == "uninstall_personal", silent=silent,
                                      defect=defect)
    if kind in ("block", "unblock"):
        person = _person(svc, args)
        (w.blocked_users.add if kind == "block" else w.blocked_users.discard)(person.object_id)
        return {}
    if kind in ("channel_created", "channel_renamed", "channel_deleted"):
        team = _team(svc, args)
        if kind == "channel_created":
            channel = w.add_channel(team, str(args.get("name") or "New channel"))
        else:
            channel = _channel(svc, team, args)
            if kind == "channel_renamed":
                channel.name = str(args.get("name") or channel.display_name)
            else:
                channel.deleted = True
        event = {"channel_created": "channelCreated", "channel_renamed": "channelRenamed",
                 "channel_deleted": "channelDeleted"}[kind]
        out = {"channel": {"id": channel.id, "name": channel.display_name}}
        if not silent and team.installed:  # only an installed bot hears about channels
            out.update(await _send_all(svc, [acts.channel_event(w, url, team, channel, event,
                                                                _person(svc, args, "patti"))], defect))
        return out
    if kind == "message" and not args.get("team"):  # 1:1 chat with the bot (the app must be installed for the user)
        by = _person(svc, args)
        if by.object_id not in w.personal_installs:
            raise EmitError(f"the app is not installed for {by.name}: emit install_personal first")
        act = acts.personal_message(w, url, by, str(args.get("text") or "hello"))
        act["id"] = w.next_message_id()
        if args.get("reply_to"):  # a reply to one of the chat's messages (a card): Teams sets replyToId
            act["replyToId"] = str(args["reply_to"])
        w.add_message(w.personal_thread(by), act, svc.clock(), sender=by.object_id, message_id=act["id"])
        return await _send_all(svc, [act], defect)
    if kind == "message":
        team = _team(svc, args)
        channel = _channel(svc, team, args)
        by = _person(svc, args)
        mid = w.next_message_id()
        conv = args.get("conversation") or f"{channel.id};messageid={mid}"
        act = acts.channel_message(w, url, team, channel, by, str(args.get("text") or "hello"),
                                   mention_bot=args.get("mention_bot", True), conversation_id=conv, message_id=mid)
        thread = w.threads.get(conv) or w.new_channel_thread(team, channel, mid)
        w.add_message(thread, act, svc.clock(), sender=by.object_id, message_id=mid)
        return await _send_all(svc, [act], defect)
    if kind == "reply":
        return await channel_reply(svc, args, defect)
    if kind in ("submit", "execute"):
        return await card_action(svc, args)
    raise EmitError(f"unknown kind {kind!r}")


async def channel_reply(svc: TeamsService, args: dict[str, Any], defect: str | None = None) -> dict:
    """A user types a reply in a channel thread: {"user", "conversation": "<channel>;messageid=<root>", "text",
    "mention_bot"?}. Graph subscriptions on the channel are notified (World.message_listeners); the bot gets the
    message without an @mention only when the app has the RSC permission ChannelMessage.Read.Group (knob `rsc`)."""
    w, url = svc.world, svc.channel.service_url
    conv = str(args.get("conversation") or "")
    thread = w.threads.get(conv)
    if thread is None or thread.kind != "channel" or ";messageid=" not in conv:
        raise EmitError("conversation must be a channel thread id (<channel id>;messageid=<root message id>)")
    team = w.team(thread.team_id or "")
    channel = team.channels.get(thread.channel_id or "") if team else None
    if team is None or channel is None:
        raise EmitError("the thread's team or channel no longer exists")
    by = _person(svc, args)
    text = str(args.get("text") or "").strip()
    if not text:
        raise EmitError("text is required (what the user typed)")
    root = conv.split(";messageid=", 1)[1]
    mid = w.next_message_id()
    act = acts.channel_message(w, url, team, channel, by, text, mention_bot=bool(args.get("mention_bot", False)),
                               conversation_id=conv, message_id=mid)
    act["replyToId"] = root
    w.add_message(thread, act, svc.clock(), sender=by.object_id, message_id=mid, reply_to=root)
    for listener in list(w.message_listeners):
        listener(team, channel.id, root, mid)
    out: dict[str, Any] = {"id": mid, "conversation": conv}
    if svc.knobs.rsc and team.installed:
        out.update(await _send_all(svc, [act], defect))
    return out


async def personal_install(svc: TeamsService, person, *, remove: bool = False, silent: bool = False,
                           defect: str | None = None) -> dict:
    w = svc.world
    (w.personal_installs.discard if remove else w.personal_installs.add)(person.object_id)
    if not remove:
        w.personal_thread(person)
    if silent:
        return {}
    return await _send_all(svc, acts.personal_install(w, svc.channel.service_url, person, remove=remove), defect)


LOGIN_REQUEST = "application/vnd.microsoft.activity.loginRequest"


def _login_problem(body: dict) -> str | None:
    """What is wrong with a loginRequest (sso-obo.md §1.2: OAuthCard keys, connectionName and buttons required)."""
    value = body.get("value")
    if body.get("statusCode") != 401 or not isinstance(value, dict):
        return "a loginRequest has statusCode 401 and an OAuthCard value"
    if not value.get("connectionName"):
        return "loginRequest value.connectionName is required"
    buttons = value.get("buttons")
    if not isinstance(buttons, list) or not buttons or not all(isinstance(b, dict) and b.get("value")
                                                               for b in buttons):
        return "loginRequest value.buttons must hold a sign-in button with a URL"
    return None


async def _sign_in(svc: TeamsService, act: dict, person: Any, reply_to: str, body: dict,
                   defect: str | None) -> dict | None:
    """Teams' side of a loginRequest: SSO (mint a token for the manifest's app, resend the same press with
    `authentication`), or, when the client cannot sign in silently (knob), show the Sign-In button and stop."""
    problem = _login_problem(body)
    value = body.get("value") or {}
    exchange = value.get("tokenExchangeResource") if isinstance(value, dict) else None
    how = svc.knobs.sso if isinstance(exchange, dict) and exchange.get("id") else "button"
    if problem is not None:
        how = "invalid"
    if how == "silent" and svc.sso_minter is None:
        how = "button"
    entry = {"user": person.object_id, "name": person.name, "message_id": reply_to, "how": how,
             "text": str(value.get("text") or "") if isinstance(value, dict) else "", "problem": problem}
    svc.world.signins.append(entry)
    if how != "silent" or svc.sso_minter is None or not isinstance(exchange, dict):
        return None  # the card shows the Sign-In button (page); nothing is resent
    token = svc.sso_minter(person)  # the token is for webApplicationInfo's app, whatever tokenExchangeResource.uri says
    retry = dict(act, id=f"{act.get('id')}-sso", value=dict(act["value"], authentication={
        "id": exchange["id"], "connectionName": value.get("connectionName"), "token": token}))
    out = await _send_all(svc, [retry], defect)
    entry["retried"] = True
    return out


async def card_action(svc: TeamsService, args: dict) -> dict:
    """A user presses a card button: Action.Submit → `message` with value; Action.Execute → invoke.

    args: user, conversation, reply_to (the card's message id), kind "submit"|"execute", value/data, verb, action_id.
    An Action.Execute answer carrying a card replaces that card for this user only.
    """
    w, url = svc.world, svc.channel.service_url
    person = _person(svc, args)
    conv, reply_to = args.get("conversation"), args.get("reply_to")
    if not conv or not reply_to:
        raise EmitError("conversation and reply_to are required")
    inputs = args.get("inputs") or {}
    if args.get("kind") == "submit":
        value = {**(args.get("value") or args.get("data") or {}), **inputs}
        act = acts.submit(w, url, str(conv), str(reply_to), person, value)
        return await _send_all(svc, [act], args.get("defect"))
    data = {**(args.get("data") or {}), **inputs}
    act = acts.execute(w, url, str(conv), str(reply_to), person, verb=str(args.get("verb") or ""), data=data,
                       action_id=args.get("action_id"))
    out = await _send_all(svc, [act], args.get("defect"))
    body = out.get("body")
    if isinstance(body, dict) and body.get("type") == LOGIN_REQUEST:
        out = await _sign_in(svc, act, person, str(reply_to), body, args.get("defect")) or out
        body = out.get("body")
    if isinstance(body, dict) and body.get("type") == CARD_TYPE and isinstance(body.get("value"), dict):
        w.viewer_cards[(person.object_id, str(reply_to))] = body["value"]
        out["replaced"] = True
    return out
