"""The "Single sign-on" group (only with `[approvals] act_as` = "approver" or "approver-or-service"): the bot's app
registration as Teams SSO and on-behalf-of need it (sso-obo.md §3), read through Graph where Graph lets the app read
its own registration (Application.Read.All), and the tenant's signing keys the SSO tokens are checked with.

What Graph cannot show app-only is said, not guessed: admin consent to Dynamics ERP is proven only by the first
on-behalf-of exchange (AADSTS65001 otherwise), which needs a real user's SSO token.
"""

from __future__ import annotations

from typing import Any

from bot import GraphClient, GraphError, GraphForbidden
from bot.openid import OpenIdUnavailable, fetch_signing_keys
from connector.check.context import CheckContext
from connector.check.model import CheckTimeout, Reporter, unreachable
from connector.token_wiring import bot_credential, graph_token_source, sso_app_id_uri
from connector.tokens import TokenFailure

GROUP = "Single sign-on (act_as)"
SCOPE = "access_as_user"
TEAMS_CLIENTS = {"1fec8e78-bce4-4aaf-ab1b-5451cc387264": "Teams desktop/mobile",
                 "5e3ce6c0-2b1f-4285-8d4b-75ee78787346": "Teams web"}
DYNAMICS_ERP = "00000015-0000-0000-c000-000000000000"
ERP_SCOPES = {"6397893c-2260-496b-a41d-2f1f15b16ff3": "AX.FullAccess",
              "a849e696-ce45-464a-81de-e5c5b45519c1": "Odata.FullAccess",
              "ad8b4a5c-eecd-431a-a46f-33c060012ae1": "CustomService.FullAccess"}


def wanted(ctx: CheckContext) -> bool:
    return ctx.settings.approvals.act_as != "service" and ctx.teams is not None and ctx.teams.enabled


def registration_problems(app: dict[str, Any], app_id_uri: str) -> list[tuple[str, str, str]]:
    """(item, what is wrong, how to fix) for each part of the registration SSO + OBO needs."""
    out: list[tuple[str, str, str]] = []
    uris = [str(u) for u in app.get("identifierUris") or []]
    if app_id_uri not in uris:
        out.append(("Application ID URI", f"the app exposes {', '.join(uris) or 'no Application ID URI'}, not "
                    f"{app_id_uri}", f"Expose an API > Application ID URI = {app_id_uri} (or set [approvals] "
                    "sso_app_id_uri to the one it has, and rebuild the Teams app package)."))
    api = app.get("api") or {}
    scope = next((s for s in api.get("oauth2PermissionScopes") or []
                  if s.get("value") == SCOPE and s.get("isEnabled", True)), None)
    if scope is None:
        out.append(("scope", f"no enabled scope {SCOPE}", f"Expose an API > Add a scope '{SCOPE}' (admins and "
                    "users)."))
    pre = {str(p.get("appId", "")).lower(): p.get("delegatedPermissionIds") or []
           for p in api.get("preAuthorizedApplications") or []}
    missing = [f"{name} ({cid})" for cid, name in TEAMS_CLIENTS.items()
               if cid not in pre or (scope is not None and scope.get("id") not in pre[cid])]
    if missing:
        out.append(("pre-authorized clients", f"not pre-authorized for {SCOPE}: {', '.join(missing)}",
                    f"Expose an API > Add a client application: add each for {SCOPE}."))
    erp = next((r for r in app.get("requiredResourceAccess") or []
                if str(r.get("resourceAppId", "")).lower() == DYNAMICS_ERP), None)
    delegated = {str(a.get("id", "")).lower() for a in (erp or {}).get("resourceAccess") or []
                 if a.get("type") == "Scope"}
    if not delegated & set(ERP_SCOPES):
        out.append(("Dynamics ERP permission", "no delegated Microsoft Dynamics ERP permission",
                    "API permissions > Add > APIs my organization uses > Microsoft Dynamics ERP > Delegated: "
                    f"{', '.join(ERP_SCOPES.values())}; then Grant admin consent."))
    return out


async def run(ctx: CheckContext, r: Reporter) -> None:
    assert ctx.teams is not None
    settings = ctx.settings
    app_id, app_id_uri = ctx.teams.app_id, sso_app_id_uri(settings, ctx.teams)
    await _keys(ctx, r)
    ref = bot_credential(settings, ctx.teams)
    credential = ctx.credentials.get(ref.name)
    if credential is None or ctx.tokens is None or not ctx.teams.graph:
        r.warn("registration", "not read (no Graph access configured for the bot)",
               _manual(app_id, app_id_uri))
        return
    graph_url = settings.cloud.endpoint("graph_url")
    client = GraphClient(ctx.http, graph_url, graph_token_source(ctx.tokens, settings, ref, credential),
                         ssl=ctx.tls, timeout=ctx.timeout)
    try:
        app = await r.bounded("registration", client.get_application(app_id))
    except GraphForbidden:
        r.warn("registration", "Graph does not let the app read its own registration (Application.Read.All)",
               _manual(app_id, app_id_uri))
        return
    except (GraphError, TokenFailure) as exc:
        r.warn("registration", f"could not be read: {exc}", _manual(app_id, app_id_uri))
        return
    except CheckTimeout as exc:
        r.fail("registration", *unreachable(graph_url, str(exc)))
        return
    if app is None:
        r.fail("registration", f"Graph knows no application with app id {app_id}",
               "[bot] app_id must be the Application (client) ID of the bot's app registration.")
        return
    problems = registration_problems(app, app_id_uri)
    for item, what, fix in problems:
        r.fail(item, what, fix)
    if not problems:
        r.ok("registration", f"{app_id_uri}, scope {SCOPE}, Teams clients pre-authorized, Dynamics ERP delegated")
    r.warn("admin consent", "not verifiable app-only: the first approver's press proves it (AADSTS65001 otherwise)",
           "Entra admin center > App registrations > the bot's app > API permissions > Grant admin consent.")


async def _keys(ctx: CheckContext, r: Reporter) -> None:
    tenant = (ctx.teams.tenant_id if ctx.teams else None) or ctx.settings.identity.tenant_id
    url = f"{ctx.settings.cloud.endpoint('authority_host').rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration"
    try:
        keys = await r.bounded("token keys", fetch_signing_keys(ctx.http, url, ssl=ctx.tls, timeout=ctx.timeout))
    except OpenIdUnavailable as exc:
        if exc.unreachable:
            r.fail("token keys", *unreachable(exc.url, exc.reason))
        else:
            r.fail("token keys", f"{exc.url}: {exc.reason}", "check [cloud] authority_host and the tenant id.")
    except CheckTimeout as exc:
        r.fail("token keys", *unreachable(url, str(exc)))
    else:
        r.ok("token keys", f"{len(keys.key_ids)} key(s) to check the approvers' SSO tokens")


def _manual(app_id: str, app_id_uri: str) -> str:
    return (f"check by hand in the app registration {app_id}: Application ID URI {app_id_uri}, scope {SCOPE}, the "
            "Teams clients 1fec8e78-bce4-4aaf-ab1b-5451cc387264 and 5e3ce6c0-2b1f-4285-8d4b-75ee78787346 "
            "pre-authorized, Microsoft Dynamics ERP delegated permissions with admin consent (or grant the app "
            "Application.Read.All so the check can read it).")
