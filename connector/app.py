"""The one factory that builds the service: an aiohttp application whose resources live in cleanup contexts.

create_app(settings) opens, in order: the store, the shared HTTP session, secrets and tokens, the F&O clients,
and the pipeline workers; each is closed in reverse on shutdown. Handlers read them under typed AppKeys. This is
the only module that knows every adapter; it hands each one plain values, a session and token callables.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from bot import BotRuntime, BotSettings, GraphClient, TeamsPoster
from connector.approvals import Approvals
from cards import Catalog, TemplateInvalid
from connector.config import ConfigError, Settings
from connector.delivery import DeliveryDeps, make_deliver_stage, make_digest_renderer
from connector.endpoint_tokens import read_tokens
from connector.installs import InstallRecorder
from connector.instances import InstanceRegistry
from connector.manifest import default_app_id
from connector.outbox import Outbox
from connector.pacing import Pacer
from connector.pipeline import Pipeline, RetryPolicy, Stage
from connector.routes import routes_from_config
from connector.teams_bot import ConnectorBotHandlers
from connector.teams_config import TeamsSettings, bot_settings_values, teams_settings
from connector.secrets import MasterKey, SecretBox, SecretNotFound, install_redaction, master_key_from_environment
from connector.stages import EnvironmentRuntime, make_enrich_stage
from connector.store import Store
from connector.store.factory import open_store
from connector.tokens import ClientCertificate, ClientSecret, TokenProvider, fo_scope, graph_scope
from connector.web import ENDPOINTS, EventEndpoints, EventEnvironment, events_app
from dynamics import ODataClient, plans_from_config

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICES: web.AppKey[Services] = web.AppKey("services")


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
    messages_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None


def catalog_app_id(teams: Any) -> str:
    """The Teams app's manifest id, which the org catalog keeps as its `externalId`: configured, or the id
    `manifest build` derives from the bot's app id (so an admin who uploaded our package sets nothing)."""
    return teams.teams_app_external_id or teams.teams_app_id or default_app_id(teams.app_id)


