"""Microsoft Graph and Bot Framework groups: tokens, Graph application permissions and one user read, the
inbound OpenID metadata and keys, and each route's team and channel against the recorded installs."""

from __future__ import annotations

import jwt

from bot import GraphClient, GraphError, GraphForbidden
from bot.openid import OpenIdUnavailable, fetch_signing_keys
from connector.check.context import CheckContext
from connector.check.entra import explain_token_failure
from connector.check.model import CheckTimeout, Reporter, unreachable
from connector.routes import Route, TargetNotFound, resolve_channel, routes_from_config
from connector.token_wiring import bot_credential, bot_token_source, graph_token_source
from connector.tokens import TokenFailure, TokenSource

GRAPH = "Microsoft Graph"
BOT = "Teams bot"
USERS = "User.Read.All"
PERSONAL = ("TeamsAppInstallation.ReadWriteSelfForUser.All", "AppCatalog.Read.All")


def _routes(ctx: CheckContext) -> list[Route]:
    try:
        return routes_from_config(ctx.settings.routes)
    except Exception:  # noqa: BLE001 - reported by the configuration group
        return []


def needed_graph_roles(ctx: CheckContext) -> dict[str, str]:
    """Application permission -> why the configuration needs it."""
    need = {USERS: "to look up users for @mentions and approvers"}
    a = ctx.settings.approvals
    if a.enabled and a.personal_copy and any(r.personal for r in _routes(ctx)):
        for role in PERSONAL:
            need[role] = "to send approval cards in 1:1 chats (a route has personal = true)"
    replies = ctx.settings.replies
    if a.enabled and replies.enabled and replies.source in ("graph", "both"):
        need["ChannelMessage.Read.All"] = "to read typed approval replies through Graph ([replies] source)"
    return need


async def _token(ctx: CheckContext, r: Reporter, source: TokenSource, ref, item: str) -> str | None:
    authority = ctx.settings.cloud.endpoint("authority_host")
    try:
        token = await r.bounded(item, source())
    except TokenFailure as exc:
        r.fail(item, *explain_token_failure(exc, ref, authority, source.scope))
        return None
    except CheckTimeout as exc:
        r.fail(item, *unreachable(authority, str(exc)))
        return None
    r.ok(item, f"app {ref.client_id} got a token for {source.scope}")
    return token


async def run_graph(ctx: CheckContext, r: Reporter) -> None:
    assert ctx.teams is not None
    ref = bot_credential(ctx.settings, ctx.teams)
    credential = ctx.credentials.get(ref.name)
    if credential is None or ctx.tokens is None:
        r.fail("token", f"no usable credential '{ref.name}' (see Configuration above)",
               f"store it with `ml-connector secrets set {ref.name}`.")
        return
    source = graph_token_source(ctx.tokens, ctx.settings, ref, credential)
    token = await _token(ctx, r, source, ref, "token")
    if token is None:
        return
    r.starting("permissions")
    try:  # our own token, just issued: read, not verified
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        claims = {}
    have = set(claims.get("roles") or [])
    need = needed_graph_roles(ctx)
    missing = [role for role in need if role not in have]
    if missing:
        why: dict[str, list[str]] = {}
        for m in missing:
            why.setdefault(need[m], []).append(m)
        r.fail("permissions", "the Graph token lacks " + "; ".join(f"{' and '.join(ms)}, needed {reason}"
                                                                   for reason, ms in why.items())
               + f"; it has {', '.join(sorted(have)) or 'none'}",
               f"in the app registration {ref.client_id}, add Microsoft Graph application permission(s) "
               f"{', '.join(missing)} under API permissions and grant admin consent.")
    else:
        r.ok("permissions", ", ".join(need))
    graph_url = ctx.settings.cloud.endpoint("graph_url")
    client = GraphClient(ctx.http, graph_url, source, ssl=ctx.tls, timeout=ctx.timeout)
    try:
        await r.bounded("user read", client.first_user())
    except GraphForbidden as exc:
        r.fail("user read", f"GET /users?$top=1 was refused: {exc}",
               f"grant {exc.permission or USERS} (application) with admin consent to app {ref.client_id}.")
        return
    except GraphError as exc:
        if exc.status is None:
            r.fail("user read", *unreachable(graph_url, str(exc.message or exc)))
        else:
            r.fail("user read", f"GET /users?$top=1 failed: {exc}", "check [cloud] graph_url and try again.")
        return
    except CheckTimeout as exc:
        r.fail("user read", *unreachable(graph_url, str(exc)))
        return
    r.ok("user read", "GET /users?$top=1 answered")


async def run_bot(ctx: CheckContext, r: Reporter) -> None:
    assert ctx.teams is not None
    ref = bot_credential(ctx.settings, ctx.teams)
    credential = ctx.credentials.get(ref.name)
    if credential is None or ctx.tokens is None:
        r.fail("token", f"no usable credential '{ref.name}' (see Configuration above)",
               f"store the bot app's client secret with `ml-connector secrets set {ref.name}`.")
    else:
        await _token(ctx, r, bot_token_source(ctx.tokens, ctx.settings, ref, credential), ref, "token")
    url = ctx.settings.cloud.endpoint("bot_openid_metadata_url")
    try:
        keys = await r.bounded("signing keys", fetch_signing_keys(ctx.http, url, ssl=ctx.tls,
                                                                  timeout=ctx.timeout))
    except OpenIdUnavailable as exc:
        if exc.unreachable:
            r.fail("signing keys", *unreachable(exc.url, exc.reason))
        else:
            r.fail("signing keys", f"{exc.url}: {exc.reason}", "check [cloud] bot_openid_metadata_url (and "
                   "[cloud] ca_bundle if a proxy re-signs TLS); without the keys every Teams call is refused.")
    except CheckTimeout as exc:
        r.fail("signing keys", *unreachable(url, str(exc)))
    else:
        r.ok("signing keys", f"{len(keys.key_ids)} key(s) from {url}")
    await _installs(ctx, r)


async def _installs(ctx: CheckContext, r: Reporter) -> None:
    routes = _routes(ctx)
    if ctx.store is None or not routes:
        if not routes:
            r.warn("routes", "no [[routes]]: no card will be posted", "add [[routes]] naming events, team and "
                   "channel (README.md, Routes).")
        return
    installs = await ctx.store.list_installs(active_only=True)
    teams = [i for i in installs if i.scope == "team"]
    for route in routes:
        item = f"route {route.name}"
        r.starting(item)
        wanted = route.team.lower()
        by_id = [i for i in teams if (i.team_id or "").lower() == wanted]
        by_name = [i for i in teams if (i.team_name or "").lower() == wanted]
        if not by_id and len(by_name) > 1:
            ids = ", ".join(i.team_id or "?" for i in by_name)
            r.fail(item, f"team name '{route.team}' matches {len(by_name)} installed teams ({ids})",
                   "use the team id in the route's team (see `ml-connector installs list`).")
            continue
        try:
            install, channel_id = resolve_channel(route, installs)
        except TargetNotFound as exc:
            if not by_id and not by_name:
                r.fail(item, f"the app is not installed in team {route.team}",
                       f"add it in Teams: in team {route.team}, Manage team > Apps > Get more apps and pick the app "
                       "(an admin uploads its package in the Teams admin center first), then check "
                       "`ml-connector installs list`.")
            else:
                r.fail(item, str(exc), "set the route's channel to one the team has (see `ml-connector installs "
                       "list`), or create it in Teams.")
            continue
        name = install.channels.get(channel_id) or ("General" if channel_id == install.team_id else channel_id)
        r.ok(item, f"team {install.team_name or install.team_id}, channel {name}")
