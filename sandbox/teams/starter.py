"""The Teams half as a sandbox service starter (see sandbox/runner.py): `await start_teams_services(ctx)`.

Registers the bot's app in the Entra stand-in (secret + Graph app roles), starts the channel/Connector/page
(plain http, as botbuilder accepts for the channel), the channel's OpenID metadata + signing keys and Graph (https,
sandbox CA), and adds "teams" and "graph" to sandbox.json. Options read from ctx.options (all optional):
  bot_app_id, bot_endpoint (the bot's /api/messages; else set it later with POST {admin_url}/knobs),
  teams_renderer_dir (e.g. cards/vendor), teams_preinstalled (True or team names), teams_app_external_id,
  graph_resource (default https://graph.microsoft.com).
Duck-typed on the context (state, services, options, ca, host, cleanups) so it does not import the runner.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sandbox.entra.obo import TEAMS_DESKTOP_CLIENT, TEAMS_WEB_CLIENT, mint_sso_token
from sandbox.people import TENANT_ID
from sandbox.teams.server import start_teams

DEFAULT_BOT_APP_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "ml-connector-sandbox-bot"))
BOT_GRAPH_ROLES = ["User.Read.All", "AppCatalog.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All",
                   "MailboxSettings.Read", "Application.Read.All",
                   "ChannelMessage.Read.All"]
DYNAMICS_ERP = "00000015-0000-0000-c000-000000000000"
# Microsoft.ERP delegated permissions (sso-obo.md §3): AX.FullAccess, Odata.FullAccess, CustomService.FullAccess
ERP_SCOPES = ["6397893c-2260-496b-a41d-2f1f15b16ff3", "a849e696-ce45-464a-81de-e5c5b45519c1",
              "ad8b4a5c-eecd-431a-a46f-33c060012ae1"]


def bot_registration(app_id: str) -> dict[str, Any]:
    """The bot's app registration as Graph shows it, set up for Teams SSO as README "Deciding as the approver" says."""
    scope_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-scope:{app_id}"))
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-app-object:{app_id}")), "appId": app_id,
        "displayName": "ML Connector", "signInAudience": "AzureADMyOrg",
        "identifierUris": [f"api://botid-{app_id}"],
        "api": {"requestedAccessTokenVersion": 2,
                "oauth2PermissionScopes": [{"id": scope_id, "value": "access_as_user", "type": "User",
                                            "isEnabled": True, "adminConsentDisplayName": "Act as the user"}],
                "preAuthorizedApplications": [{"appId": client, "delegatedPermissionIds": [scope_id]}
                                              for client in (TEAMS_DESKTOP_CLIENT, TEAMS_WEB_CLIENT)]},
        "requiredResourceAccess": [{"resourceAppId": DYNAMICS_ERP,
                                    "resourceAccess": [{"id": s, "type": "Scope"} for s in ERP_SCOPES]}],
    }


async def start_teams_services(ctx: Any) -> None:
    opts = {k: v for k, v in (ctx.options or {}).items() if v is not None}
    issuer = ctx.services["entra"]
    bot_app_id = opts.get("bot_app_id", DEFAULT_BOT_APP_ID)
    graph_resource = opts.get("graph_resource", "https://graph.microsoft.com")
    secret = secrets.token_urlsafe(32)
    issuer.register_app(bot_app_id, secret=secret, roles={graph_resource: list(BOT_GRAPH_ROLES)})
    running = await start_teams(
        host=ctx.host, ca=ctx.ca, verify_token=issuer.verify, bot_endpoint=opts.get("bot_endpoint"),
        bot_app_id=bot_app_id, tenant_id=TENANT_ID, renderer_dir=opts.get("teams_renderer_dir"),
        teams_app_external_id=opts.get("teams_app_external_id"), graph_resource=graph_resource,
        preinstalled=opts.get("teams_preinstalled", False))
    ctx.cleanups.append(running.close)
    # Teams SSO: the token is minted for the manifest's webApplicationInfo app (the bot's), sso-obo.md §1.2
    running.graph.applications[bot_app_id.lower()] = bot_registration(bot_app_id)
    running.service.sso_minter = lambda person: mint_sso_token(
        issuer, app_id=bot_app_id, object_id=person.object_id, upn=person.upn, name=person.name)
    ctx.services["teams"] = running
    state = running.state
    state["teams"].update(bot_app_password=secret, bot_tenant_id=TENANT_ID)
    ctx.state.update(state)