def client_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust plus, when configured, an extra CA (the sandbox's, or a corporate proxy's)."""
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    return ctx


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # F&O's HTTPS endpoint requires at least TLS 1.2
    ctx.load_cert_chain(cert, key)
    return ctx


async def load_credential(box: SecretBox, *, name: str, kind: str, thumbprint: str | None, owner: str) -> Any:
    """The client secret or certificate key stored under `name`, as a token-library credential."""
    try:
        value = await box.get(name)
    except SecretNotFound:
        raise ConfigError(
            f"{owner}: the credential secret '{name}' is not stored; run `ml-connector secrets set {name}`"
        ) from None
    if kind == "certificate":
        return ClientCertificate(private_key_pem=value, thumbprint=thumbprint)
    return ClientSecret(value)


def configured_store(settings: Settings) -> Store:
    """The store [store] names, with its password from store.password_file when set (not opened)."""
    try:
        return open_store(settings.store.url, password_file=settings.store.password_file)
    except ValueError as exc:
        raise ConfigError(f"[store]: {exc}") from None


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    master_key: MasterKey | None = None,
    clock: Callable[[], float] = time.time,
    start_pipeline: bool = True,
) -> web.Application:
    """Build the service. `store` and `master_key` default to the configured ones (tests pass their own)."""
    services = Services(settings=settings, store=store or configured_store(settings))
    app = events_app(
        services.store,
        EventEndpoints([], clock=clock),  # filled in at start, once the tokens are decrypted
        max_body_bytes=settings.server.max_body_bytes,
        clock=clock,
        wake=lambda: services.pipeline.wake() if services.pipeline else None,
    )
    app[SETTINGS] = settings
    app[SERVICES] = services
    outbound_tls = client_ssl_context(settings.cloud.ca_bundle)  # one context for every outbound client

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        await services.store.open()
        yield
        await services.store.close()

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(ssl=outbound_tls, limit=100)
        services.session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        yield
        await services.session.close()

    async def core_ctx(app: web.Application) -> AsyncIterator[None]:
        key = master_key or master_key_from_environment()
        services.secrets = SecretBox(services.store, key)
        install_redaction(services.secrets.known_values)
        services.tokens = TokenProvider(
            authority_host=settings.cloud.endpoint("authority_host"),
            ca_bundle=str(settings.cloud.ca_bundle) if settings.cloud.ca_bundle else None,
        )
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

        env_endpoints = await load_endpoints()
        for env, endpoint in zip(settings.environments, env_endpoints):
            if not endpoint.token:
                log.error("environment %s has no events URL yet: run `ml-connector environments endpoint %s`",
                          env.name, env.name)
        for env in settings.environments:
            credential = await load_credential(
                services.secrets,
                name=env.credential or settings.identity.credential,
                kind=env.credential_type or settings.identity.credential_type,
                thumbprint=env.certificate_thumbprint or settings.identity.certificate_thumbprint,
                owner=f"environment '{env.name}'",
            )
            get_token = services.tokens.token_source(
                env.tenant_id or settings.identity.tenant_id,
                env.client_id or settings.identity.client_id,
                credential,
                fo_scope(env.token_resource),  # not base_url: a proxy's host is not F&O's audience
            )
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
        tenant = teams.tenant_id or settings.identity.tenant_id
        credential = await load_credential(services.secrets, name=teams.credential, kind=teams.credential_type,
                                           thumbprint=teams.certificate_thumbprint, owner="[bot]")
        bot_token = services.tokens.token_source(
            tenant, teams.app_id, credential, settings.cloud.endpoint("bot_oauth_scope").rstrip("/") + "/.default")

        async def install_changed(install: Any) -> None:
            if services.approvals is not None:
                await services.approvals.service.on_install_recorded(install)

        services.installs = InstallRecorder(services.store, clock, on_change=install_changed)
        services.handlers = ConnectorBotHandlers(services.installs)
        ca = str(settings.cloud.ca_bundle) if settings.cloud.ca_bundle else None
        services.bot = BotRuntime(BotSettings(**bot_settings_values(settings, teams)), bot_token,
                                  services.handlers, ca_file=ca)
        services.messages_handler = services.bot.messages_handler()
        if not await services.bot.warm_up():
            log.warning("could not fetch the Bot Framework signing keys yet; inbound calls retry on demand")
        services.poster = TeamsPoster(services.bot)
        if teams.graph:
            graph_url = settings.cloud.endpoint("graph_url")
            graph_token = services.tokens.token_source(
                tenant, teams.app_id, credential, graph_scope(settings.cloud.graph_resource or graph_url))
            assert services.session is not None
            services.graph = GraphClient(services.session, graph_url, graph_token, ssl=outbound_tls)
        if settings.approvals.enabled:
            assert services.catalog is not None
            approval_settings = settings.approvals
            if not approval_settings.teams_app_external_id:
                approval_settings = approval_settings.model_copy(
                    update={"teams_app_external_id": catalog_app_id(teams)})
            services.approvals = Approvals.build(
                store=services.store, settings=approval_settings, poster=services.poster, graph=services.graph,
                catalog=services.catalog,
                environments={n: (e.base_url, e.odata) for n, e in services.environments.items()},
                clock=clock, max_bytes=settings.cards.max_bytes, max_lines=settings.cards.max_lines,
            )
            services.handlers.approvals = services.approvals.service
        yield
        if services.approvals is not None:
            await services.approvals.service.aclose()
        if services.outbox is not None:
            await services.outbox.close()
        await services.bot.close()

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        plans = plans_from_config(settings.enrichment)
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
                routes=routes_from_config(settings.routes),
                graph=services.graph,
                environments={e.name: e.base_url for e in settings.environments},
                clock=clock,
                max_lines=settings.cards.max_lines,
                max_bytes=settings.cards.max_bytes,
            )
            services.outbox = Outbox(services.poster, Pacer(), make_digest_renderer(deps),
                                     digest_after=teams.digest_after, digest_max=teams.digest_max)
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
        )
        pipeline = services.pipeline
        registry.on_renamed = lambda new_id: setattr(pipeline, "name", new_id)
        background: asyncio.Task[None] | None = None
        stop_background = asyncio.Event()
        if services.approvals is not None:
            services.approvals.set_wake(services.pipeline.wake)
        if start_pipeline:
            await services.pipeline.start()
            if services.approvals is not None:
                background = asyncio.create_task(services.approvals.reconciler.run_background(stop_background),
                                                 name="approvals-reconciler")
        yield
        stop_background.set()
        if background is not None:
            await asyncio.gather(background, return_exceptions=True)
        await services.pipeline.stop()
        await registry.stop()  # after the pipeline: releases whatever it left leased

    # Fail fast on configuration the service cannot run with (before any resource is opened).
    services.teams = teams_settings(settings)
    routes_from_config(settings.routes)
    plans_from_config(settings.enrichment)
    try:
        services.catalog = Catalog.load(settings.cards.template_dir)
    except TemplateInvalid as exc:
        raise ConfigError(f"[cards] template_dir: {exc}") from None

    app.cleanup_ctx.extend([store_ctx, session_ctx, core_ctx, teams_ctx, pipeline_ctx])

    async def messages(request: web.Request) -> web.StreamResponse:
        handler = services.messages_handler
        if handler is None:
            return web.json_response({"error": "not_found", "detail": "the Teams bot is not configured"}, status=404)
        return await handler(request)

    app.router.add_post("/api/messages", messages)
    return app


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.logging.format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # msal logs token responses at DEBUG; never let that through
    logging.getLogger("msal").setLevel(logging.WARNING)


def run_service(settings: Settings) -> None:
    """`ml-connector serve`: run until SIGINT/SIGTERM."""
    configure_logging(settings)
    app = create_app(settings)
    ssl_ctx = None
    if settings.server.tls_cert and settings.server.tls_key:
        ssl_ctx = server_ssl_context(settings.server.tls_cert, settings.server.tls_key)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        ssl_context=ssl_ctx,
        print=lambda msg: log.info("listening on %s:%s", settings.server.host, settings.server.port),
        handle_signals=True,
    )
