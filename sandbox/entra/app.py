"""The Entra stand-in over HTTP: OpenID configuration, JWKS, the v2 token endpoint and the admin API
(/_sandbox/entra/...). Every rule lives in sandbox/entra/issuer.py; this module only parses and answers.
"""

from __future__ import annotations

import html
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.entra.issuer import EntraIssuer, OAuthError, _basic_credentials
from sandbox.entra.signin import SignIn

# --- HTTP --------------------------------------------------------------------------------------------------------
ISSUER_KEY = web.AppKey("entra_issuer", EntraIssuer)
SIGNIN_KEY = web.AppKey("entra_signin", SignIn)


def _base(request: web.Request) -> str:
    return f"https://{request.host}"  # MSAL refuses http authorities: the stand-in is always served over TLS


def _error_body(request: web.Request, err: OAuthError) -> dict[str, Any]:
    trace, corr = str(uuid.uuid4()), request.headers.get("client-request-id") or str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    prefix = f"AADSTS{err.code}: " if err.code else ""
    body = {"error": err.error,
            "error_description": f"{prefix}{err.description} Trace ID: {trace} Correlation ID: {corr} "
                                 f"Timestamp: {stamp}",
            "error_codes": [err.code] if err.code else [],
            "timestamp": stamp, "trace_id": trace, "correlation_id": corr}
    body.update(err.extra)
    if err.code:
        body["error_uri"] = f"{_base(request)}/error?code={err.code}"
    return body


async def _openid_configuration(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER_KEY]
    seg = request.match_info["tenant"]
    tid = issuer.resolve_tenant(seg)
    if tid is None:
        return web.json_response({"error": "invalid_tenant", "error_description":
                                  f"AADSTS90002: Tenant '{seg}' not found.", "error_codes": [90002]}, status=400)
    base = f"{_base(request)}/{seg}"
    return web.json_response({
        "issuer": issuer.issuer_for(tid, "2.0"),
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                  "authorization_code"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "sandbox.invalid",
    })


async def _keys(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER_KEY]
    if issuer.resolve_tenant(request.match_info["tenant"]) is None:
        return web.json_response({"error": "invalid_tenant"}, status=400)
    return web.json_response(issuer.jwks())


