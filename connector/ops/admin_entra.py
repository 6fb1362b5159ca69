"""Entra ID sign-in for the status page: the OpenID Connect authorization code flow with PKCE, through MSAL.

`start()` makes MSAL's flow (state, nonce, PKCE verifier, `response_mode=form_post`), keeps it in memory for 10
minutes under its `state` and returns Entra's authorize URL; `finish(answer)` (the form Entra POSTs back) redeems
the code with the app's secret (MSAL checks state and nonce), then admits the user only if the ID token's `roles`
holds the configured app role or its `groups` the configured group's object id. The flow lives in this process:
behind several instances the callback must reach the instance that started it (sticky sessions), or use the admin
token.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import msal

PENDING_SECONDS = 600
MAX_PENDING = 1000


class SignInRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AdminIdentity:
    object_id: str
    name: str
    upn: str


@dataclass(frozen=True)
class EntraAdminSettings:
    authority: str  # https://login.microsoftonline.com/<tenant id>
    client_id: str
    redirect_uri: str  # <public_url>/admin/callback, registered on the app as a Web redirect URI
    group: str | None  # object id of the admins' group (the app must emit the groups claim)
    role: str | None  # app role value (e.g. "Connector.Admin") assigned to admins
    discover: bool = True  # Microsoft's instance discovery (off for the sandbox's authority)


class EntraSignIn:
    def __init__(self, settings: EntraAdminSettings, secret: Callable[[], Awaitable[str]], *,
                 http_client: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._secret = secret
        self._http = http_client
        self._clock = clock
        self._app: msal.ConfidentialClientApplication | None = None
        self._pending: dict[str, tuple[dict[str, Any], float]] = {}

    async def _msal(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            secret = await self._secret()
            s = self.settings
            self._app = await asyncio.to_thread(  # discovery fetches the OpenID configuration: off the loop
                msal.ConfidentialClientApplication, s.client_id, client_credential=secret, authority=s.authority,
                http_client=self._http, instance_discovery=None if s.discover else False)
        return self._app

    async def start(self) -> str:
        app = await self._msal()
        # form_post: Entra POSTs the code to the callback, so it never sits in a URL (browser history, proxy and
        # access logs, Referer); MSAL recommends it (RFC 9700 §4.3.1).
        flow = await asyncio.to_thread(app.initiate_auth_code_flow, [], redirect_uri=self.settings.redirect_uri,
                                       response_mode="form_post")
        now = self._clock()
        self._pending = {k: v for k, v in self._pending.items() if v[1] > now}
        if len(self._pending) >= MAX_PENDING:  # a flood of unfinished sign-ins: forget the oldest
            oldest = min(self._pending, key=lambda k: self._pending[k][1])
            self._pending.pop(oldest)
        self._pending[flow["state"]] = (flow, now + PENDING_SECONDS)
        return str(flow["auth_uri"])

    async def finish(self, query: dict[str, str]) -> AdminIdentity:
        pending = self._pending.pop(query.get("state", ""), None)
        if pending is None or pending[1] < self._clock():
            raise SignInRefused(400, "This sign-in expired or was not started here; sign in again.")
        if "error" in query:
            raise SignInRefused(401, f"Entra ID refused the sign-in: {query.get('error')}: "
                                     f"{query.get('error_description', '')}".strip())
        app = await self._msal()
        result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, pending[0], query)
        if "error" in result:
            raise SignInRefused(401, f"Entra ID refused the sign-in: {result.get('error')}: "
                                     f"{result.get('error_description', '')}".strip())
        claims = result.get("id_token_claims") or {}
        s = self.settings
        roles = claims.get("roles") or []
        groups = [str(g).lower() for g in claims.get("groups") or []]
        allowed = bool((s.role and s.role in roles) or (s.group and s.group.lower() in groups))
        who = str(claims.get("preferred_username") or claims.get("name") or claims.get("oid") or "?")
        if not allowed:
            need = " or ".join(x for x in (f"the app role '{s.role}'" if s.role else "",
                                           f"the group {s.group}" if s.group else "") if x)
            overage = " (the token lists no groups: too many groups; use an app role)" \
                if s.group and "_claim_names" in claims else ""
            raise SignInRefused(403, f"{who} may not use the status page: it needs {need}{overage}.")
        return AdminIdentity(str(claims.get("oid") or ""), str(claims.get("name") or who), who)
