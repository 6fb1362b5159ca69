"""The one factory that builds the service: an aiohttp application whose resources live in cleanup contexts.

create_app(settings) opens, in order: the store, the shared HTTP session, secrets and tokens, the F&O clients,
and the pipeline workers; each is closed in reverse on shutdown. Handlers read them under typed AppKeys. This is
the only module that knows every adapter; it hands each one plain values, a session and token callables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from bot import BotRuntime, BotSettings, BotTrust, GraphClient, TeamsPoster
from connector.approvals import Approvals
from connector.act_as_wiring import act_as_wiring
from cards import Catalog
from connector.config import ConfigError, Settings, ignored_environment_variables
from connector.delivery import DeliveryDeps, make_deliver_stage, make_digest_renderer
from connector.endpoint_tokens import read_tokens
from connector.installs import InstallRecorder
from connector.instances import InstanceRegistry, lease_owner
from connector.manifest import default_app_id
from connector.ops import logctx
from connector.ops.metrics import Metrics
from connector.ops.routes import OpsContext
from connector.ops.upstreams import Upstreams
from connector.ops.wiring import bot_middleware, session_middleware, start_metrics_listener, wire_ops
from connector.outbox import Outbox
from connector.pacing import Pacer
from connector.pipeline import Pipeline, RetryPolicy, Stage
from connector.replies.wiring import Replies
from connector.teams_bot import ConnectorBotHandlers
from connector.teams_config import TeamsSettings, bot_settings_values, served_tenants
from connector.secrets import (MasterKey, SecretBox, SecretsError, install_redaction,
                               master_key_from_environment)
from connector.stages import EnvironmentRuntime, make_enrich_stage
from connector.store import EventStatus, Store, StoreUnavailable
from connector.store.factory import open_store
from connector.tls import TrustAdapter, client_ssl_context
from connector.token_wiring import (bot_credential, bot_token_source, environment_credential, fo_token_source,
                                    graph_token_source, load_ref, token_provider)
from connector.tokens import TokenProvider
from connector.validation import validate_settings
from connector.web import ENDPOINTS, EventEndpoints, EventEnvironment, events_app
from dynamics import ODataClient

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICES: web.AppKey[Services] = web.AppKey("services")


class StartupError(Exception):
    """`serve` could not start; the message is one line that says what to do."""


@dataclass
class Services:
    """Everything create_app opened, for handlers, tests and the demo."""

    settings: Settings
    store: Store
    session: aiohttp.ClientSession | None = None
    secrets: SecretBox | None = None
    tokens: TokenProvider | None = None
    environments: dict[str, EnvironmentRuntime] = field(default_factory=dict)
    pipeline: Pipeline | None = None
    teams: TeamsSettings | None = None
    bot: BotRuntime | None = None
    poster: TeamsPoster | None = None
    graph: GraphClient | None = None
    outbox: Outbox | None = None
    catalog: Catalog | None = None
    installs: InstallRecorder | None = None
    handlers: ConnectorBotHandlers | None = None
    approvals: Approvals | None = None
    replies: Replies | None = None
    messages_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
    metrics: Metrics | None = None
    upstreams: Upstreams = field(default_factory=Upstreams)
    ops: OpsContext | None = None


def catalog_app_id(teams: Any) -> str:
    """The Teams app's manifest id, which the org catalog keeps as its `externalId`: configured, or the id
    `manifest build` derives from the bot's app id (so an admin who uploaded our package sets nothing)."""
    return teams.teams_app_external_id or teams.teams_app_id or default_app_id(teams.app_id)


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # F&O's HTTPS endpoint requires at least TLS 1.2
    ctx.load_cert_chain(cert, key, password=_no_passphrase)  # never an interactive OpenSSL prompt
    return ctx


def _no_passphrase() -> bytes:
    raise ssl.SSLError("the private key is encrypted (give an unencrypted PEM key)")


