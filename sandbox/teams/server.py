"""Start the Teams half of the sandbox: the Bot Framework channel + Connector (+ page) and the Graph stand-in.

    running = await start_teams(host="127.0.0.1", ca=ca, verify_token=issuer.verify, bot_endpoint=None,
                                bot_app_id=APP_ID, tenant_id=TENANT_ID, renderer_dir="cards/vendor")
    running.state   # {"teams": {...}, "graph": {...}} for sandbox.json
    await running.close()

botbuilder fetches the channel's OpenID metadata with blocking `requests` inside its event loop: run this in a
different process or thread/loop from the bot (teams.md §1.6). With a CA, the metadata and signing keys are served
over https on a listener of their own (login.botframework.com's part), so a bot that does not trust the CA it was
given for them fails here as it would in production; the channel, Connector and page stay on plain http.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from sandbox.teams import admin, connector
from sandbox.teams.channel import Channel
from sandbox.teams.emit import personal_install
from sandbox.teams.graph import GraphService, graph_app
from sandbox.teams.keys import ChannelKeys
from sandbox.teams.service import TeamsService, VerifyToken
from sandbox.teams.world import World, default_world


@dataclass
class RunningTeams:
    service: TeamsService
    graph: GraphService
    base_url: str
    graph_base_url: str
    _runners: tuple[web.AppRunner, ...]
    _session: aiohttp.ClientSession
    login_base_url: str = ""  # the https OpenID metadata + keys listener ("" = served by base_url)

    @property
    def world(self) -> World:
        return self.service.world

    @property
    def service_url(self) -> str:
        return self.base_url + "/"

    @property
    def state(self) -> dict:
        """The "teams" and "graph" entries of sandbox.json."""
        return {
            "teams": {"base_url": self.base_url, "service_url": self.service_url,
                      "openid_metadata_url":
                          f"{self.login_base_url or self.base_url}/v1/.well-known/openidconfiguration",
                      "token_issuer": "https://api.botframework.com",
                      "bot_app_id": self.world.bot_app_id, "admin_url": f"{self.base_url}/_sandbox/teams",
                      "page_url": f"{self.base_url}/"},
            "graph": {"base_url": self.graph_base_url, "graph_url": f"{self.graph_base_url}/v1.0",
                      "resource": self.graph.resource, "scope": self.graph.resource.rstrip("/") + "/.default",
                      "admin_url": f"{self.graph_base_url}/_sandbox/graph",
                      "teams_app_id": self.graph.teams_app_id,
                      "teams_app_external_id": self.graph.teams_app_external_id},
        }

    def set_bot_endpoint(self, url: str | None) -> None:
        """The bot's messaging endpoint, once it listens (e.g. http://127.0.0.1:P/api/messages)."""
        self.service.channel.bot_endpoint = url

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        await self._session.close()


def teams_app(service: TeamsService) -> web.Application:
    app = web.Application(middlewares=[connector.connector_middleware], client_max_size=8 * 1024 * 1024)
    app[connector.SERVICE] = service
    connector.add_routes(app)
    admin.add_routes(app)
    return app


def login_app(service: TeamsService) -> web.Application:
    """The channel's OpenID metadata and signing keys, as login.botframework.com serves them (its own host)."""
    app = web.Application()

    async def openid(request: web.Request) -> web.Response:
        return web.json_response(ChannelKeys.openid_configuration(f"{request.scheme}://{request.host}"))

    async def keys(request: web.Request) -> web.Response:
        return web.json_response(service.channel.keys.jwks())

    app.router.add_get("/v1/.well-known/openidconfiguration", openid)
    app.router.add_get("/v1/keys", keys)
    return app


async def _listen(app: web.Application, host: str, port: int, ssl_context) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def start_teams(*, host: str = "127.0.0.1", ca=None, verify_token: VerifyToken, bot_endpoint: str | None,
                      bot_app_id: str, tenant_id: str, renderer_dir: str | Path | None = None,
                      bot_name: str = "ML Connector", teams_app_external_id: str | None = None,
                      graph_resource: str = "https://graph.microsoft.com", teams_port: int = 0, graph_port: int = 0,
                      teams_https: bool = False, graph_https: bool | None = None, keys: ChannelKeys | None = None,
                      world: World | None = None, preinstalled: bool | list[str] = False,
                      clock: Callable[[], float] = time.monotonic) -> RunningTeams:
    """Start the channel/Connector/page (http unless teams_https), Graph (https when `ca` is given) and, when `ca`
    is given, the channel's OpenID metadata + keys on their own https listener (state's openid_metadata_url).

    Args:
        ca: sandbox.tls.SandboxCA; serves https and trusts it for an https bot endpoint.
        verify_token: `(token, audience) -> claims` (sync or async), e.g. EntraIssuer.verify.
        bot_endpoint: the bot's messaging endpoint; may be set later (set_bot_endpoint / POST .../knobs).
        renderer_dir: folder holding adaptivecards.min.js etc. (the demo passes cards/vendor); None → JSON view.
        teams_app_external_id: the Teams app manifest id in the Graph app catalog (default: bot_app_id).
        preinstalled: True (all teams) or team names: the app counts as installed there, no events sent.
        clock: drives rate-limit windows and log times (tests pass a fake).
    """
    world = world or default_world(bot_app_id, tenant_id, bot_name)
    for team in world.teams.values():
        if preinstalled is True or (isinstance(preinstalled, list) and team.name in preinstalled):
            team.installed = True
    ssl_server = ca.server_context() if ca is not None else None
    session = aiohttp.ClientSession()
    channel = Channel(keys or ChannelKeys(), session, bot_app_id, "", bot_endpoint, clock,
                      ssl=ca.client_context() if ca is not None else None)
    service = TeamsService(world, channel, verify_token, clock, renderer_dir=renderer_dir)
    graph = GraphService(world, verify_token, graph_resource, teams_app_external_id or bot_app_id, bot_name,
                         clock=clock)

    async def _installed(person, remove: bool):
        return await personal_install(service, person, remove=remove)
    graph.on_personal_install = _installed

    runners: list[web.AppRunner] = []
    try:
        use_https = teams_https and ssl_server is not None
        runner, port = await _listen(teams_app(service), host, teams_port, ssl_server if use_https else None)
        runners.append(runner)
        service.base_url = f"{'https' if use_https else 'http'}://{host}:{port}"
        channel.service_url = service.base_url + "/"
        g_https = (ca is not None) if graph_https is None else (graph_https and ssl_server is not None)
        runner, gport = await _listen(graph_app(graph), host, graph_port, ssl_server if g_https else None)
        runners.append(runner)
        graph.base_url = f"{'https' if g_https else 'http'}://{host}:{gport}"
        login_base = ""
        if ssl_server is not None:
            runner, lport = await _listen(login_app(service), host, 0, ssl_server)
            runners.append(runner)
            login_base = f"https://{host}:{lport}"
    except BaseException:
        for r in runners:
            await r.cleanup()
        await session.close()
        raise
    return RunningTeams(service, graph, service.base_url, graph.base_url, tuple(runners), session, login_base)
