"""The operations endpoints: /healthz, /readyz, /metrics and the /admin status page.

`ops_routes(app, ctx, public=True)` adds them to the service's public app: /metrics there only answers a
bearer token (when one is configured; otherwise 404), /readyz names failing checks without their details.
`metrics_app(ctx)` is the loopback listener's app ([ops] metrics_port): /metrics, /healthz and /readyz with details,
no authentication (it listens on loopback only).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

from connector.ops.admin_auth import COOKIE, AdminAuth, csrf_ok, same_origin
from connector.ops.admin_entra import EntraSignIn, SignInRefused
from connector.ops.admin_page import login_page, status_page
from connector.ops.metrics import CONTENT_TYPE, Metrics, StoreSnapshot
from connector.ops.probes import ReadinessChecks, readiness_body
from connector.ops.status import StatusSources
from connector.store import NotFound, Store, StoreError

log = logging.getLogger(__name__)


@dataclass
class OpsContext:
    store: Store
    metrics: Metrics | None
    readiness: ReadinessChecks
    status: StatusSources | None = None
    admin: AdminAuth | None = None
    entra: EntraSignIn | None = None  # [ops] admin_sign_in = "entra"
    wake: Callable[[], None] = lambda: None
    metrics_token: Callable[[], Awaitable[str | None]] | None = None  # bearer for /metrics on the public listener
    snapshot_seconds: float = 15.0
    clock: Callable[[], float] = time.time
    secure_cookies: bool = False
    _refreshing: bool = field(default=False, repr=False)


OPS = web.AppKey("ops", OpsContext)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all proves the process and its event loop run. Reads nothing."""
    return web.json_response({"status": "ok"})


async def _ready(request: web.Request, *, details: bool) -> web.Response:
    ready, results = await request.app[OPS].readiness.run()
    if not details:
        results = {k: ("ok" if v == "ok" else "failing") for k, v in results.items()}
    return web.json_response(readiness_body(ready, results), status=200 if ready else 503)


async def readyz_public(request: web.Request) -> web.Response:
    return await _ready(request, details=False)


async def readyz_detailed(request: web.Request) -> web.Response:
    return await _ready(request, details=True)


async def refresh_snapshot(ctx: OpsContext) -> None:
    """Read the store's gauges when the cached ones are older than snapshot_seconds (one scrape reads at a time)."""
    metrics = ctx.metrics
    if metrics is None or ctx._refreshing or not metrics.snapshot_due(ctx.snapshot_seconds):
        return
    ctx._refreshing = True
    try:
        counts = await ctx.store.count_by_status()
        subs = await ctx.store.list_graph_subscriptions()  # one per channel with typed replies: a short list
        by_status: dict[str, int] = {}
        for sub in subs:
            by_status[sub.status] = by_status.get(sub.status, 0) + 1
        metrics.set_snapshot(StoreSnapshot(
            by_status={k.value: v for k, v in counts.items()},
            oldest_pending_at=await ctx.store.oldest_pending_at(),
            approvals_by_status=await ctx.store.count_approvals_by_status(),
            graph_subscriptions_by_status=by_status,
            graph_subscription_expires_at=min((s.expires_at for s in subs if s.status == "active"), default=None)))
    except StoreError as exc:
        log.warning("metrics: could not read the store (%s); serving the last values", exc)
    finally:
        ctx._refreshing = False


async def _metrics_body(ctx: OpsContext) -> web.Response:
    if ctx.metrics is None:
        return web.json_response({"error": "not_found", "detail": "metrics are off ([ops] metrics = false)"},
                                 status=404)
    await refresh_snapshot(ctx)
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def metrics_loopback(request: web.Request) -> web.Response:
    return await _metrics_body(request.app[OPS])