def configured_store(settings: Settings) -> Store:
    """The store [store] names, with its password from store.password_file when set (not opened)."""
    try:
        return open_store(settings.store.url, password_file=settings.store.password_file,
                          **store_options(settings))
    except ValueError as exc:
        raise ConfigError(f"[store]: {exc}") from None


def store_options(settings: Settings) -> dict[str, Any]:
    """[store] keys that are options of the URL's store (commit_delay_ms is SQLite's alone)."""
    if settings.store.url.lower().startswith("sqlite:"):
        return {"commit_delay": settings.store.commit_delay_ms / 1000}
    return {}


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    master_key: MasterKey | None = None,
    clock: Callable[[], float] = time.time,
    start_pipeline: bool = True,
) -> web.Application:
    """Build the service. `store` and `master_key` default to the configured ones (tests pass their own).

    Raises:
        ConfigError: from validate_settings (the same verdict as `ml-connector config check`), before anything opens.
    """
    validated = validate_settings(settings)
    for warning in validated.warnings:
        log.warning("configuration: %s", warning)
    services = Services(settings=settings, store=store or configured_store(settings),
                        teams=validated.teams, catalog=validated.catalog,
                        metrics=Metrics(clock=clock) if settings.ops.metrics else None)
    app = events_app(
        services.store,
        EventEndpoints([], clock=clock),  # filled in at start, once the tokens are decrypted
        max_body_bytes=settings.server.max_body_bytes,
        clock=clock,
        wake=lambda: services.pipeline.wake() if services.pipeline else None,
        metrics=services.metrics,
    )
    app[SETTINGS] = settings
    app[SERVICES] = services
    card_locales = {e.name: e.locale for e in settings.environments if e.locale}  # environment -> card locale
    outbound_tls = client_ssl_context(settings.cloud.ca_bundle)  # one context for every outbound client

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        await services.store.open()
        yield
        await services.store.close()

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(ssl=outbound_tls, limit=100)
        services.session = aiohttp.ClientSession(connector=connector, raise_for_status=False, middlewares=[
            session_middleware(settings, services.metrics, services.upstreams)])  # client-request-id, metrics, logs
        yield
        await services.session.close()

    async def core_ctx(app: web.Application) -> AsyncIterator[None]:
        key = master_key or master_key_from_environment()
        services.secrets = SecretBox(services.store, key)
        install_redaction(services.secrets.known_values)
        services.tokens = token_provider(settings)
        box = services.secrets

        async def load_endpoints() -> list[EventEnvironment]:
            loaded = []
            for env in settings.environments:
                tokens = await read_tokens(box, env.event_secret_name)
                loaded.append(EventEnvironment(
                    env.name, tokens.current, frozenset(le.lower() for le in env.legal_entities),
                    previous_token=tokens.previous,
                    previous_valid_until=tokens.previous_valid_until(env.event_token_grace)))
            return loaded

        # The credentials first: without them the service cannot start, and that error should be the only line.
        credentials = [await load_ref(box, environment_credential(settings, env)) for env in settings.environments]
        env_endpoints = await load_endpoints()
        for env, endpoint in zip(settings.environments, env_endpoints):
            if not endpoint.token:
                log.error("environment %s has no events URL yet: run `ml-connector environments endpoint %s`",
                          env.name, env.name)
        for env, credential in zip(settings.environments, credentials):
            get_token = fo_token_source(services.tokens, environment_credential(settings, env), credential, env)
            assert services.session is not None  # opened above, in this context
            odata = ODataClient(
                services.session,
                env.base_url,
                get_token,
                timeout=settings.odata.timeout,
                max_attempts=settings.odata.max_attempts,
                max_inline_wait=settings.odata.max_inline_wait,
                default_retry_after=settings.odata.default_retry_after,
                max_pages=settings.odata.max_pages,
                ssl=outbound_tls,
            )
            services.environments[env.name] = EnvironmentRuntime(
                env.name, env.base_url, odata, asyncio.Semaphore(settings.odata.concurrency))
        app[ENDPOINTS].replace(env_endpoints)
        app[ENDPOINTS].loader = load_endpoints  # rotations and revocations reach the running service
        yield
        services.tokens.close()

    async def teams_ctx(app: web.Application) -> AsyncIterator[None]:
        teams = services.teams
        assert teams is not None and services.secrets is not None and services.tokens is not None
        if not teams.enabled:
            log.warning("no [bot] app_id configured: events are stored and enriched, but not posted to Teams")
            yield
            return
        bot_ref = bot_credential(settings, teams)
        credential = await load_ref(services.secrets, bot_ref)
        bot_token = bot_token_source(services.tokens, settings, bot_ref, credential)

        async def install_changed(install: Any) -> None:
            if services.approvals is not None:
                await services.approvals.service.on_install_recorded(install)
            if services.replies is not None and services.replies.manager is not None:
                services.replies.manager.wake()

        services.installs = InstallRecorder(services.store, clock, on_change=install_changed,
                                            tenants=served_tenants(settings, teams))
        services.handlers = ConnectorBotHandlers(services.installs)
        trust = BotTrust(outbound_tls, partial(TrustAdapter, outbound_tls))  # the service's one trust
        services.bot = BotRuntime(BotSettings(**bot_settings_values(settings, teams)), bot_token,
                                  services.handlers, trust=trust,
                                  middlewares=[bot_middleware(services.metrics, services.upstreams)])
        services.messages_handler = services.bot.messages_handler()
        if not await services.bot.warm_up():
            log.warning("could not fetch the Bot Framework signing keys yet; inbound calls retry on demand")
        services.poster = TeamsPoster(services.bot)
        if teams.graph:
            graph_token = graph_token_source(services.tokens, settings, bot_ref, credential)
            assert services.session is not None
            services.graph = GraphClient(services.session, settings.cloud.endpoint("graph_url"), graph_token,
                                         ssl=outbound_tls)
        if settings.approvals.enabled:
            assert services.catalog is not None
            approval_settings = settings.approvals
            if not approval_settings.teams_app_external_id:
                approval_settings = approval_settings.model_copy(
                    update={"teams_app_external_id": catalog_app_id(teams)})
            assert services.session is not None
            gate, as_user = act_as_wiring(settings, teams, approval_settings, tokens=services.tokens,
                                          session=services.session, ref=bot_ref, credential=credential,
                                          tls=outbound_tls)
            services.approvals = Approvals.build(
                store=services.store, settings=approval_settings, poster=services.poster, graph=services.graph,
                catalog=services.catalog,
                environments={n: (e.base_url, e.odata) for n, e in services.environments.items()},
                clock=clock, max_bytes=settings.cards.max_bytes, max_lines=settings.cards.max_lines,
                locales=card_locales, gate=gate, as_user=as_user,
                on_press=services.metrics.approval_press if services.metrics else None,
                on_card_update=services.metrics.card_update if services.metrics else None,
            )
            services.handlers.approvals = services.approvals.service
            services.handlers.my_approvals = services.approvals.my
            if settings.replies.enabled:
                services.replies = Replies.build(
                    store=services.store, settings=settings.replies, service=services.approvals.service,
                    poster=services.poster, graph=services.graph, secrets_box=services.secrets,
                    public_url=settings.server.public_url, routes=validated.routes, owner=lease_owner(),
                    clock=clock, bot_app_id=teams.app_id)
                services.handlers.replies = services.replies.feed
                if settings.replies.source in ("graph", "both") and services.replies.manager is None:
                    log.warning("replies.source = %s but Graph is not configured: typed replies come from the "
                                "bot feed only", settings.replies.source)
        yield
        if services.replies is not None:
            await services.replies.drain()
        if services.approvals is not None:
            await services.approvals.service.aclose()
        if services.outbox is not None:
            await services.outbox.close()
        await services.bot.close()

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        plans = validated.plans
        teams = services.teams
        delivering = teams is not None and teams.enabled and services.poster is not None
        stages: dict[str, Stage] = {
            "enrich": make_enrich_stage(services.environments, plans, next_stage="deliver" if delivering else ""),
        }
        if delivering:
            assert teams is not None and services.catalog is not None and services.poster is not None
            deps = DeliveryDeps(
                store=services.store,
                outbox=None,  # type: ignore[arg-type]  # set just below: the digest renderer needs deps
                catalog=services.catalog,
                routes=validated.routes,
                graph=services.graph,
                environments={e.name: e.base_url for e in settings.environments},
                locales=card_locales,
                clock=clock,
                max_lines=settings.cards.max_lines,
                max_bytes=settings.cards.max_bytes,
                tenants=served_tenants(settings, teams) or None,
            )
            store = services.store

            async def unfinished() -> int:  # the outbox folds bursts from the store's backlog (cheap: schema 6)
                counts = await store.count_by_status()
                return counts[EventStatus.QUEUED] + counts[EventStatus.PROCESSING]

            services.outbox = Outbox(services.poster, Pacer(), make_digest_renderer(deps),
                                     digest_after=teams.digest_after, digest_max=teams.digest_max,
                                     backlog=unfinished)
            deps.outbox = services.outbox
            if services.approvals is not None:
                deps.approvals = services.approvals.service
                deps.reconciler = services.approvals.reconciler
                stages.update(services.approvals.stages())
            stages["deliver"] = make_deliver_stage(deps)
        # Register this process first: it retires a previous life of this service (kill -9, crash) and puts the
        # events that life had leased back in the queue, so they resume now rather than when their leases expire.
        registry = InstanceRegistry(services.store, lease_seconds=settings.pipeline.instance_lease_seconds,
                                    clock=clock)
        await registry.start()
        services.pipeline = Pipeline(
            services.store,
            stages,
            concurrency=settings.pipeline.concurrency,
            lease_seconds=settings.pipeline.lease_seconds,
            poll_interval=settings.pipeline.poll_interval,
            policy=RetryPolicy(settings.pipeline.max_attempts, settings.pipeline.backoff_base,
                               settings.pipeline.backoff_max),
            clock=clock,
            name=registry.id,
            observer=services.metrics,
        )
        pipeline = services.pipeline
        registry.on_renamed = lambda new_id: setattr(pipeline, "name", new_id)
        background: asyncio.Task[None] | None = None
        summaries: asyncio.Task[None] | None = None
        stop_background = asyncio.Event()
        if services.approvals is not None:
            services.approvals.set_wake(services.pipeline.wake)
        reply_tasks: list[asyncio.Task[None]] = []
        if services.replies is not None:
            services.replies.set_owner(registry.id)
        if start_pipeline:
            await services.pipeline.start()
            if services.approvals is not None:
                background = asyncio.create_task(services.approvals.reconciler.run_background(stop_background),
                                                 name="approvals-reconciler")
                summaries = asyncio.create_task(services.approvals.my.summary.run_background(stop_background),
                                                name="my-approvals-summary")
            if services.replies is not None:
                reply_tasks = services.replies.start(stop_background)
        yield
        stop_background.set()
        await asyncio.gather(*(t for t in (background, summaries) if t is not None), *reply_tasks,
                             return_exceptions=True)
        await services.pipeline.stop()
        await registry.stop()  # after the pipeline: releases whatever it left leased

    app.cleanup_ctx.extend([store_ctx, session_ctx, core_ctx, teams_ctx, pipeline_ctx])
    services.ops = wire_ops(app, services, settings, clock=clock, pipeline_expected=start_pipeline)

    async def messages(request: web.Request) -> web.StreamResponse:
        handler = services.messages_handler
        if handler is None:
            return web.json_response({"error": "not_found", "detail": "the Teams bot is not configured"}, status=404)
        return await handler(request)

    app.router.add_post("/api/messages", messages)

    def graph_route(kind: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def route(request: web.Request) -> web.StreamResponse:
            replies = services.replies
            if replies is None or replies.endpoints is None:
                return web.json_response({"error": "not_found", "detail": "typed replies through Graph are not "
                                          "enabled ([replies] source = \"graph\" or \"both\")"}, status=404)
            handler = replies.endpoints.notifications if kind == "notifications" else replies.endpoints.lifecycle
            return await handler(request)
        return route

    app.router.add_post(settings.replies.notification_path, graph_route("notifications"))
    app.router.add_post(settings.replies.lifecycle_path, graph_route("lifecycle"))
    return app


_ACCESS_FIELDS = ("http_method", "http_path", "http_status", "remote")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the ids bound in the log context (connector/ops/logctx.py)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "message": record.getMessage()}
        entry.update(logctx.record_fields(record))
        entry.update({k: getattr(record, k) for k in _ACCESS_FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, logctx.ContextFilter) for f in handler.filters):
            handler.addFilter(logctx.ContextFilter())  # every line carries the ids of what it is about
        if settings.logging.format == "json":
            handler.setFormatter(JsonFormatter())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours is connector.access (token redacted)
    # msal logs token responses at DEBUG; never let that through
    logging.getLogger("msal").setLevel(logging.WARNING)


