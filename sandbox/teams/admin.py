"""Routes around the Connector: channel OpenID metadata + keys, the `/_sandbox/teams/*` admin API, and the page.

Admin API (JSON):
  GET  /_sandbox/teams/log      {"requests": [...Connector calls...], "inbound": [...activities sent to the bot...]}
  GET  /_sandbox/teams/stats    posts per thread, throttled (rate-limit 429s), injected faults, by status
  GET  /_sandbox/teams/state    the world as the page shows it (teams, channels, threads, chats, people)
  POST /_sandbox/teams/reset    clear log, counters, faults, rate windows; {"threads": true} also drops messages
  POST /_sandbox/teams/fail     {"path": "/v3/conversations", "status": 503, "count": 2, "retry_after": 3, "method"?}
  GET|POST /_sandbox/teams/knobs  {"lint", "retry_after_header", "latency_ms", "max_activity_bytes", "rate_limits",
                                   "bot_endpoint"}
  POST /_sandbox/teams/emit     {"kind": install|uninstall|install_personal|uninstall_personal|block|unblock|
                                 channel_created|channel_renamed|channel_deleted|message|submit|execute, ...,
                                 "defect"?: one of keys.DEFECTS, "silent"?: true (state change only)}
                                e.g. {"kind": "install", "team": "Finance Operations", "user": "patti"};
                                {"kind": "message", "team", "channel", "user", "text"} (@mentions the bot);
                                {"kind": "message", "user", "text"} (1:1 chat); {"kind": "submit"|"execute", "user",
                                "conversation", "reply_to", "value"|"data", "verb"?} (card button)
  POST /_sandbox/teams/post     {"team", "channel"?, "card"? | "activity"?}: a bot message appears (no bot needed)
  POST /_sandbox/teams/ui/submit  the page's button click (see emit.card_action)
  POST /_sandbox/teams/ui/reply {"viewer", "conversation", "text"}: the page's reply box under a channel card (a
                                thread reply: Graph subscriptions are notified; the bot gets it with knob rsc)
  POST /_sandbox/teams/ui/say   {"viewer", "text"}: the page's 1:1 compose box; the viewer types to the bot in their
                                own chat (a signed `message` activity, as emit {"kind": "message", "user", "text"})
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from sandbox.admin_http import json_object

from sandbox.teams.connector import SERVICE
from sandbox.teams.emit import EmitError, card_action, emit
from sandbox.teams.keys import DEFECTS, ChannelKeys
from sandbox.teams.limits import Fault
from sandbox.teams.world import CARD_TYPE

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PREFIX = "/_sandbox/teams"


def renderer_assets(renderer_dir) -> dict:
    """Where the page finds Microsoft's renderer under /renderer/ (or that it has none: then it shows JSON)."""
    root = Path(renderer_dir) if renderer_dir else None
    if root is None or not root.is_dir():
        return {"available": False}

    def find(name: str) -> str | None:
        hits = sorted(root.rglob(name))
        return "/renderer/" + hits[0].relative_to(root).as_posix() if hits else None

    script = find("adaptivecards.min.js")
    return {"available": script is not None, "script": script, "markdown": find("markdown-it.min.js"),
            "css": find("adaptivecards.css"), "hostConfig": find("microsoft-teams-light.json")}


def _bad(msg: str) -> web.Response:
    return web.json_response({"error": msg}, status=400)


async def openid(request: web.Request) -> web.Response:
    return web.json_response(ChannelKeys.openid_configuration(request.app[SERVICE].base_url))


async def keys(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].channel.keys.jwks())


async def get_log(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    since = int(request.query.get("since", 0) or 0)
    return web.json_response({"requests": [e for e in svc.log if e["seq"] > since], "inbound": svc.channel.sent})


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE].stats())


