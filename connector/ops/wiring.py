"""How connector/app.py plugs operations into the service: metrics, the access log, the outbound trace, the
probes, the status page and retention. Kept here so app.py stays the list of what opens in which order."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, AsyncIterator, Callable, Iterable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from connector.config import ConfigError, Settings
from connector.ops.access import access_middleware
from connector.ops.admin_auth import AdminAuth
from connector.ops.admin_entra import EntraAdminSettings, EntraSignIn
from connector.ops.metrics import Metrics, backlog_families, token_families
from connector.ops.outbound import host_classifier, outbound_middleware
from connector.ops.probes import ReadinessChecks
from connector.ops.retention import run_retention
from connector.ops.routes import OpsContext, ops_routes
from connector.ops.status import StatusSources
from connector.ops.upstreams import Upstreams
from connector.tls import trusting_session

MS_AUTHORITY_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoft.com", "login.windows.net",
                                "login.microsoftonline.us", "login.partner.microsoftonline.cn"})

log = logging.getLogger(__name__)


def _host(url: str | None) -> str:
    """host:port (the port too: the sandbox serves every stand-in on 127.0.0.1)."""
    if not url:
        return ""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or ''}:{port}"


def outbound_hosts(settings: Settings) -> dict[str, str]:
    hosts = {_host(e.base_url): "fno" for e in settings.environments}
    hosts[_host(settings.cloud.endpoint("graph_url"))] = "graph"
    hosts[_host(settings.cloud.endpoint("authority_host"))] = "entra"
    return hosts


def session_middleware(settings: Settings, metrics: Metrics | None,
                       upstreams: Upstreams) -> aiohttp.ClientMiddlewareType:
    return outbound_middleware(host_classifier(outbound_hosts(settings)), metrics=metrics, upstreams=upstreams)


def bot_middleware(metrics: Metrics | None, upstreams: Upstreams) -> aiohttp.ClientMiddlewareType:
    """The Bot Connector runtime's own session: every host it calls is a Bot Connector service URL."""
    return outbound_middleware(lambda host: "bot_connector", metrics=metrics, upstreams=upstreams)


def _secret_reader(services: Any, name: str) -> Callable[[], Any]:
    async def read() -> str | None:
        from connector.secrets import SecretNotFound

        if services.secrets is None:
            return None
        try:
            return (await services.secrets.get(name)).reveal()
        except SecretNotFound:
            return None

    return read


def _token_sources(services: Any) -> Iterable[Any]:
    return services.tokens.sources() if services.tokens is not None else []


def _delivered(services: Any) -> tuple[int, int]:
    outbox = services.outbox
    return (outbox.posts, outbox.digests) if outbox is not None else (0, 0)


def _session_key(services: Any, name: str) -> Callable[[], Any]:
    """The key signing Entra ID sessions: a random stored secret, made on first use."""
    cached: list[bytes] = []

    async def read() -> bytes:
        from connector.secrets import SecretNotFound

        if cached:
            return cached[0]
        try:
            value = (await services.secrets.get(name)).reveal()
        except SecretNotFound:
            value = secrets.token_urlsafe(32)
            await services.secrets.put(name, value)
        cached.append(value.encode())
        return cached[0]

    return read