def run_service(settings: Settings) -> None:
    """`ml-connector serve`: run until SIGINT/SIGTERM.

    Raises:
        ConfigError: the configuration is invalid (every problem listed).
        StartupError: something the service needs cannot be had (master key, store, TLS files, the port); one line.
    """
    configure_logging(settings)
    ignored = ignored_environment_variables(os.environ)
    if ignored:
        log.debug("ignored environment variables (no such configuration section): %s", ", ".join(ignored))
    app = create_app(settings)  # validates first; the master key is read at start-up, after the store opens
    ssl_ctx = None
    if settings.server.tls_cert and settings.server.tls_key:
        try:
            ssl_ctx = server_ssl_context(settings.server.tls_cert, settings.server.tls_key)
        except (ssl.SSLError, OSError) as exc:  # changed since validation read them
            raise StartupError(f"server.tls_cert/tls_key cannot be loaded: {exc}") from None
    try:
        asyncio.run(_serve(app, settings.server.host, settings.server.port, ssl_ctx, settings))
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    except StoreUnavailable as exc:
        raise StartupError(_one_line(
            f"the store is unavailable: {exc}. Check [store] url: the database must be reachable (MongoDB) or its "
            "folder must exist and be writable (SQLite)")) from None
    except SecretsError as exc:  # no master key, a malformed one, or one that cannot open the stored secrets
        raise StartupError(_one_line(str(exc))) from None
    except _ListenError as exc:
        raise StartupError(str(exc)) from None


class _ListenError(Exception):
    """The listening socket could not be opened."""


async def _serve(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 settings: Settings | None = None) -> None:
    """What web.run_app does, except that a failed start closes what had already started.

    aiohttp leaves the cleanup contexts that did start open when a later one fails (web.run_app calls setup()
    outside its try), so the HTTP session and the store would leak and Python would print "Unclosed client session"
    after our error line.
    """
    runner = web.AppRunner(app, handle_signals=True)
    metrics_runner: web.AppRunner | None = None
    try:
        await runner.setup()
    except BaseException:
        await app.cleanup()
        raise
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            raise _ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another [server] port "
                               "or stop what is using it") from None
        log.info("listening on %s:%s", host, port)
        ops = app[SERVICES].ops if SERVICES in app else None
        if settings is not None and ops is not None and settings.ops.metrics and settings.ops.metrics_port:
            metrics_runner = await start_metrics_listener(ops, settings.ops.metrics_host, settings.ops.metrics_port)
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


def _one_line(text: str) -> str:
    return " ".join(text.split())