async def _token(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER_KEY]
    issuer.requests += 1
    injected = issuer.take_injected_failure()
    if injected:
        status, retry_after = injected
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return web.json_response(
            {"error": "temporarily_unavailable",
             "error_description": f"Sandbox: injected HTTP {status} (fail-next).", "error_codes": []},
            status=status, headers=headers)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    seg = request.match_info["tenant"]
    base = _base(request).lower()
    endpoints = {f"{base}/{seg.lower()}/oauth2/v2.0/token", f"{base}/{seg.lower()}/oauth2/token"}
    tid = issuer.resolve_tenant(seg)
    if tid:
        endpoints |= {f"{base}/{tid}/oauth2/v2.0/token", f"{base}/{tid}/oauth2/token"}
    try:
        if form.get("grant_type") == "authorization_code":  # interactive sign-in (sandbox/entra/signin.py)
            basic_id, basic_secret = _basic_credentials(request.headers.get("Authorization"))
            body = request.app[SIGNIN_KEY].redeem(seg, form, (form.get("client_id") or basic_id or "").lower(),
                                                  form.get("client_secret") or basic_secret)
        else:
            body = issuer.token_response(seg, form, authorization=request.headers.get("Authorization"),
                                         token_endpoints=endpoints)
    except OAuthError as err:
        issuer.refused += 1
        return web.json_response(_error_body(request, err), status=err.status)
    return web.json_response(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


async def _admin_token_lifetime(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER_KEY]
    try:
        seconds = int((await request.json())["seconds"])
        if seconds < 1:
            raise ValueError
    except (KeyError, ValueError, TypeError, json.JSONDecodeError):
        return web.json_response({"error": "give {\"seconds\": <positive int>}"}, status=400)
    issuer.token_lifetime = seconds
    return web.json_response({"token_lifetime": seconds})


async def _admin_fail_next(request: web.Request) -> web.Response:
    issuer = request.app[ISSUER_KEY]
    try:
        body = await request.json()
        ra = body.get("retry_after")
        issuer.fail_next(int(body.get("count", 1)), status=int(body.get("status", 503)),
                         retry_after=None if ra is None else int(ra))
    except (ValueError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(issuer.stats())


async def _admin_roles(request: web.Request) -> web.Response:
    """Set the application permissions (app roles) an app holds on a resource, as admin consent would; they go
    into the `roles` claim of the app's next tokens for that resource."""
    issuer = request.app[ISSUER_KEY]
    try:
        body = await request.json()
        client_id, resource, roles = str(body["client_id"]).lower(), str(body["resource"]), body["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise TypeError("roles must be a list of strings")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        return web.json_response({"error": f"give {{\"client_id\", \"resource\", \"roles\": [...]}} ({exc})"},
                                 status=400)
    app = issuer.apps.get(client_id)
    if app is None:
        return web.json_response({"error": f"no app registered with client id {client_id}"}, status=404)
    app.roles[resource.rstrip("/")] = list(roles)
    app.roles.pop(resource.rstrip("/") + "/", None)
    return web.json_response({"client_id": client_id, "roles": app.roles})


async def _admin_sso(request: web.Request) -> web.Response:
    """GET: the SSO/OBO switches and counters. POST {"consent_missing"?, "mfa_required"?, "sso_lifetime"?}."""
    knobs = request.app[ISSUER_KEY].sso
    if request.method == "POST":
        try:
            body = await request.json()
            for name in ("consent_missing", "mfa_required"):
                if name in body:
                    setattr(knobs, name, bool(body[name]))
            if "sso_lifetime" in body:
                knobs.sso_lifetime = max(1, int(body["sso_lifetime"]))
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            return web.json_response({"error": f"give {{\"consent_missing\"|\"mfa_required\": bool, "
                                               f"\"sso_lifetime\": int}} ({exc})"}, status=400)
    return web.json_response(knobs.as_json())


async def _authorize(request: web.Request) -> web.Response:
    query = dict(request.query)
    try:
        redirect_uri, params = request.app[SIGNIN_KEY].grant(query)
    except OAuthError as err:
        return web.json_response(_error_body(request, err), status=err.status)
    mode = query.get("response_mode", "query")
    if mode == "form_post":  # Entra's page: a form that POSTs the answer to the redirect URI as soon as it loads
        fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
                         for k, v in params.items())
        page = (f'<html><head><title>Working...</title></head><body><form method="POST" name="hiddenform" '
                f'action="{html.escape(redirect_uri)}">{fields}<noscript><p>Script is disabled. Click Submit to '
                f'continue.</p><input type="submit" value="Submit"/></noscript></form>'
                f'<script>document.forms[0].submit();</script></body></html>')
        return web.Response(text=page, content_type="text/html")
    separator = "#" if mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode(params)}")


async def _admin_signin(request: web.Request) -> web.Response:
    """Who signs in next: {"upn", "groups": [object ids], "roles": {"<client id>": ["Role.Value"]}}."""
    try:
        body = await request.json()
        user = request.app[SIGNIN_KEY].set_user(str(body["upn"]), groups=body.get("groups"),
                                                roles=body.get("roles"))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        return web.json_response({"error": f"give {{\"upn\", \"groups\"?, \"roles\"?}} of a sandbox person "
                                           f"({exc})"}, status=400)
    return web.json_response({"upn": user.upn, "object_id": user.object_id, "groups": user.groups,
                              "roles": user.roles})


async def _admin_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[ISSUER_KEY].stats())


def create_entra_app(issuer: EntraIssuer) -> web.Application:
    """The Entra stand-in's aiohttp application (serve it over TLS: MSAL only accepts https authorities)."""
    app = web.Application()
    app[ISSUER_KEY] = issuer
    app[SIGNIN_KEY] = SignIn(issuer)
    app.router.add_post("/_sandbox/entra/token-lifetime", _admin_token_lifetime)
    app.router.add_post("/_sandbox/entra/fail-next", _admin_fail_next)
    app.router.add_get("/_sandbox/entra/stats", _admin_stats)
    app.router.add_post("/_sandbox/entra/roles", _admin_roles)
    app.router.add_route("*", "/_sandbox/entra/sso", _admin_sso)
    app.router.add_post("/_sandbox/entra/signin", _admin_signin)
    app.router.add_get("/{tenant}/oauth2/v2.0/authorize", _authorize)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", _openid_configuration)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", _keys)
    app.router.add_get("/{tenant}/discovery/keys", _keys)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", _token)
    return app


async def serve_entra(issuer: EntraIssuer, ssl_context: Any, *, host: str = "127.0.0.1",
                      port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the stand-in on `host:port` (0: a free port). Returns the runner (cleanup() it) and the
    authority host, e.g. "https://127.0.0.1:54321"."""
    runner = web.AppRunner(create_entra_app(issuer), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"https://{host}:{bound}"
