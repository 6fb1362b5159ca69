"""Interactive sign-in at the Entra stand-in: the OpenID Connect authorization code flow with PKCE.

`GET /{tenant}/oauth2/v2.0/authorize` signs in the sandbox's "current user" without a login page (set it with
`POST /_sandbox/entra/signin {"upn": ..., "groups": [...], "roles": {"<client id>": [...]}}`, or pass
`login_hint`), and redirects to the registered `redirect_uri` with a one-time code (valid 10 minutes, bound to
the client, the redirect URI and the PKCE challenge). `response_mode=form_post` answers, as Entra does, a page whose
form POSTs the code and state to the redirect URI (the code never appears in a URL); `fragment` puts them after
`#`; `query` (the default) in the query string. The token endpoint's `authorization_code` grant checks the
client's secret, the code, the redirect URI and the `code_verifier` (S256), and answers an `id_token` (RS256, the
issuer's key) with `aud` = client id, the `nonce`, `oid`, `name`, `preferred_username`, `tid`, and the user's
`groups` and app `roles` for that client, as Entra does when the app asks for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt

from sandbox.entra.issuer import EntraIssuer, OAuthError
from sandbox.people import PEOPLE

CODE_SECONDS = 600
RESPONSE_MODES = ("query", "fragment", "form_post")


@dataclass
class SignedInUser:
    upn: str
    name: str
    object_id: str
    groups: list[str] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)  # client id -> app role values


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    user: SignedInUser
    expires_at: float


class SignIn:
    def __init__(self, issuer: EntraIssuer) -> None:
        self.issuer = issuer
        first = PEOPLE[0]
        self.users = {p.upn.lower(): SignedInUser(p.upn, p.name, p.object_id) for p in PEOPLE}
        self.current: SignedInUser | None = self.users[first.upn.lower()]
        self._codes: dict[str, _Code] = {}

    def set_user(self, upn: str, *, groups: list[str] | None = None,
                 roles: dict[str, list[str]] | None = None) -> SignedInUser:
        user = self.users.get(upn.lower())
        if user is None:
            raise KeyError(upn)
        if groups is not None:
            user.groups = list(groups)
        if roles is not None:
            user.roles = {k.lower(): list(v) for k, v in roles.items()}
        self.current = user
        return user

    def authorize(self, query: dict[str, str]) -> str:
        """The redirect URL (with code and state), as `response_mode=query` answers. Raises OAuthError."""
        redirect_uri, params = self.grant(query)
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

    def grant(self, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        """Where the answer goes and what it carries (code, session_state, state), whatever the response mode.
        Raises OAuthError for a request Entra would refuse."""
        client_id = query.get("client_id", "").lower()
        if client_id not in self.issuer.apps:
            raise OAuthError(400, "unauthorized_client", 700016, f"Application '{client_id}' not found.")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise OAuthError(400, "invalid_request", 50011, f"The redirect URI '{redirect_uri}' is not valid.")
        if query.get("response_mode", "query") not in RESPONSE_MODES:
            raise OAuthError(400, "invalid_request", 900144, "response_mode must be query, fragment or form_post.")
        if query.get("response_type") != "code":
            raise OAuthError(400, "unsupported_response_type", 700054, "response_type must be 'code'.")
        hint = query.get("login_hint", "").lower()
        user = self.users.get(hint) if hint else self.current
        if user is None:
            raise OAuthError(400, "invalid_request", 50058, "No user is signed in (POST /_sandbox/entra/signin).")
        if query.get("code_challenge") and query.get("code_challenge_method", "plain") != "S256":
            raise OAuthError(400, "invalid_request", 501491, "code_challenge_method must be S256.")
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(client_id, redirect_uri, query.get("nonce"), query.get("code_challenge"), user,
                                  self.issuer.clock() + CODE_SECONDS)
        params = {"code": code, "session_state": str(uuid.uuid4())}
        if "state" in query:
            params["state"] = query["state"]
        return redirect_uri, params

    def redeem(self, tenant_segment: str, form: dict[str, str], client_id: str, secret: str | None
               ) -> dict[str, Any]:
        tid = self.issuer.resolve_tenant(tenant_segment) or self.issuer.tenant_id
        app = self.issuer.apps.get(client_id)
        if app is None or app.secret is None or not secret or \
                not hmac.compare_digest(secret.encode(), app.secret.encode()):
            raise OAuthError(401, "invalid_client", 7000215, "Invalid client secret provided.")
        entry = self._codes.pop(form.get("code", ""), None)  # one use only
        if entry is None or entry.expires_at < self.issuer.clock() or entry.client_id != client_id:
            raise OAuthError(400, "invalid_grant", 70008, "The provided authorization code is invalid or expired.")
        if form.get("redirect_uri") != entry.redirect_uri:
            raise OAuthError(400, "invalid_grant", 50148, "The redirect URI does not match the authorize request.")
        if entry.challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry.challenge:
                raise OAuthError(400, "invalid_grant", 501481, "The code_verifier does not match the code_challenge.")
        now = int(self.issuer.clock())
        user = entry.user
        claims: dict[str, Any] = {
            "aud": client_id, "iss": self.issuer.issuer_for(tid, "2.0"), "iat": now, "nbf": now, "exp": now + 3600,
            "sub": hashlib.sha256(f"{user.object_id}:{client_id}".encode()).hexdigest()[:43], "oid": user.object_id,
            "tid": tid, "name": user.name, "preferred_username": user.upn, "ver": "2.0",
        }
        if entry.nonce:
            claims["nonce"] = entry.nonce
        if user.groups:
            claims["groups"] = list(user.groups)
        if user.roles.get(client_id):
            claims["roles"] = list(user.roles[client_id])
        headers = {"kid": self.issuer.kid, "typ": "JWT"}
        id_token = jwt.encode(claims, self.issuer._key, algorithm="RS256", headers=headers)  # noqa: SLF001
        access = jwt.encode({**claims, "aud": "00000003-0000-0000-c000-000000000000", "scp": "openid profile"},
                            self.issuer._key, algorithm="RS256", headers=headers)  # noqa: SLF001
        return {"token_type": "Bearer", "scope": "openid profile", "expires_in": 3600, "ext_expires_in": 3600,
                "access_token": access, "id_token": id_token}