async def get_state(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    return web.json_response(dict(svc.world.snapshot(), renderer=renderer_assets(svc.renderer_dir)))


async def reset(request: web.Request) -> web.Response:
    request.app[SERVICE].reset(threads=bool((await json_object(request)).get("threads")))
    return web.json_response({"ok": True})


async def fail(request: web.Request) -> web.Response:
    args = await json_object(request)
    try:
        fault = Fault(str(args.get("path") or "/"), int(args["status"]), int(args.get("count", 1)),
                      None if args.get("retry_after") is None else float(args["retry_after"]), args.get("method"))
    except (KeyError, TypeError, ValueError) as exc:
        return _bad(f"need path, status, count: {exc}")
    request.app[SERVICE].faults.add(fault)
    return web.json_response({"ok": True, "pending": len(request.app[SERVICE].faults.pending)})


async def knobs(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    if request.method == "POST":
        args = await json_object(request)
        for name in ("lint", "retry_after_header", "rsc"):
            if name in args:
                setattr(svc.knobs, name, bool(args[name]))
        for name in ("latency_ms", "max_activity_bytes"):
            if name in args:
                setattr(svc.knobs, name, int(args[name]))
        if "sso" in args:
            if args["sso"] not in ("silent", "button", "refuse"):
                return _bad("sso must be silent, button or refuse")
            svc.knobs.sso = str(args["sso"])
        if "rate_limits" in args:
            svc.limiter.enabled = bool(args["rate_limits"])
        if "bot_endpoint" in args:
            svc.channel.bot_endpoint = args["bot_endpoint"] or None
    return web.json_response(dict(svc.knobs.as_json(), rate_limits=svc.limiter.enabled,
                                  bot_endpoint=svc.channel.bot_endpoint, defects=list(DEFECTS)))


async def do_emit(request: web.Request) -> web.Response:
    args = await json_object(request)
    if args.get("defect") not in (None, *DEFECTS):
        return _bad(f"defect must be one of {DEFECTS}")
    try:
        return web.json_response(await emit(request.app[SERVICE], args))
    except EmitError as exc:
        return _bad(str(exc))


async def post_message(request: web.Request) -> web.Response:
    """Put a bot message into a channel as if the bot had posted it (demo seeding, page tests)."""
    svc, args = request.app[SERVICE], await json_object(request)
    team = svc.world.team(str(args.get("team") or ""))
    channel = team and svc.world.find_channel(team, args.get("channel"))
    if not team or not channel:
        return _bad("unknown team or channel")
    activity = args.get("activity") or {"type": "message", "attachments": [
        {"contentType": CARD_TYPE, "content": args.get("card") or {}}]}
    mid = svc.world.next_message_id()
    thread = svc.world.new_channel_thread(team, channel, mid)
    svc.world.add_message(thread, activity, svc.clock(), message_id=mid)
    return web.json_response({"id": thread.id, "activityId": mid}, status=201)


async def ui_submit(request: web.Request) -> web.Response:
    """A click on a card button in the page: {viewer, conversation, messageId, action{type,data,verb,id}, inputs}."""
    args = await json_object(request)
    action = args.get("action") or {}
    kind = {"Action.Submit": "submit", "Action.Execute": "execute"}.get(str(action.get("type")))
    if kind is None:
        return _bad("action.type must be Action.Submit or Action.Execute")
    data = action.get("data") if isinstance(action.get("data"), dict) else {}
    try:
        out = await card_action(request.app[SERVICE], {
            "kind": kind, "user": args.get("viewer"), "conversation": args.get("conversation"),
            "reply_to": args.get("messageId"), "data": data, "value": data, "verb": action.get("verb"),
            "action_id": action.get("id"), "inputs": args.get("inputs") or {}})
    except EmitError as exc:
        return _bad(str(exc))
    return web.json_response({"status": out.get("status"), "body": out.get("body"), "replaced": out.get("replaced",
                                                                                                         False)})


async def ui_say(request: web.Request) -> web.Response:
    """The page's compose box in a 1:1 chat: the viewer's typed message goes to the bot like any user message."""
    args = await json_object(request)
    text = args.get("text")
    if not isinstance(text, str) or not text.strip():
        return _bad("text is required (what the viewer typed)")
    if len(text) > 28_000:
        return _bad("text is longer than Teams allows in one message")
    try:
        out = await emit(request.app[SERVICE], {"kind": "message", "user": args.get("viewer"), "text": text})
    except EmitError as exc:
        return _bad(str(exc))
    return web.json_response({"status": out.get("status"), "body": out.get("body")})


async def ui_reply(request: web.Request) -> web.Response:
    """The page's reply box under a channel card: {"viewer", "conversation", "text"} (a thread reply)."""
    args = await json_object(request)
    try:
        out = await emit(request.app[SERVICE], {"kind": "reply", "user": args.get("viewer"),
                                                "conversation": args.get("conversation"), "text": args.get("text")})
    except EmitError as exc:
        return _bad(str(exc))
    return web.json_response(out, status=201)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "teams.html")


async def renderer_file(request: web.Request) -> web.StreamResponse:
    root = request.app[SERVICE].renderer_dir
    if not root:
        raise web.HTTPNotFound()
    base = Path(root).resolve()
    target = (base / request.match_info["path"]).resolve()
    if base not in target.parents or not target.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(target)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/.well-known/openidconfiguration", openid)
    app.router.add_get("/v1/keys", keys)
    app.router.add_get(PREFIX + "/log", get_log)
    app.router.add_get(PREFIX + "/stats", get_stats)
    app.router.add_get(PREFIX + "/state", get_state)
    app.router.add_post(PREFIX + "/reset", reset)
    app.router.add_post(PREFIX + "/fail", fail)
    app.router.add_route("*", PREFIX + "/knobs", knobs)
    app.router.add_post(PREFIX + "/emit", do_emit)
    app.router.add_post(PREFIX + "/post", post_message)
    app.router.add_post(PREFIX + "/ui/submit", ui_submit)
    app.router.add_post(PREFIX + "/ui/say", ui_say)
    app.router.add_post(PREFIX + "/ui/reply", ui_reply)
    app.router.add_get("/", page)
    app.router.add_static("/static", STATIC_DIR)
    app.router.add_get("/renderer/{path:.+}", renderer_file)
