"""The Entra stand-in's state and rules: app registrations, the signing key, token issue and verification, the
client-credentials checks. No HTTP here (sandbox/entra/app.py serves it); see the package docstring for the token
format and the audience rule.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, cast
from urllib.parse import unquote_plus

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BOTFRAMEWORK_TENANT = "botframework.com"
BOTFRAMEWORK_TENANT_ID = "d6d49420-f39b-4df7-a1dc-d59a935871db"
V1_ISSUER_HOST = "https://sts.windows.net"
DEFAULT_V2_ISSUER_HOST = "https://login.microsoftonline.com"  # an identifier in `iss`, never contacted
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE_SUFFIX = "/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class InvalidToken(Exception):
    """A bearer token failed verification; `reason` says why (safe to log: it never contains the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_b64(n: int) -> str:
    return _b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class AppRegistration:
    client_id: str
    object_id: str  # the service principal's object id: `oid` and `sub` of its tokens
    secret: str | None = field(default=None, repr=False)
    certificate: x509.Certificate | None = None
    roles: dict[str, list[str]] = field(default_factory=dict)  # resource -> app roles granted

    @property
    def thumbprints(self) -> set[str]:
        """x5t (SHA-1) and x5t#S256 of the registered certificate, base64url without padding."""
        if self.certificate is None:
            return set()
        return {_b64url(self.certificate.fingerprint(hashes.SHA1())),
                _b64url(self.certificate.fingerprint(hashes.SHA256()))}


@dataclass
class SsoKnobs:
    """Switches for Teams SSO and the on-behalf-of grant (admin: POST /_sandbox/entra/sso)."""

    consent_missing: bool = False  # no admin consent for Dynamics ERP: OBO answers AADSTS65001 consent_required
    mfa_required: bool = False  # Conditional Access wants MFA: OBO answers interaction_required + claims
    sso_lifetime: int = 3599  # seconds a Teams SSO token lives
    obo_grants: int = 0  # successful on-behalf-of exchanges
    sso_minted: int = 0  # SSO tokens handed to the Teams stand-in

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))


class OAuthError(Exception):
    """An OAuth error answer of the token endpoint (status, error, AADSTS code, description)."""

    def __init__(self, status: int, error: str, code: int | None, description: str,
                 extra: dict[str, Any] | None = None) -> None:
        self.extra = dict(extra or {})  # more body keys (suberror, claims)
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description


