"""Fakes for the bot/ tests: the channel's signing keys (served from ANOTHER thread: botbuilder fetches them with
blocking requests inside the event loop), a recording Connector, a recording Graph, fake time and tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bot import BotRuntime, BotSettings, BotTrust, TeamsPoster
from bot.retry import RetryPolicy
from connector.tls import TrustAdapter, client_ssl_context
from sandbox.tls import make_ca

APP_ID = "00000000-0000-0000-0000-00000000b07"
TENANT = "11111111-1111-1111-1111-111111111111"
ISSUER = "https://api.botframework.com"


# --- time and tokens ----------------------------------------------------------------------------------------------


class FakeTime:
    """A monotonic clock and a sleep that advances it and records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeToken:
    """`async get_token(*, force_refresh=False)`: "tok-1", then "tok-2" after a forced refresh."""

    def __init__(self, prefix: str = "tok") -> None:
        self.prefix = prefix
        self.version = 1
        self.calls: list[bool] = []

    async def __call__(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        if force_refresh:
            self.version += 1
        return f"{self.prefix}-{self.version}"

    @property
    def current(self) -> str:
        return f"{self.prefix}-{self.version}"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


# --- the channel's signing keys, on a background thread ---------------------------------------------------------


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def _jwk(key: rsa.RSAPrivateKey, kid: str, endorsements: list[str]) -> dict:
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "use": "sig", "kid": kid, "n": _b64(pub.n), "e": _b64(pub.e), "endorsements": endorsements}


