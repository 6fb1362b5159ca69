"""Builds what `[approvals] act_as` needs from the configuration: the press's sign-in gate and the decision job's
"work item actions as this user". connector/app.py calls `act_as_wiring` once; "service" builds nothing.

The SSO token is validated against the bot's own app (its audience) in the bot's home and allowed tenants, and
exchanged on-behalf-of with the bot's registration for each environment's F&O scope (connector/token_wiring.py).
"""

from __future__ import annotations

import ssl
from typing import Any, Callable

import aiohttp

from bot import UserTokenValidator
from connector.approvals import SignInGate, workflow_actions
from connector.approvals.config import ApprovalSettings
from connector.config import Settings
from connector.teams_config import TeamsSettings, served_tenants
from connector.token_wiring import (CredentialRef, fo_user_scope, sso_app_id_uri, sso_sign_in_url,
                                    user_token_exchange)
from connector.tokens import TokenProvider
from dynamics import ODataClient


def act_as_wiring(settings: Settings, teams: TeamsSettings, approvals: ApprovalSettings, *, tokens: TokenProvider,
                  session: aiohttp.ClientSession, ref: CredentialRef, credential: Any,
                  tls: ssl.SSLContext | None) -> tuple[SignInGate | None, Callable[[str, str], Any] | None]:
    """(gate, as_user) for Approvals.build; (None, None) when act_as is "service"."""
    if approvals.act_as == "service":
        return None, None
    app_id_uri = sso_app_id_uri(settings, teams)
    validator = UserTokenValidator(session, authority_host=settings.cloud.endpoint("authority_host"),
                                   app_id=teams.app_id, tenants=sorted(served_tenants(settings, teams)),
                                   app_id_uri=app_id_uri, ssl=tls)
    obo = user_token_exchange(tokens, ref, credential)
    envs = {env.name: env for env in settings.environments}
    scopes = {name: fo_user_scope(env) for name, env in envs.items()}
    gate = SignInGate(approvals, validator=validator, obo=obo, scopes=scopes, app_id=teams.app_id,
                      app_id_uri=app_id_uri, sign_in_url=sso_sign_in_url(settings, teams))
    odata = settings.odata

    def as_user(environment: str, object_id: str) -> Any:
        env = envs.get(environment)
        if env is None or not obo.has_token(object_id, scopes[environment]):
            return None
        # a client per decision: its token callable is this user's; the shared session pools the connections
        client = ODataClient(session, env.base_url, obo.token_callable(object_id, scopes[environment]),
                             timeout=odata.timeout, max_attempts=odata.max_attempts,
                             max_inline_wait=odata.max_inline_wait, default_retry_after=odata.default_retry_after,
                             max_pages=odata.max_pages, ssl=tls)
        return workflow_actions(client, approvals)

    return gate, as_user