async def metrics_public(request: web.Request) -> web.Response:
    ctx = request.app[OPS]
    expected = await ctx.metrics_token() if ctx.metrics_token is not None else None
    if not expected:
        return web.json_response({"error": "not_found", "detail": "metrics are served on the loopback port "
                                  "([ops] metrics_port), or here with a bearer token ([ops] metrics_token_secret)"},
                                 status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        return web.json_response({"error": "unauthorized", "detail": "send Authorization: Bearer <metrics token>"},
                                 status=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return await _metrics_body(ctx)


# --- the status page --------------------------------------------------------------------------------------------
def _html(body: str, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"  # no clickjacking of the Replay button
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; " \
                                              "frame-ancestors 'none'"
    return resp


def _auth(request: web.Request) -> AdminAuth:
    admin = request.app[OPS].admin
    if admin is None:
        raise web.HTTPNotFound()
    return admin


async def admin_page(request: web.Request) -> web.Response:
    ctx = request.app[OPS]
    session = await _auth(request).session(request)
    if session is None:
        return _html(login_page(entra=ctx.entra is not None), status=401)
    assert ctx.status is not None
    return _html(status_page(await ctx.status.gather(), session.csrf))


async def admin_login(request: web.Request) -> web.Response:
    ctx = request.app[OPS]
    admin = _auth(request)
    if not same_origin(request):
        return _html(login_page("This form must be sent from the status page itself.", entra=ctx.entra is not None),
                     status=403)
    form = await request.post()
    if not await admin.check_token(str(form.get("token", ""))):
        log.warning("status page: sign-in with a wrong admin token from %s", request.remote)
        return _html(login_page("Wrong admin token.", entra=ctx.entra is not None), status=401)
    log.info("status page: admin signed in with the admin token from %s", request.remote)
    raise await _signed_in(request, "t")


async def _signed_in(request: web.Request, kind: str) -> web.HTTPSeeOther:
    resp = web.HTTPSeeOther("/admin")
    resp.set_cookie(COOKIE, await _auth(request).new_cookie(kind), httponly=True, samesite="Lax", path="/admin",
                    secure=request.app[OPS].secure_cookies, max_age=8 * 3600)
    return resp


async def admin_signin(request: web.Request) -> web.Response:
    """Off to Entra ID (the authorization code flow)."""
    ctx = request.app[OPS]
    if ctx.entra is None:
        raise web.HTTPNotFound()
    raise web.HTTPFound(await ctx.entra.start())


async def admin_callback(request: web.Request) -> web.Response:
    """Entra ID's answer (a form POST, as the sign-in asks; a GET's query is read the same way): redeem the code,
    check the role or group, start a session."""
    ctx = request.app[OPS]
    if ctx.entra is None:
        raise web.HTTPNotFound()
    answer = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" \
        else dict(request.query)
    try:
        who = await ctx.entra.finish(answer)
    except SignInRefused as exc:
        log.warning("status page: Entra ID sign-in refused: %s", exc.message)
        return _html(login_page(exc.message, entra=True), status=exc.status)
    log.info("status page: %s (%s) signed in with Entra ID", who.upn, who.object_id)
    raise await _signed_in(request, "e")


async def _checked_session(request: web.Request) -> dict[str, str]:
    """The form of an action, after its session, origin and CSRF token are checked (401/403 otherwise)."""
    admin = _auth(request)
    session = await admin.session(request)
    if session is None:
        raise web.HTTPUnauthorized(text=login_page("Sign in first."), content_type="text/html")
    form = await request.post()
    if not same_origin(request) or not csrf_ok(session, str(form.get("csrf", ""))):
        log.warning("status page: refused a %s without a valid CSRF token from %s (Origin %s)", request.path,
                    request.remote, request.headers.get("Origin"))
        raise web.HTTPForbidden(text='{"error": "csrf", "detail": "the form is not from this status page"}',
                                content_type="application/json")
    return {k: str(v) for k, v in form.items()}


async def admin_replay(request: web.Request) -> web.Response:
    ctx = request.app[OPS]
    form = await _checked_session(request)
    event_id = form.get("event_id", "")
    try:
        await ctx.store.replay(event_id, now=ctx.clock())
    except NotFound:
        return web.json_response({"error": "not_found", "detail": f"no event {event_id!r}"}, status=404)
    log.info("status page: event %s replayed by the admin", event_id, extra={"event_id": event_id})
    ctx.wake()
    raise web.HTTPSeeOther("/admin")


async def admin_logout(request: web.Request) -> web.Response:
    await _checked_session(request)
    resp = web.HTTPSeeOther("/admin")
    resp.del_cookie(COOKIE, path="/admin")
    raise resp


def ops_routes(app: web.Application, ctx: OpsContext) -> None:
    """The public listener's operations routes."""
    app[OPS] = ctx  # /healthz is connector/web.py's (the same liveness answer)
    app.router.add_get("/readyz", readyz_public)
    app.router.add_get("/metrics", metrics_public)
    app.router.add_get("/admin", admin_page)
    app.router.add_post("/admin/login", admin_login)
    app.router.add_post("/admin/replay", admin_replay)
    app.router.add_post("/admin/logout", admin_logout)
    app.router.add_get("/admin/signin", admin_signin)
    app.router.add_get("/admin/callback", admin_callback)
    app.router.add_post("/admin/callback", admin_callback)


def metrics_app(ctx: OpsContext) -> web.Application:
    """The loopback listener's app."""
    app = web.Application()
    app[OPS] = ctx
    app.router.add_get("/metrics", metrics_loopback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz_detailed)
    return app