class ThreadedServer:
    """An aiohttp app on its own event loop in a daemon thread (so the bot's loop may block on it); https when
    given a server SSLContext."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
        self._app = app
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="fake-channel-keys", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner = web.AppRunner(self._app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("key server did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class ChannelKeys:
    """Published keys: "good" (endorsed for msteams), "webchat" (endorsed for webchat only), "bare" (no
    endorsements). A fourth key is never published (for bad signatures and unknown kids)."""

    good: rsa.RSAPrivateKey
    other: rsa.RSAPrivateKey
    metadata_url: str = ""
    ca_file: str = ""  # the private CA the metadata and keys are served under (the runtime's ca_file)
    fetches: list[str] = field(default_factory=list)

    def jwks(self) -> dict:
        return {"keys": [_jwk(self.good, "good", ["msteams", "webchat"]), _jwk(self.other, "webchat", ["webchat"]),
                         _jwk(self.other, "bare", [])]}

    def token(self, *, service_url: str, audience: str = APP_ID, kid: str = "good", key: Any = None,
              issuer: str = ISSUER, lifetime: int = 3600, age: int = 0, **extra: Any) -> str:
        now = int(time.time()) - age
        claims = {"iss": issuer, "aud": audience, "serviceurl": service_url, "nbf": now - 60, "exp": now + lifetime,
                  **extra}
        return jwt.encode(claims, key or self.good, algorithm="RS256", headers={"kid": kid})


def channel_keys_app(keys: ChannelKeys, scheme: str) -> web.Application:
    """The channel's OpenID metadata and JWKS, as login.botframework.com serves them."""
    app = web.Application()

    async def openid(request: web.Request) -> web.Response:
        keys.fetches.append("openid")
        base = f"{scheme}://127.0.0.1:{request.url.port}"
        return web.json_response({"issuer": ISSUER, "jwks_uri": f"{base}/v1/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def jwks(request: web.Request) -> web.Response:
        keys.fetches.append("keys")
        return web.json_response(keys.jwks())

    app.router.add_get("/v1/.well-known/openidconfiguration", openid)
    app.router.add_get("/v1/keys", jwks)
    return app


@pytest.fixture(scope="session")
def channel_keys(tmp_path_factory):
    # Over https under a private CA, as the real (public) endpoint is https: botbuilder's own fetch must get
    # the runtime's ca_file (plain http here would hide a missing CA).
    ca = make_ca(tmp_path_factory.mktemp("channel-ca"))
    keys = ChannelKeys(good=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                       other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                       ca_file=str(ca.cert_path))
    server = ThreadedServer(channel_keys_app(keys, "https"), ca.server_context()).start()
    keys.metadata_url = f"https://127.0.0.1:{server.port}/v1/.well-known/openidconfiguration"
    yield keys
    server.stop()


# --- a recording Bot Connector --------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeConnector:
    """Records every request; answers scripted replies first (FIFO), else a plausible success.

    Requires `Authorization: Bearer <accepted token>` (401 otherwise), like the real Connector.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Reply] = deque()
        self.accepted_tokens: set[str] | None = None  # None: any bearer token
        self.channels = [{"id": "19:team@thread.tacv2"}, {"id": "19:approvals@thread.tacv2", "name": "Approvals"}]
        self._n = 0
        self.url = ""

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Queue a scripted answer for the next request(s)."""
        for _ in range(times):
            self.script.append(Reply(status, body, dict(headers or {})))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        auth = request.headers.get("Authorization")
        self.requests.append({"method": request.method, "path": request.path, "raw_path": request.raw_path,
                              "auth": auth, "json": body, "headers": dict(request.headers)})
        token = auth[7:] if auth and auth.startswith("Bearer ") else None
        if token is None or (self.accepted_tokens is not None and token not in self.accepted_tokens):
            return web.json_response({"error": {"code": "Unauthorized", "message": "no valid token"}}, status=401)
        if self.script:
            reply = self.script.popleft()
            if isinstance(reply.body, (dict, list)):
                return web.json_response(reply.body, status=reply.status, headers=reply.headers)
            return web.Response(status=reply.status, text=reply.body or "", headers=reply.headers)
        self._n += 1
        path = request.path
        if request.method == "POST" and path == "/v3/conversations":
            channel = ((body or {}).get("channelData") or {}).get("channel", {}).get("id")
            if channel:
                return web.json_response({"id": f"{channel};messageid=m{self._n}", "activityId": f"m{self._n}"},
                                         status=201)
            return web.json_response({"id": f"a:chat{self._n}"}, status=201)
        if request.method == "POST" and "/activities" in path:
            return web.json_response({"id": f"m{self._n}"}, status=201)
        if request.method == "PUT":
            return web.json_response({"id": path.rsplit("/", 1)[-1]}, status=200)
        if request.method == "GET" and path.startswith("/v3/teams/") and path.endswith("/conversations"):
            return web.json_response({"conversations": self.channels})
        return web.json_response({"error": {"code": "NotFound", "message": path}}, status=404)


@pytest.fixture
async def connector(aiohttp_server) -> FakeConnector:
    fake = FakeConnector()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("/"))
    return fake


# --- the bot runtime ------------------------------------------------------------------------------------------------


class RecordingHandlers:
    """BotHandlers that record what they get and answer what a test sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.submit_result: Any = None
        self.execute_result: Any = {"type": "AdaptiveCard", "version": "1.5", "body": []}
        self.fail_with: Exception | None = None
        self.message_result: Any = None  # what on_message answers (text or a card)

    async def _record(self, name: str, value: Any) -> None:
        self.calls.append((name, value))
        if self.fail_with is not None:
            raise self.fail_with

    async def on_install(self, event):
        await self._record("install", event)

    async def on_uninstall(self, event):
        await self._record("uninstall", event)

    async def on_channel_event(self, event):
        await self._record("channel", event)

    async def on_submit(self, submit):
        await self._record("submit", submit)
        return self.submit_result

    async def on_execute(self, execute):
        await self._record("execute", execute)
        return self.execute_result

    async def on_message(self, message):
        await self._record("message", message)
        return self.message_result


@pytest.fixture
def handlers() -> RecordingHandlers:
    return RecordingHandlers()


@pytest.fixture
def token() -> FakeToken:
    return FakeToken()


def trust_for(ca_file: str) -> BotTrust:
    """The service's trust (connector/tls.py): the system's CAs plus `ca_file`, for aiohttp and requests alike."""
    context = client_ssl_context(ca_file)
    return BotTrust(context, partial(TrustAdapter, context))


@pytest.fixture
async def make_runtime(channel_keys, handlers, token):
    made: list[BotRuntime] = []

    def make(get_token: Any = None, ca_file: str | None = None, middlewares: Any = (),
             **overrides: Any) -> BotRuntime:
        values = {"app_id": APP_ID, "tenant_id": TENANT,
                  "to_bot_from_channel_openid_metadata_url": channel_keys.metadata_url, "auth_timeout": 10.0,
                  "connector_timeout": 10.0}
        values.update(overrides)
        runtime = BotRuntime(BotSettings(**values), get_token or token, handlers,
                             trust=trust_for(ca_file if ca_file is not None else channel_keys.ca_file),
                             middlewares=middlewares)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()


@pytest.fixture
def poster(make_runtime, fake_time) -> TeamsPoster:
    return TeamsPoster(make_runtime(), policy=RetryPolicy(max_attempts=4, max_inline_wait=10.0),
                       sleep=fake_time.sleep, clock=fake_time.clock, wall_clock=lambda: 1_800_000_000.0,
                       rng=lambda: 0.0)


@pytest.fixture
async def bot_client(aiohttp_client, make_runtime):
    """A test client for `POST /api/messages` served by a fresh runtime."""
    runtime = make_runtime()
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    client = await aiohttp_client(app)
    client.runtime = runtime
    return client


@pytest.fixture
def make_activity():
    return _activity


def _activity(kind: str, service_url: str, **fields: Any) -> dict:
    """A Teams activity skeleton (channel conversation in a team) with `fields` merged in."""
    base = {
        "type": kind, "id": uuid.uuid4().hex, "channelId": "msteams", "serviceUrl": service_url,
        "from": {"id": "29:user", "name": "Alex Wilber", "aadObjectId": "aad-alex"},
        "recipient": {"id": f"28:{APP_ID}", "name": "ml-connector"},
        "conversation": {"isGroup": True, "conversationType": "channel", "tenantId": TENANT,
                         "id": "19:approvals@thread.tacv2"},
        "channelData": {"team": {"id": "19:team@thread.tacv2", "name": "Finance", "aadGroupId": "group-1"},
                        "channel": {"id": "19:approvals@thread.tacv2", "name": "Approvals"},
                        "tenant": {"id": TENANT}},
    }
    base.update(fields)
    return base