class EntraIssuer:
    """One tenant's token issuer: app registrations, a stable RSA-2048 signing key, knobs for tests.

    Args:
        tenant_id: the tenant's GUID.
        clock: epoch seconds; drives iat/nbf/exp and verification.
        token_lifetime: seconds an access token lives (Entra's default is about an hour).
        token_version: "1.0" (default, what first-party resources get) or "2.0".
        issuer_host: the host named in v2 issuers (an identifier, not contacted).
        leeway: clock skew tolerated by `verify` and by client-assertion checks, seconds.
        signing_key: an RSA private key to reuse (generated when absent).
    """

    def __init__(
        self,
        tenant_id: str,
        *,
        clock: Callable[[], float] = time.time,
        token_lifetime: int = 3599,
        token_version: str = "1.0",
        issuer_host: str = DEFAULT_V2_ISSUER_HOST,
        leeway: float = 60,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        if token_version not in ("1.0", "2.0"):
            raise ValueError("token_version must be '1.0' or '2.0'")
        self.tenant_id = tenant_id.lower()
        self.clock = clock
        self.token_lifetime = int(token_lifetime)
        self.token_version = token_version
        self.issuer_host = issuer_host.rstrip("/")
        self.leeway = leeway
        self._key = signing_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _b64url(hashlib.sha1(der).digest())  # stable for the key, Entra-like shape
        self.apps: dict[str, AppRegistration] = {}
        self.known_resources: set[str] | None = None  # None: any resource gets a token
        self.issued = 0  # access tokens issued
        self.requests = 0  # token requests received (including refused and failed ones)
        self.refused = 0  # OAuth error answers
        self.failed = 0  # injected 5xx/429 answers
        self._fail_next: list[tuple[int, int | None]] = []  # (status, retry_after) per coming request
        self.sso = SsoKnobs()

    # --- registrations and knobs --------------------------------------------------------------------------
    def register_app(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        object_id: str | None = None,
        roles: dict[str, list[str]] | None = None,
    ) -> AppRegistration:
        """Register (or replace) an application with a secret and/or a certificate's public part."""
        cert = x509.load_pem_x509_certificate(certificate_pem) if certificate_pem else None
        oid = object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-sp:{self.tenant_id}:{client_id.lower()}"))
        app = AppRegistration(client_id.lower(), oid, secret, cert, dict(roles or {}))
        self.apps[app.client_id] = app
        return app

    def fail_next(self, count: int = 1, *, status: int = 503, retry_after: int | None = None) -> None:
        """Answer the next `count` token requests with `status` (429 or 5xx), optionally with Retry-After."""
        if not (status == 429 or 500 <= status <= 599):
            raise ValueError("status must be 429 or 5xx")
        self._fail_next.extend([(status, retry_after)] * count)

    def take_injected_failure(self) -> tuple[int, int | None] | None:
        """The (status, retry_after) to answer the current token request with, if a failure is pending."""
        if not self._fail_next:
            return None
        self.failed += 1
        return self._fail_next.pop(0)

    def stats(self) -> dict[str, Any]:
        return {"issued": self.issued, "requests": self.requests, "refused": self.refused,
                "failed": self.failed, "pending_failures": len(self._fail_next),
                "token_lifetime": self.token_lifetime, "apps": len(self.apps)}

    # --- tenants, issuers, keys ---------------------------------------------------------------------------
    def resolve_tenant(self, segment: str) -> str | None:
        """Tenant id for a path segment (our tenant id or "botframework.com"), else None."""
        seg = segment.lower()
        if seg == self.tenant_id:
            return self.tenant_id
        if seg in (BOTFRAMEWORK_TENANT, BOTFRAMEWORK_TENANT_ID):
            return BOTFRAMEWORK_TENANT_ID
        return None

    def issuer_for(self, tenant: str, version: str | None = None) -> str:
        """The `iss` of tokens for `tenant` (an id or "botframework.com") in `version` (default: token_version)."""
        tid = self.resolve_tenant(tenant) or tenant.lower()
        if (version or self.token_version) == "1.0":
            return f"{V1_ISSUER_HOST}/{tid}/"
        return f"{self.issuer_host}/{tid}/v2.0"

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
                          "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}]}

    @staticmethod
    def app_id(claims: dict[str, Any]) -> str | None:
        """The calling application's client id: `appid` (v1) or `azp` (v2)."""
        return claims.get("appid") or claims.get("azp")

    # --- tokens ---------------------------------------------------------------------------------------------
    def issue(self, client_id: str, resource: str, *, tenant: str | None = None, acr: str = "1") -> tuple[str, int]:
        """Sign an access token for a registered app and a resource. Returns (token, lifetime seconds)."""
        app = self.apps[client_id.lower()]
        tid = self.resolve_tenant(tenant or self.tenant_id) or self.tenant_id
        now = int(self.clock())
        lifetime = self.token_lifetime
        claims: dict[str, Any] = {
            "aud": resource, "iss": self.issuer_for(tid), "iat": now, "nbf": now, "exp": now + lifetime,
            "oid": app.object_id, "sub": app.object_id, "tid": tid, "idtyp": "app",
            "uti": _b64url(uuid.uuid4().bytes), "ver": self.token_version,
        }
        if self.token_version == "1.0":
            claims.update(appid=app.client_id, appidacr=acr, idp=self.issuer_for(tid, "1.0"))
        else:
            claims.update(azp=app.client_id, azpacr=acr)
        roles = app.roles.get(resource) or app.roles.get(resource.rstrip("/"))
        if roles:
            claims["roles"] = list(roles)
        token = jwt.encode(claims, self._key, algorithm="RS256",
                           headers={"kid": self.kid, "x5t": self.kid, "typ": "JWT"})
        self.issued += 1
        return token, lifetime

    def verify(self, token: str, audience: str | Iterable[str]) -> dict[str, Any]:
        """Check an access token as a resource would. Returns its claims.

        Checks: RS256 with our `kid`, signature, `aud` equal to (one of) `audience`, `iss` equal to the issuer of the
        token's `tid` in the format its `ver` claims, `exp`/`nbf` against the clock with `leeway`.

        Raises:
            InvalidToken: with a reason ("expired", "audience ...", ...).
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":
            raise InvalidToken(f"unexpected alg {header.get('alg')!r}")
        if header.get("kid") != self.kid:
            raise InvalidToken(f"unknown signing key {header.get('kid')!r}")
        try:
            claims = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_iss": False, "require": ["aud", "iss", "exp", "nbf", "tid", "ver"]})
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from None
        wanted = {audience} if isinstance(audience, str) else set(audience)
        if claims["aud"] not in wanted:
            raise InvalidToken(f"audience {claims['aud']!r} is not {sorted(wanted)}")
        tid = str(claims["tid"])
        if self.resolve_tenant(tid) is None:
            raise InvalidToken(f"unknown tenant {tid!r}")
        if claims["ver"] not in ("1.0", "2.0") or claims["iss"] != self.issuer_for(tid, claims["ver"]):
            raise InvalidToken(f"issuer {claims['iss']!r} is not this tenant's ({claims['ver']})")
        now = self.clock()
        if now > claims["exp"] + self.leeway:
            raise InvalidToken("expired")
        if now + self.leeway < claims["nbf"]:
            raise InvalidToken("not yet valid")
        return claims

    # --- the token endpoint's logic (transport-free, so it is testable alone) ----------------------------------
    def token_response(self, tenant_segment: str, form: dict[str, str], *, authorization: str | None,
                       token_endpoints: set[str]) -> dict[str, Any]:
        """Run a client-credentials request. Returns the success body; raises OAuthError for an OAuth error."""
        tid = self.resolve_tenant(tenant_segment)
        if tid is None:
            raise OAuthError(400, "invalid_request", 90002, f"Tenant '{tenant_segment}' not found.")
        grant = form.get("grant_type")
        if grant not in ("client_credentials", JWT_BEARER):
            raise OAuthError(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type (the sandbox knows client_credentials "
                              "and the on-behalf-of jwt-bearer grant).")
        app, acr = self._authenticate_client(tid, form, authorization, token_endpoints)
        if grant == JWT_BEARER:
            from sandbox.entra.obo import on_behalf_of  # the OBO rules live in their own module
            return on_behalf_of(self, app, tid, form)
        resource = self._resource(form.get("scope"))
        if self.known_resources is not None and resource not in self.known_resources:
            raise OAuthError(400, "invalid_resource", 500011,
                              f"The resource principal named {resource} was not found in the tenant named {tid}.")
        token, lifetime = self.issue(app.client_id, resource, tenant=tid, acr=acr)
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
                "access_token": token}

    def _authenticate_client(self, tid: str, form: dict[str, str], authorization: str | None,
                             token_endpoints: set[str]) -> tuple[AppRegistration, str]:
        """The calling app and its `acr` ("1" secret, "2" certificate), or OAuthError."""
        basic_id, basic_secret = _basic_credentials(authorization)
        client_id = (form.get("client_id") or basic_id or "").lower()
        if not client_id:
            raise OAuthError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'client_id'.")
        app = self.apps.get(client_id)
        if app is None:
            raise OAuthError(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory "
                              f"'{tid}'. This can happen if the application has not been installed by the "
                              "administrator of the tenant or consented to by any user in the tenant. You may have "
                              "sent your authentication request to the wrong tenant.")
        secret = form.get("client_secret") or basic_secret
        if form.get("client_assertion") or form.get("client_assertion_type"):
            self._check_assertion(app, form, token_endpoints)
            return app, "2"
        if secret:
            if app.secret is None or not hmac.compare_digest(secret.encode(), app.secret.encode()):
                raise OAuthError(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure the secret being sent in the request is "
                                  "the client secret value, not the client secret ID, for a secret added to app "
                                  f"'{app.client_id}'.")
            return app, "1"
        raise OAuthError(401, "invalid_client", 7000218,
                          "The request body must contain the following parameter: 'client_assertion' or "
                          "'client_secret'.")

    @staticmethod
    def _resource(scope: str | None) -> str:
        if not scope:
            raise OAuthError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'scope'.")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX) \
                or len(scopes[0]) == len(DEFAULT_SCOPE_SUFFIX):
            raise OAuthError(400, "invalid_scope", 70011,
                              f"The provided value for the input parameter 'scope' is not valid. The scope "
                              f"{scope} is not valid. Client credentials need exactly one '<resource>/.default'.")
        return scopes[0][: -len(DEFAULT_SCOPE_SUFFIX)]

    def _check_assertion(self, app: AppRegistration, form: dict[str, str], token_endpoints: set[str]) -> None:
        def bad(code: int, text: str) -> OAuthError:
            return OAuthError(401, "invalid_client", code, text)

        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError(400, "invalid_request", 900144,
                              "client_assertion_type must be '" + ASSERTION_TYPE + "' with a client_assertion.")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise bad(50027, "JWT token is invalid or malformed.") from None
        presented = header.get("x5t#S256") or header.get("x5t")
        if app.certificate is None or not presented or presented.rstrip("=") not in app.thumbprints:
            raise bad(700027, "Client assertion contains an invalid signature. [Reason - The key was not found., "
                              f"Thumbprint of key used by client: '{presented}']")
        if header.get("alg") not in ("RS256", "PS256"):
            raise bad(50027, f"JWT token is invalid or malformed (alg {header.get('alg')!r}).")
        try:
            claims = jwt.decode(
                assertion, cast(Any, app.certificate.public_key()), algorithms=[header["alg"]],
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "require": ["aud", "iss", "sub", "exp"]})
        except jwt.PyJWTError:
            raise bad(700027, "Client assertion failed signature validation.") from None
        if claims["iss"].lower() != app.client_id or claims["sub"].lower() != app.client_id:
            raise bad(700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        if str(claims["aud"]).lower() not in token_endpoints:
            raise bad(50027, f"Invalid JWT token: the audience '{claims['aud']}' is not the token endpoint.")
        now = self.clock()
        if now > claims["exp"] + self.leeway or now + self.leeway < claims.get("nbf", 0):
            raise bad(700024, "Client assertion is not within its valid time range.")


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    if not authorization or not authorization.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(authorization[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return unquote_plus(user), unquote_plus(password)


def load_or_create_signing_key(path: str | Path) -> rsa.RSAPrivateKey:
    """The signing key kept in `path` (PEM, created with mode 0600 when absent), so that a restarted sandbox keeps
    its `kid` (botbuilder caches JWKS for a day and refetches an unknown kid at most hourly)."""
    p = Path(path)
    if p.exists():
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{p} does not hold an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.touch(mode=0o600)
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return key
