"""Teams single sign-on tokens and the on-behalf-of grant of the Entra stand-in (sso-obo.md "Simulator spec").

`mint_sso_token` is what Teams gets silently for the bot's app (`webApplicationInfo`): a v2 token, `aud` = the bot's
app id, `scp` = access_as_user, `azp` = a Teams client. `on_behalf_of` runs the RFC 7523 jwt-bearer grant with
`requested_token_use=on_behalf_of`: the assertion must be a valid token of this tenant for the calling app with
`access_as_user`; the answer is a delegated v1 token for the requested resource (F&O: `aud` = environment URL) that
names the user (`upn`, `oid`) and the app (`appid`). Switches on `issuer.sso`: consent missing (AADSTS65001) and
MFA required (interaction_required + claims).
"""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from sandbox.entra.issuer import (DEFAULT_SCOPE_SUFFIX, AppRegistration, EntraIssuer, InvalidToken, OAuthError,
                                  _b64url)

TEAMS_DESKTOP_CLIENT = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"  # Teams desktop/mobile
TEAMS_WEB_CLIENT = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
SSO_SCOPE = "access_as_user"
FO_DELEGATED_SCOPES = "AX.FullAccess CustomService.FullAccess Odata.FullAccess"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}


def mint_sso_token(issuer: EntraIssuer, *, app_id: str, object_id: str, upn: str, name: str,
                   tenant: str | None = None, azp: str = TEAMS_WEB_CLIENT, scp: str = SSO_SCOPE,
                   audience: str | None = None, lifetime: int | None = None) -> str:
    """The token Teams hands the bot on the retried press (tests change tenant/audience/lifetime/scp)."""
    tid = (tenant or issuer.tenant_id).lower()
    now = int(issuer.clock())
    life = issuer.sso.sso_lifetime if lifetime is None else lifetime
    claims = {"aud": audience or app_id, "iss": f"{issuer.issuer_host}/{tid}/v2.0", "iat": now, "nbf": now,
              "exp": now + life, "azp": azp, "azpacr": "0", "oid": object_id, "sub": _b64url(object_id.encode()),
              "tid": tid, "preferred_username": upn, "name": name, "scp": scp, "ver": "2.0",
              "uti": _b64url(uuid.uuid4().bytes)}
    issuer.sso.sso_minted += 1
    return jwt.encode(claims, issuer._key, algorithm="RS256",
                      headers={"kid": issuer.kid, "typ": "JWT"})


def _resource(scope: str | None) -> str:
    wanted = [s for s in (scope or "").split() if s not in RESERVED_SCOPES]
    if len(wanted) != 1 or not wanted[0].endswith(DEFAULT_SCOPE_SUFFIX):
        raise OAuthError(400, "invalid_scope", 70011,
                         f"The provided value for the input parameter 'scope' is not valid: {scope!r} (the sandbox "
                         "wants one '<resource>/.default' besides openid profile offline_access).")
    return wanted[0][: -len(DEFAULT_SCOPE_SUFFIX)]


def on_behalf_of(issuer: EntraIssuer, app: AppRegistration, tid: str, form: dict[str, str]) -> dict[str, Any]:
    """The OBO grant for an authenticated `app`. Returns the token response; raises OAuthError."""
    if form.get("requested_token_use") != "on_behalf_of":
        raise OAuthError(400, "invalid_request", 50027, "requested_token_use must be 'on_behalf_of'.")
    assertion = form.get("assertion") or ""
    if not assertion:
        raise OAuthError(400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'assertion'.")
    resource = _resource(form.get("scope"))
    try:
        user = issuer.verify(assertion, {app.client_id, f"api://botid-{app.client_id}"})
    except InvalidToken as exc:
        code = 500133 if exc.reason == "expired" else 50013
        raise OAuthError(400, "invalid_grant", code, f"Assertion failed signature validation or is not for this "
                                                     f"app: {exc.reason}.") from None
    if str(user.get("tid")) != tid:
        raise OAuthError(400, "invalid_grant", 50013, "Assertion is not from this tenant.")
    if SSO_SCOPE not in str(user.get("scp") or "").split():
        raise OAuthError(400, "invalid_grant", 50013, f"Assertion does not carry the scope {SSO_SCOPE}.")
    if issuer.sso.consent_missing:
        raise OAuthError(400, "invalid_grant", 65001,
                         f"The user or administrator has not consented to use the application with ID "
                         f"'{app.client_id}'. Send an interactive authorization request for this user and resource.",
                         extra={"suberror": "consent_required"})
    if issuer.sso.mfa_required:
        raise OAuthError(400, "interaction_required", 50076,
                         "Due to a configuration change made by your administrator, or because you moved to a new "
                         "location, you must use multi-factor authentication to access the resource.",
                         extra={"suberror": "basic_action",
                                "claims": '{"access_token":{"capolids":{"essential":true,"values":["sandbox"]}}}'})
    now = int(issuer.clock())
    lifetime = issuer.token_lifetime
    claims = {"aud": resource, "iss": issuer.issuer_for(tid, "1.0"), "iat": now, "nbf": now, "exp": now + lifetime,
              "appid": app.client_id, "appidacr": "1", "oid": user["oid"], "sub": user.get("sub") or user["oid"],
              "tid": tid, "upn": user.get("preferred_username"), "unique_name": user.get("preferred_username"),
              "name": user.get("name"), "scp": FO_DELEGATED_SCOPES, "ver": "1.0",
              "uti": _b64url(uuid.uuid4().bytes)}
    token = jwt.encode(claims, issuer._key, algorithm="RS256",
                       headers={"kid": issuer.kid, "x5t": issuer.kid, "typ": "JWT"})
    issuer.issued += 1
    issuer.sso.obo_grants += 1
    return {"token_type": "Bearer", "scope": f"{resource}/.default", "expires_in": lifetime,
            "ext_expires_in": lifetime, "access_token": token}
