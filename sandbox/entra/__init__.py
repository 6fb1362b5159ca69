"""Entra ID stand-in: the client-credentials token endpoint, OpenID metadata and signing keys of one tenant.

Serves what MSAL's ConfidentialClientApplication calls (v2 OpenID configuration, then the v2 token endpoint with a
client secret or a certificate assertion) and signs RS256 access tokens that the F&O and Teams stand-ins check
with `EntraIssuer.verify`. It knows nothing of the connector.

Token format (a decision): tokens for a resource asked for through the v2 endpoint carry the
format the *resource* accepts. First-party resources (F&O's Microsoft.ERP, Graph, the Bot Framework) accept v1, so
by default access tokens are v1: `iss = https://sts.windows.net/{tid}/`, `ver = "1.0"`, `appid` + `appidacr`
("1" secret, "2" certificate). `token_version="2.0"` gives `iss = {issuer_host}/{tid}/v2.0`, `ver = "2.0"`,
`azp` + `azpacr` instead. Read the caller with `EntraIssuer.app_id(claims)` (appid or azp).
The OpenID document describes the v2 endpoint, so its `issuer` is the v2 issuer, as Entra's own is.

Audience rule: `scope` must be exactly one `<resource>/.default`; the token's `aud` is that string without the
`/.default` suffix and nothing else is normalised ("https://x.operations.dynamics.com/.default" ->
"https://x.operations.dynamics.com"; "https://graph.microsoft.com//.default" -> "https://graph.microsoft.com/").

Tenants: the path segment is the tenant id, or "botframework.com" (Bot Framework's token tenant, whose real id
`BOTFRAMEWORK_TENANT_ID` goes into `tid`/`iss`). Every registered app can get tokens in both.

Admin API (`/_sandbox/entra/`): `POST token-lifetime {"seconds": 5}`, `POST fail-next {"count": 2, "status": 503,
"retry_after": 0}`, `GET stats`, `POST roles {"client_id", "resource", "roles": [...]}` (the app roles granted
on a resource, e.g. Graph's, as admin consent sets them). MSAL caches a 429/5xx answer for its Retry-After (5 s
when absent): give `retry_after: 0` to let the next attempt through at once.
"""

from sandbox.entra.app import ISSUER_KEY, create_entra_app, serve_entra
from sandbox.entra.issuer import (
    ASSERTION_TYPE,
    BOTFRAMEWORK_TENANT,
    BOTFRAMEWORK_TENANT_ID,
    AppRegistration,
    EntraIssuer,
    InvalidToken,
    OAuthError,
    load_or_create_signing_key,
)

__all__ = [
    "ASSERTION_TYPE", "BOTFRAMEWORK_TENANT", "BOTFRAMEWORK_TENANT_ID", "ISSUER_KEY", "AppRegistration",
    "EntraIssuer", "InvalidToken", "OAuthError", "create_entra_app", "load_or_create_signing_key", "serve_entra",
]