def entra_sign_in(services: Any, settings: Settings) -> EntraSignIn | None:
    """`[ops] admin_sign_in = "entra"`: the status page's Microsoft sign-in. Raises ConfigError naming what is
    missing."""
    ops = settings.ops
    if ops.admin_sign_in != "entra":
        return None
    public = settings.server.public_url
    if not public:
        raise ConfigError("ops.admin_sign_in = \"entra\" needs server.public_url (Entra ID redirects the browser to "
                          "<public_url>/admin/callback; register that URI on the app)")
    if not (ops.admin_group or ops.admin_role):
        raise ConfigError("ops.admin_sign_in = \"entra\" needs ops.admin_role (an app role value) or "
                          "ops.admin_group (a group object id): who may use the status page")
    client_id = ops.admin_client_id or settings.identity.client_id
    secret_name = ops.admin_client_secret or settings.identity.credential
    host = settings.cloud.endpoint("authority_host").rstrip("/")
    ca = settings.cloud.ca_bundle

    async def client_secret() -> str:
        return str((await services.secrets.get(secret_name)).reveal())

    return EntraSignIn(
        EntraAdminSettings(authority=f"{host}/{settings.identity.tenant_id}", client_id=client_id,
                           redirect_uri=public.rstrip("/") + "/admin/callback", group=ops.admin_group,
                           role=ops.admin_role, discover=(urlsplit(host).hostname or "") in MS_AUTHORITY_HOSTS),
        client_secret, http_client=trusting_session(str(ca) if ca else None))


def wire_ops(app: web.Application, services: Any, settings: Settings, *, clock: Callable[[], float],
             pipeline_expected: bool) -> OpsContext:
    """Add the operations routes, middleware and background work to the service's app (after its cleanup
    contexts: retention needs the store open)."""
    ops = settings.ops
    metrics = services.metrics
    if ops.access_log:
        app.middlewares.insert(0, access_middleware())
    if metrics is not None:
        metrics.add_reader(token_families(lambda: _token_sources(services),
                                          lambda: services.tokens.clock() if services.tokens else 0.0))
        metrics.add_reader(backlog_families(
            lambda: services.outbox.backlog() if services.outbox is not None else {}, metrics.max_channels))

        def teams_cards() -> Iterable[Any]:
            posts, digests = _delivered(services)
            fam = CounterMetricFamily("ml_connector_teams_cards", "Cards posted to Teams channels by kind",
                                      labels=["kind"])
            fam.add_metric(["post"], posts - digests)
            fam.add_metric(["digest"], digests)
            return [fam]

        metrics.add_reader(teams_cards)
    ctx = OpsContext(
        store=services.store,
        metrics=metrics,
        readiness=ReadinessChecks(
            store=services.store, pipeline=lambda: services.pipeline, tokens=lambda: _token_sources(services),
            token_clock=lambda: services.tokens.clock() if services.tokens is not None else 0.0,
            clock=clock, expect_pipeline=pipeline_expected),
        status=StatusSources(store=services.store, upstreams=services.upstreams,
                             backlog=lambda: services.outbox.backlog() if services.outbox is not None else {},
                             delivered=lambda: _delivered(services), clock=clock,
                             tokens=lambda: _token_sources(services)),
        admin=AdminAuth(_secret_reader(services, ops.admin_token_secret), clock=clock,
                        session_key=_session_key(services, ops.admin_session_secret)),
        entra=entra_sign_in(services, settings),
        wake=lambda: services.pipeline.wake() if services.pipeline is not None else None,
        metrics_token=_secret_reader(services, ops.metrics_token_secret) if ops.metrics_port == 0 else None,
        snapshot_seconds=ops.metrics_cache_seconds,
        clock=clock,
        secure_cookies=bool(settings.server.tls_cert),
    )
    ops_routes(app, ctx)

    async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if ops.retention_days > 0 and pipeline_expected:
            task = asyncio.create_task(run_retention(services.store, days=ops.retention_days,
                                                     interval=ops.purge_interval, clock=clock, stop=stop),
                                       name="retention")
        yield
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(retention_ctx)
    return ctx


async def start_metrics_listener(ctx: OpsContext, host: str, port: int) -> web.AppRunner | None:
    """The loopback metrics listener; a port in use is logged, not fatal (metrics are not the service)."""
    from connector.ops.routes import metrics_app

    runner = web.AppRunner(metrics_app(ctx), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("cannot listen for metrics on %s:%s (%s); choose another [ops] metrics_port", host, port,
                  exc.strerror or exc)
        await runner.cleanup()
        return None
    log.info("metrics on http://%s:%s/metrics", host, port)
    return runner


