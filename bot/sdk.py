"""The one module that imports botbuilder: inbound auth, the activity handler, and raw Connector calls.

Moving to the Microsoft 365 Agents SDK is a change of this file only; nothing else in bot/ (or outside it) sees a
botbuilder, botframework or msrest type. What it does about botbuilder 4.17.1's quirks (bot-sdk.md):

- Outbound (proactive) calls do NOT go through botbuilder: its CloudAdapter builds a new msrest ConnectorClient
  and UserTokenClient per call (each an msrest Configuration, ~6-7 ms of CPU) and serializes the activity with
  msrest (~12 ms for a card), all on the event loop. `BotRuntime` makes the documented Bot Connector REST calls
  itself on one aiohttp session (created on first use, closed by `close()`, private CA and connector timeout
  honoured), with the same URLs, headers and JSON bodies botbuilder sent (its key order, mention entities as
  its Mention model, ASCII-escaped JSON). Each call awaits OUR token callable once; a 401 from the Connector
  makes the poster call `refresh_token()` (force_refresh) and retry once.
- Token for in-turn replies: botbuilder's credentials would run MSAL (sync, https-only, calls
  login.microsoftonline.com for instance discovery). Our `ServiceClientCredentialsFactory` instead awaits OUR
  token callable in its async `create_credentials` (once per turn's Connector client) and hands botbuilder a
  credentials object whose sync `get_access_token()` just returns that token. No MSAL, no blocking.
- Inbound auth: botbuilder answers 500 for a missing header, an expired token, an unknown key, a bad signature or
  a key not endorsed for msteams. `make_messages_handler` checks the header first and maps every failure of
  `authenticate_request` to 401 (JSON, from us), before the turn runs. botbuilder also ACCEPTS a key whose
  `endorsements` list is empty; we require the activity's channel in it, as the .NET SDK does.
- OpenID metadata: botbuilder fetches it with blocking `requests` (no timeout) inside the coroutine. We run the
  whole `authenticate_request` on a small dedicated thread pool, each call in its own short-lived event loop,
  bounded by `BotSettings.auth_timeout` (503 when the keys cannot be fetched). The bot's loop never stalls, and a
  hung fetch cannot starve the default executor that msrest uses for Connector calls. `warm_up()` prefetches.
- TLS: one trust for every connection the bot makes, given by the caller as a `BotTrust` (an SSLContext for aiohttp
  and a factory of requests transports carrying the same trust; connector/tls.py builds both). botbuilder's
  OpenID/JWKS fetch calls `requests.get` with no CA argument from a per-URL cache
  (`JwtTokenExtractor.metadataCache`); we put our own entry in that cache for the configured metadata URL, whose
  fetch uses the runtime's requests session (the caller's transport, with the auth timeout). Which runtime is
  asking travels in a contextvar set around each validation, so two runtimes with different trust never share
  keys; callers outside a runtime get botbuilder's behaviour. No environment variable and no module-wide patch.
- In-turn Connector calls (botbuilder's) go through msrest + requests in the default executor (not on the loop).
  We set their timeout (botbuilder: 100 s), the caller's TLS transport, and switch off msrest's hidden urllib3
  retries (408/5xx x3, sleeping out a 503's Retry-After in the thread however long it is).
- `TeamsInfo.get_team_channels` is sync I/O on the loop: we make the same call in a worker thread.
- Action.Execute: botbuilder serializes `on_adaptive_card_invoke`'s answer twice (500). We answer
  `adaptiveCard/action` ourselves in `on_invoke_activity` and write the HTTP response ourselves.
- The turn error handler logs; it never posts exception text to Teams.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import platform
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import jwt
import requests
from requests.adapters import HTTPAdapter
from aiohttp import web
from botbuilder.core import ActivityHandler, BotAdapter, InvokeResponse, TurnContext, serializer_helper
from botbuilder.core.bot_framework_adapter import USER_AGENT as _BOTBUILDER_USER_AGENT
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    ChannelAccount,
    Entity,
    Mention,
)
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    JwtTokenExtractor,
    ServiceClientCredentialsFactory,
)
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from botframework.connector.auth.skill_validation import SkillValidation
from botframework.connector.teams import TeamsConnectorClient
from msrest.version import msrest_version as _msrest_version
from yarl import URL

from bot import activities
from bot.errors import BotAuthError
from bot.models import BotHandlers, BotSettings

__all__ = ["BotRuntime", "BotTrust", "ConnectorFailure", "GetToken", "make_messages_handler"]

log = logging.getLogger(__name__)

GetToken = Callable[..., Awaitable[str]]  # async get_token(*, force_refresh: bool = False) -> str

_CHANNEL = "msteams"


# --- TLS: the caller's trust, for aiohttp, msrest and the OpenID fetch -------------------------------------------


@dataclass(frozen=True, slots=True)
class BotTrust:
    """How every connection the bot makes verifies the server, as one trust given by the caller.

    `context` serves the aiohttp session of the Connector calls; `https_adapter()` makes the requests transport of
    botbuilder's own requests (in-turn replies through msrest, the OpenID metadata and signing keys). The caller
    builds both from one trust (connector/tls.py: the system's CAs plus `[cloud] ca_bundle`), so the bot needs no
    TLS code of its own and cannot disagree with the rest of the service about which CAs it trusts.
    """

    context: ssl.SSLContext
    https_adapter: Callable[[], HTTPAdapter]

    def session(self) -> requests.Session:
        """A requests session whose https:// connections use this trust."""
        session = requests.Session()
        session.mount("https://", self.https_adapter())
        return session


# Which runtime's session fetches the OpenID metadata: set around each validation (see _OpenIdMetadataByTrust).
_OPENID_HTTP: contextvars.ContextVar[tuple[requests.Session, float] | None] = contextvars.ContextVar(
    "bot_openid_http", default=None)


class _SessionOpenIdMetadata(_OpenIdMetadata):
    """botbuilder's metadata cache for one URL, fetched with our session (its trust) and a timeout."""

    def __init__(self, url: str, session: requests.Session, timeout: float) -> None:
        super().__init__(url)
        self._session = session
        self._timeout = timeout

    async def _refresh(self) -> None:  # botbuilder's _refresh, with our session instead of requests.get
        response = self._session.get(self.url, timeout=self._timeout)
        response.raise_for_status()
        keys_url = response.json()["jwks_uri"]
        response_keys = self._session.get(keys_url, timeout=self._timeout)
        response_keys.raise_for_status()
        self.last_updated = datetime.now()
        self.keys = response_keys.json()["keys"]


class _OpenIdMetadataByTrust(_OpenIdMetadata):
    """Our entry in botbuilder's per-URL metadata cache: one key cache per runtime session (per trust)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._by_session: weakref.WeakKeyDictionary[requests.Session, _SessionOpenIdMetadata] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    async def get(self, key_id: str) -> Any:
        current = _OPENID_HTTP.get()
        if current is None:
            return await super().get(key_id)  # not one of our runtimes: botbuilder's own fetch
        session, timeout = current
        with self._lock:
            metadata = self._by_session.get(session)
            if metadata is None:
                metadata = self._by_session[session] = _SessionOpenIdMetadata(self.url, session, timeout)
        return await metadata.get(key_id)


def _use_our_openid_fetch(url: str) -> None:
    """Make botbuilder's metadata lookups for `url` go through _OpenIdMetadataByTrust (idempotent)."""
    cache = JwtTokenExtractor.metadataCache
    if not isinstance(cache.get(url), _OpenIdMetadataByTrust):
        cache[url] = _OpenIdMetadataByTrust(url)


# --- outbound token -------------------------------------------------------------------------------------------


class _NoToken(Exception):
    """Our token callable failed when the Connector client was made; raised when a request needs the token."""


class _TokenCredentials(AppCredentials):
    """msrest credentials holding a token we already fetched (botbuilder's get_access_token is sync)."""

    def __init__(self, app_id: str, oauth_scope: str, token: str | None, error: str | None) -> None:
        super().__init__(app_id=app_id, oauth_scope=oauth_scope)
        self._token = token
        self._error = error

    def get_access_token(self, force_refresh: bool = False) -> str:
        if self._token is None:
            raise _NoToken(self._error or "no token")
        return self._token


class _CallableCredentialsFactory(ServiceClientCredentialsFactory):
    """Credentials from our async token callable instead of botbuilder's MSAL (any app type, any cloud)."""

    def __init__(self, app_id: str, get_token: GetToken) -> None:
        self._app_id = app_id
        self._get_token = get_token

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str,
                                 validate_authority: bool) -> AppCredentials:
        if app_id != self._app_id:
            # e.g. continue_conversation without bot_app_id: refuse rather than send anonymous requests
            raise ValueError(f"Connector credentials asked for app id {app_id!r}; this bot is {self._app_id!r}")
        try:
            token = await self._get_token()
        except Exception as exc:  # noqa: BLE001 - the provider's failure must not fail inbound turns that never post
            log.warning("no Connector token (outbound calls of this turn will fail): %s", exc)
            return _TokenCredentials(app_id, oauth_scope, None, f"{type(exc).__name__}: {exc}")
        return _TokenCredentials(app_id, oauth_scope, token, None)


# --- connector clients: timeout and CA -------------------------------------------------------------------------


def _tune(config: Any, timeout: float, trust: BotTrust) -> None:
    """Timeout, TLS trust, and no hidden retries: msrest's default urllib3 policy retries 408/5xx three times and
    sleeps out any Retry-After on 503 inside the worker thread, unbounded; our policy (posting.py) is the only one.
    msrest makes its requests sessions itself (one per thread); its per-request configuration callback mounts our
    TLS adapter on each (the adapter has no retries either)."""
    config.connection.timeout = timeout
    config.connection.verify = True

    def with_our_tls(session: requests.Session, global_config: Any, local_config: Any, **kwargs: Any
                     ) -> dict[str, Any]:
        if session.__dict__.get("_bot_trust") is not trust:  # msrest reuses its per-thread sessions: mount once
            session.mount("https://", trust.https_adapter())
            session.__dict__["_bot_trust"] = trust
        return kwargs

    config.session_configuration_callback = with_our_tls
    retry = config.retry_policy.policy
    retry.total = retry.connect = retry.read = 0
    retry.status_forcelist = frozenset()


class _TunedConnectorFactory(ConnectorFactory):
    def __init__(self, inner: ConnectorFactory, timeout: float, trust: BotTrust) -> None:
        self._inner = inner
        self._timeout = timeout
        self._trust = trust

    async def create(self, service_url: str, audience: str | None = None):  # botbuilder's signature
        client = await self._inner.create(service_url, audience)
        _tune(client.config, self._timeout, self._trust)
        return client


# --- inbound authentication -------------------------------------------------------------------------------------


class _AuthUnavailable(Exception):
    """We could not check a token (signing keys unreachable or slow): answer 503, not 401."""


def _run_in_new_loop(http: tuple[requests.Session, float],
                     factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    token = _OPENID_HTTP.set(http)  # asyncio.run's task copies this context: botbuilder's fetch sees our session
    try:
        return asyncio.run(factory())
    finally:
        _OPENID_HTTP.reset(token)


class _GuardedAuthentication(BotFrameworkAuthentication):
    """botbuilder's authentication, run off the event loop, with every failure turned into BotAuthError."""

    def __init__(self, inner: BotFrameworkAuthentication, settings: BotSettings, trust: BotTrust,
                 executor: concurrent.futures.Executor) -> None:
        self._inner = inner
        self._settings = settings
        self._trust = trust
        self._executor = executor
        self._openid_http = trust.session()  # used from the auth threads only
        _use_our_openid_fetch(settings.to_bot_from_channel_openid_metadata_url)

    def _precheck(self, auth_header: str | None) -> str:
        """Cheap checks before any key is fetched. Returns the token's key id."""
        if not auth_header:
            raise BotAuthError("no Authorization header")
        scheme, _, token = auth_header.partition(" ")
        if scheme != "Bearer" or not token or token.count(".") != 2:
            raise BotAuthError("Authorization header is not 'Bearer <jwt>'")
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise BotAuthError(f"unreadable token: {exc}") from None
        if not isinstance(kid, str) or not kid:
            raise BotAuthError("token has no key id")
        # Only channel tokens: an emulator or skill token would send botbuilder to other metadata URLs.
        if claims.get("iss") != self._settings.to_bot_from_channel_token_issuer:
            raise BotAuthError(f"token issuer {claims.get('iss')!r} is not the channel's")
        if SkillValidation.is_skill_claim(claims):
            raise BotAuthError("skill tokens are not accepted")
        return kid

    async def _check_endorsement(self, kid: str, channel_id: str | None) -> None:
        """The signing key must be endorsed for the activity's channel. botbuilder 4.17.1 skips this check when
        the key's `endorsements` list is empty; the .NET SDK (and we) refuse such a key."""
        metadata = JwtTokenExtractor.get_open_id_metadata(self._settings.to_bot_from_channel_openid_metadata_url)
        key = await metadata.get(kid)  # cached: botbuilder fetched it a moment ago
        endorsements = getattr(key, "endorsements", None) or []
        if not channel_id or channel_id not in endorsements:
            raise PermissionError(f"signing key {kid!r} is not endorsed for channel {channel_id!r}")

    async def _off_loop(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, _run_in_new_loop,
                                      (self._openid_http, self._settings.auth_timeout), factory)
        try:
            return await asyncio.wait_for(future, self._settings.auth_timeout)
        except asyncio.TimeoutError:
            raise _AuthUnavailable(f"token validation took over {self._settings.auth_timeout:g} s "
                                   "(OpenID metadata unreachable?)") from None

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        kid = self._precheck(auth_header)

        async def validate() -> AuthenticateRequestResult:
            checked = await self._inner.authenticate_request(activity, auth_header)
            await self._check_endorsement(kid, activity.channel_id)
            return checked

        try:
            result = await self._off_loop(validate)
        except (BotAuthError, _AuthUnavailable):
            raise
        except PermissionError as exc:  # wrong aud / iss / serviceurl
            raise BotAuthError(str(exc) or "not authorized") from None
        except OSError as exc:  # requests' errors while fetching the OpenID metadata or the keys
            raise _AuthUnavailable(f"could not fetch the channel's signing keys: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - jwt errors, IndexError (unknown kid), endorsement Exception...
            raise BotAuthError(f"{type(exc).__name__}: {exc}") from None
        if result.connector_factory is not None:
            result.connector_factory = _TunedConnectorFactory(
                result.connector_factory, self._settings.connector_timeout, self._trust)
        return result

    @property
    def settings(self) -> BotSettings:
        return self._settings

    def close(self) -> None:
        """Close the OpenID session's pooled connections (a fetch still running finishes on its own)."""
        self._openid_http.close()

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str):
        raise PermissionError("streaming connections are not supported")

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return _TunedConnectorFactory(self._inner.create_connector_factory(claims_identity),
                                      self._settings.connector_timeout, self._trust)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity):
        return await self._inner.create_user_token_client(claims_identity)

    def create_bot_framework_client(self):
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        self._precheck(auth_header)
        return await self._off_loop(lambda: self._inner.authenticate_channel_request(auth_header))

    async def warm_up(self) -> bool:
        """Fetch the OpenID metadata and keys once, off the loop, so the first activity does not pay for it."""
        metadata = JwtTokenExtractor.get_open_id_metadata(self._settings.to_bot_from_channel_openid_metadata_url)

        async def fetch() -> bool:
            try:
                await metadata.get("")  # refreshes when stale; a key id that matches nothing
            except IndexError:
                pass
            return True

        try:
            return await self._off_loop(fetch)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.warning("could not prefetch the channel's OpenID metadata: %s", exc)
            return False


def _config_object(settings: BotSettings) -> Any:
    """botbuilder reads configuration as UPPER_SNAKE attributes of an object."""

    class _Config:
        APP_ID = settings.app_id
        APP_TYPE = settings.app_type
        APP_TENANTID = settings.tenant_id
        VALIDATE_AUTHORITY = settings.validate_authority
        TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = settings.to_bot_from_channel_token_issuer
        TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = settings.to_bot_from_channel_openid_metadata_url
        TO_CHANNEL_FROM_BOT_LOGIN_URL = settings.to_channel_from_bot_login_url
        TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = settings.to_channel_from_bot_oauth_scope

    if settings.channel_service:
        setattr(_Config, "CHANNEL_SERVICE", settings.channel_service)  # noqa: B010 (set only when configured)
    if settings.oauth_url:
        setattr(_Config, "OAUTH_URL", settings.oauth_url)  # noqa: B010
    return _Config()


# --- the activity handler -----------------------------------------------------------------------------------------


@dataclass
class _Inbound:
    """The raw JSON of the activity being processed, and whether its turn failed (per request, via contextvar)."""

    raw: dict
    failed: bool = False


_INBOUND: contextvars.ContextVar[_Inbound | None] = contextvars.ContextVar("bot_inbound", default=None)


def _to_activity(wire: Mapping[str, Any]) -> Activity:
    """Our message JSON -> botbuilder Activity (mention entities need the Mention model to keep their fields)."""
    body = dict(wire)
    entities = body.pop("entities", None) or []
    activity = Activity().deserialize(body)
    if entities:
        activity.entities = [
            Mention(mentioned=ChannelAccount(id=e.get("mentioned", {}).get("id"),
                                             name=e.get("mentioned", {}).get("name")),
                    text=e.get("text"), type="mention")
            if e.get("type") == "mention" else Entity(type=e.get("type"))
            for e in entities
        ]
    return activity


class _TeamsBot(ActivityHandler):
    """Translates activities into our models and calls the handlers; answers Action.Execute itself."""

    def __init__(self, handlers: BotHandlers, *, timeout: float, trust: BotTrust) -> None:
        self._handlers = handlers
        self._timeout = timeout
        self._trust = trust

    @staticmethod
    def _raw(turn_context: TurnContext) -> dict:
        inbound = _INBOUND.get()
        if inbound is not None and inbound.raw.get("id") == turn_context.activity.id:
            return inbound.raw
        return turn_context.activity.serialize()

    @staticmethod
    async def _best_effort(call: Awaitable[Any], what: str) -> None:
        """The activity is already handled (and recorded) by our handler; a throttled or failed in-turn answer
        (the Connector's 404 for a conversation that is gone included) must not turn the whole turn into a 500 for
        Teams. Durable card updates come from the caller's jobs."""
        try:
            await call
        except Exception as exc:  # botbuilder raises ErrorResponseException and friends
            log.warning("could not %s in the turn (%s%s)", what, type(exc).__name__, _status_note(exc))

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        raw = self._raw(turn_context)
        submit = activities.card_submit(raw)
        if submit is not None:
            result = await self._handlers.on_submit(submit)
            if isinstance(result, dict):
                if not submit.reply_to_id:
                    log.warning("Action.Submit %s has no replyToId: the card cannot be updated", submit.activity_id)
                    return
                update = _to_activity(activities.card_message(result))
                update.id = submit.reply_to_id
                await self._best_effort(turn_context.update_activity(update), "update the pressed card")
            elif isinstance(result, str) and result:
                await self._best_effort(turn_context.send_activity(result), "reply to the press")
            return
        on_message = getattr(self._handlers, "on_message", None)
        message = activities.incoming_message(raw)
        if on_message is None or message is None:
            return
        result = await on_message(message)
        # Like every in-turn answer: a Connector failure (404 conversation not found, 403, 429, 5xx) is logged,
        # and the channel still gets its 2xx for the activity (a 500 would only make it redeliver).
        if isinstance(result, dict):
            await self._best_effort(turn_context.send_activity(_to_activity(activities.card_message(result))),
                                    "reply to the message")
        elif isinstance(result, str) and result:
            await self._best_effort(turn_context.send_activity(result), "reply to the message")

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        await self._install(turn_context)

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        raw = self._raw(turn_context)
        if await self._install(turn_context):
            return
        event = activities.channel_event(raw)
        if event is not None:
            await self._handlers.on_channel_event(event)

    async def _install(self, turn_context: TurnContext) -> bool:
        raw = self._raw(turn_context)
        event = activities.install_event(raw)
        if event is None:
            return False
        if event.action == "remove":
            await self._handlers.on_uninstall(event)
            return True
        if event.scope == "team" and event.team_id:
            channels = await self._team_channels(turn_context, event.team_id)
            if channels:
                event = activities.install_event(raw, channels) or event
        await self._handlers.on_install(event)
        return True

    async def _team_channels(self, turn_context: TurnContext, team_id: str) -> dict[str, str]:
        """TeamsInfo.get_team_channels, off the loop (botbuilder makes it a sync requests call). Best effort."""
        try:
            connector = turn_context.turn_state[BotAdapter.BOT_CONNECTOR_CLIENT_KEY]
            teams = TeamsConnectorClient(connector.config.credentials, turn_context.activity.service_url)
            # short: Teams waits for our answer to the install activity while we list the channels
            _tune(teams.config, min(self._timeout, 5.0), self._trust)
            listing = await asyncio.to_thread(teams.teams.get_teams_channels, team_id)
            # The General channel has no name on the wire; its id is the team's id.
            return {c.id: c.name or ("General" if c.id == team_id else "") for c in listing.conversations or []}
        except Exception as exc:  # noqa: BLE001 - best effort: the install is recorded without the channel list
            log.warning("could not list the channels of team %s: %s", team_id, exc)
            return {}

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name != "adaptiveCard/action":
            return await super().on_invoke_activity(turn_context)
        try:
            execute = activities.card_execute(self._raw(turn_context))
        except ValueError as exc:
            return InvokeResponse(status=400, body=activities.invoke_error(400, "NotSupported", str(exc)))
        result = await self._handlers.on_execute(execute)
        return InvokeResponse(status=200, body=activities.invoke_body(result))


def _status_note(exc: BaseException) -> str:
    """`, HTTP 404` for msrest's ErrorResponseException (its response carries the status), else ''."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f", HTTP {status}" if isinstance(status, int) else ""


async def _on_turn_error(turn_context: TurnContext, error: Exception) -> None:
    """Log with the traceback; never show the exception's text in Teams."""
    activity = turn_context.activity
    log.error("bot turn failed: %s %s (activity %s)", activity.type, activity.name or "", activity.id,
              exc_info=(type(error), error, error.__traceback__))
    inbound = _INBOUND.get()
    if inbound is not None:
        inbound.failed = True
    if activity.type == ActivityTypes.invoke and not turn_context.turn_state.get(BotAdapter._INVOKE_RESPONSE_KEY):
        body = activities.invoke_error(500, "InternalError", "The action could not be completed. Try again later.")
        await turn_context.send_activity(
            Activity(type=ActivityTypes.invoke_response, value=InvokeResponse(status=200, body=body)))


# --- the messages endpoint ----------------------------------------------------------------------------------------


def _json_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _invoke_http_response(invoke: InvokeResponse) -> web.Response:
    body = invoke.body
    if body is None:
        return web.Response(status=invoke.status or 200)
    if not isinstance(body, (dict, list, str, int, float, bool)):
        body = serializer_helper(body)
    return web.json_response(body, status=invoke.status or 200)


def _foreign_tenant(settings: BotSettings, body: Mapping[str, Any]) -> web.Response | None:
    """403 for an activity from a tenant the bot does not serve (checked after the token, before any handler:
    an install there is never recorded, a card press there never decides). None when the tenant is ours."""
    allowed = settings.tenants
    if not allowed:
        return None
    tenant = activities.tenant_of(body)
    if tenant is not None and tenant.lower() in allowed:
        return None
    log.warning("refused inbound %s activity %s: tenant %s is not one this bot serves", body.get("type"),
                body.get("id"), tenant or "(none named)")
    detail = (f"this bot does not serve tenant '{tenant}'" if tenant
              else "the activity names no tenant (channelData.tenant.id)")
    return web.json_response({"error": "tenant_not_allowed", "detail": detail}, status=403)


def make_messages_handler(adapter: CloudAdapter, bot: ActivityHandler
                          ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for `POST /api/messages`.

    Answers 401 (JSON) for any token problem before the turn runs, 503 when the signing keys cannot be fetched,
    403 (JSON) for an activity from a tenant the bot does not serve, 400/415 for a body that is not an activity,
    the invoke response for invokes, 500 (no detail) when the turn failed, else 201.
    """
    auth = adapter.bot_framework_authentication
    if not isinstance(auth, _GuardedAuthentication):
        raise TypeError("make_messages_handler needs the adapter built by BotRuntime")

    async def messages(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _json_error(405, "method_not_allowed")
        header = request.headers.get("Authorization", "")
        if not header.strip():
            log.warning("refused inbound activity: no Authorization header")
            return _json_error(401, "unauthorized")
        if request.content_type != "application/json":
            return _json_error(415, "unsupported_media_type")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _json_error(400, "bad_request")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not body["type"]:
            return _json_error(400, "bad_request")
        try:
            activity = Activity().deserialize(body)
        except Exception:  # noqa: BLE001 - msrest DeserializationError and friends
            return _json_error(400, "bad_request")
        try:
            result = await auth.authenticate_request(activity, header)
        except BotAuthError as exc:
            log.warning("refused inbound activity %s: %s", body.get("id"), exc.reason)
            return _json_error(401, "unauthorized")
        except _AuthUnavailable as exc:
            log.error("could not check inbound activity %s: %s", body.get("id"), exc)
            return _json_error(503, "unavailable")
        refused = _foreign_tenant(auth.settings, body)
        if refused is not None:
            return refused
        inbound = _Inbound(raw=body)
        token = _INBOUND.set(inbound)
        try:
            invoke = await adapter.process_activity(result, activity, bot.on_turn)
        except Exception:  # noqa: BLE001 - errors becomes a response here, with no internals
            log.exception("inbound activity %s failed outside the turn", body.get("id"))
            return _json_error(500, "internal")
        finally:
            _INBOUND.reset(token)
        if invoke is not None:
            return _invoke_http_response(invoke)
        if inbound.failed:
            return _json_error(500, "internal")
        return web.Response(status=201)

    return messages


# --- raw Connector calls (posting.py adds the retry policy and the error tree) -----------------------------------


class ConnectorFailure(Exception):
    """A Connector call that failed, as plain values (posting.py classifies it).

    Args:
        status: HTTP status, or None when no answer came (network, timeout, no token).
        target: "METHOD /v3/..." for messages.
        headers: response headers (Retry-After lives here).
        body: response body text (Teams' error JSON).
    """

    def __init__(self, status: int | None, target: str, *, headers: Mapping[str, str] | None = None,
                 body: str = "", message: str = "") -> None:
        self.status = status
        self.target = target
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))
        self.body = body
        self.message = message
        super().__init__(f"{target}: {status if status is not None else message}")


# What botbuilder's ConnectorClient sends, so the Connector sees the same requests as before.
_USER_AGENT = (f"python/{platform.python_version()} ({platform.platform()}) msrest/{_msrest_version} "
               f"botframework-connector/v3 {_BOTBUILDER_USER_AGENT}")
_REQUEST_HEADERS = MappingProxyType({"Accept": "application/json", "Content-Type": "application/json; charset=utf-8",
                                     "User-Agent": _USER_AGENT})
_SUCCESS = frozenset({200, 201, 202})  # what botframework-connector's generated operations accept
# Activity fields in msrest's order (Activity._attribute_map); fields it does not know are dropped, as msrest does.
_ACTIVITY_KEYS = tuple(spec["key"] for spec in Activity._attribute_map.values())  # noqa: SLF001


def _entity_json(entity: Any) -> dict[str, Any]:
    """One entity as botbuilder serialized it from _to_activity: a Mention (mentioned id/name, text) or a type."""
    if not isinstance(entity, Mapping):
        return {}
    if entity.get("type") != "mention":
        return {"type": entity["type"]} if entity.get("type") is not None else {}
    mentioned = entity.get("mentioned")
    mentioned = mentioned if isinstance(mentioned, Mapping) else {}
    out: dict[str, Any] = {"mentioned": {k: mentioned[k] for k in ("id", "name") if mentioned.get(k) is not None}}
    if entity.get("text") is not None:
        out["text"] = entity["text"]
    out["type"] = "mention"
    return out


def _activity_json(wire: Mapping[str, Any], address: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our message JSON -> the activity JSON botbuilder put on the wire (`address`: fields the conversation
    reference sets on a proactive message: serviceUrl, channelId, from, conversation, and the id of an update)."""
    merged = {**wire, **address} if address else wire
    out: dict[str, Any] = {}
    for key in _ACTIVITY_KEYS:
        value = merged.get(key)
        if value is None:
            continue
        if key == "entities":
            value = [_entity_json(e) for e in value] if value else None
            if not value:
                continue
        out[key] = value
    return out


def _http_failure(status: int, target: str, headers: Mapping[str, str], text: str) -> ConnectorFailure:
    """A non-2xx answer; the message is msrest's ErrorResponseException text ("(code) message")."""
    message = "Unknown error"
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = f"({data['error'].get('code')}) {data['error'].get('message')}"
    return ConnectorFailure(status, target, headers={k.lower(): v for k, v in headers.items()}, body=text,
                            message=message)


class BotRuntime:
    """The bot: adapter + activity handler wired to our handlers and token callable, and raw Connector calls.

    Outbound (proactive) Connector calls do not go through botbuilder: each would build a new msrest
    ConnectorClient and UserTokenClient and serialize the activity through msrest, ~25 ms of event-loop CPU per
    post. They are plain Bot Connector REST calls (same URLs, headers and JSON bodies as botbuilder's) on one
    aiohttp session owned by the runtime (created on first use, closed by `close()`).

    Args:
        settings: plain values from our config.
        get_token: `async get_token(*, force_refresh=False) -> str` for the Connector scope (connector/tokens.py).
        handlers: what inbound activities are translated into (see BotHandlers).
        trust: how every connection the bot makes verifies the server (Connector calls, in-turn replies, the
            OpenID metadata and signing keys): the service's one trust (see BotTrust).
        middlewares: aiohttp client middlewares for the outbound Connector session (the service's request ids,
            metrics and failure logs: connector/ops/outbound.py).
    """

    def __init__(self, settings: BotSettings, get_token: GetToken, handlers: BotHandlers, *,
                 trust: BotTrust, middlewares: Sequence[aiohttp.ClientMiddlewareType] = ()) -> None:
        self.settings = settings
        self._middlewares = tuple(middlewares)  # the caller's request ids, metrics and failure logs
        self._get_token = get_token
        self._trust = trust  # one trust, shared by aiohttp, msrest and the OpenID fetch
        self._http: aiohttp.ClientSession | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="bot-auth")
        factory = _CallableCredentialsFactory(settings.app_id, get_token)
        inner = ConfigurationBotFrameworkAuthentication(_config_object(settings), credentials_factory=factory)
        self._auth = _GuardedAuthentication(inner, settings, trust, self._executor)
        self.adapter = CloudAdapter(self._auth)
        self.adapter.on_turn_error = _on_turn_error
        self.bot = _TeamsBot(handlers, timeout=settings.connector_timeout, trust=trust)

    def messages_handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler for `POST /api/messages`."""
        return make_messages_handler(self.adapter, self.bot)

    async def warm_up(self) -> bool:
        """Prefetch the channel's OpenID metadata and signing keys (off the loop). False if it failed."""
        return await self._auth.warm_up()

    async def close(self) -> None:
        """Close the Connector HTTP session; release the authentication threads (a hung metadata fetch is
        abandoned, not awaited)."""
        http, self._http = self._http, None
        if http is not None:
            await http.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._auth.close()

    async def refresh_token(self) -> None:
        """Force our token callable to fetch a new Connector token (after a 401)."""
        await self._get_token(force_refresh=True)

    def _session(self) -> aiohttp.ClientSession:
        """The one HTTP session of the outbound Connector calls (one connection pool, keep-alive)."""
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(ssl=self._trust.context, limit=100)
            self._http = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.settings.connector_timeout),
                raise_for_status=False, middlewares=self._middlewares)
        return self._http

    async def _request(self, method: str, service_url: str, segments: tuple[str, ...],
                       body: Mapping[str, Any]) -> Any:
        """One Connector request to {service_url}/v3/<segments>. Returns the answer's JSON (None when empty);
        raises ConnectorFailure."""
        target = f"{method} /v3/{'/'.join(segments)}"
        try:
            token = await self._get_token()
        except Exception as exc:  # noqa: BLE001 - the provider's failure: no answer, the pipeline reschedules
            log.warning("no Connector token (the call is not made): %s", exc)
            raise ConnectorFailure(None, target, message=f"no Connector token: {type(exc).__name__}: {exc}") \
                from exc
        # as msrest: the service URL without its trailing slash, then the path, each parameter quoted (safe='')
        url = URL(f"{service_url.rstrip('/')}/v3/{'/'.join(quote(part, safe='') for part in segments)}",
                  encoded=True)
        data = json.dumps(body)
        headers = {**_REQUEST_HEADERS, "Authorization": f"Bearer {token}"}
        try:
            async with self._session().request(method, url, data=data, headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
                response_headers = response.headers
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ConnectorFailure(None, target, message=f"{type(exc).__name__}: {exc}") from exc
        if status not in _SUCCESS:
            raise _http_failure(status, target, response_headers, text)
        try:
            return json.loads(text) if text.strip() else None
        except ValueError as exc:
            raise ConnectorFailure(None, target, message=f"unreadable Connector answer: {exc}") from exc

    # Each call below is one Connector request (raises ConnectorFailure); posting.py retries.

    async def create_conversation(self, service_url: str, tenant_id: str, *, channel_id: str | None = None,
                                  member_id: str | None = None,
                                  activity: Mapping[str, Any] | None = None) -> tuple[str, str | None]:
        """POST /v3/conversations: a new channel thread (channel_id + activity) or a 1:1 chat (member_id).

        Returns:
            (conversation id, id of the first message or None when no activity was sent or Teams gave none).
        """
        channel_data: dict[str, Any] = {"tenant": {"id": tenant_id}}
        if channel_id:
            channel_data["channel"] = {"id": channel_id}
        params: dict[str, Any] = {"isGroup": bool(channel_id), "bot": {"id": self.settings.bot_id}}
        if member_id:
            params["members"] = [{"id": member_id}]
        if activity is not None:
            params["activity"] = _activity_json(activity)
        params["channelData"] = channel_data
        params["tenantID"] = tenant_id
        answer = await self._request("POST", service_url, ("conversations",), params)
        answer = answer if isinstance(answer, dict) else {}
        first_id = answer.get("activityId") if activity is not None else None
        return cast(str, answer.get("id")), first_id or None  # Bot Connector answers with the id

    async def send_to_conversation(self, service_url: str, conversation_id: str,
                                   activity: Mapping[str, Any]) -> str:
        """POST /v3/conversations/{id}/activities (a thread id posts into the thread). Returns the message id."""
        body = _activity_json(activity, self._address(service_url, conversation_id))
        answer = await self._request("POST", service_url, ("conversations", conversation_id, "activities"), body)
        return cast(str, answer.get("id") if isinstance(answer, dict) else None)

    async def update_activity(self, service_url: str, conversation_id: str, activity_id: str,
                              activity: Mapping[str, Any]) -> None:
        """PUT /v3/conversations/{id}/activities/{activity id}: replace a message in place."""
        body = _activity_json(activity, {**self._address(service_url, conversation_id), "id": activity_id})
        await self._request("PUT", service_url, ("conversations", conversation_id, "activities", activity_id), body)

    def _address(self, service_url: str, conversation_id: str) -> dict[str, Any]:
        """What botbuilder's conversation reference put on a proactive message (never a replyToId; recipient and
        locale cleared, as TurnContext.apply_conversation_reference did)."""
        return {"serviceUrl": service_url, "channelId": _CHANNEL, "from": {"id": self.settings.bot_id},
                "conversation": {"id": conversation_id}, "recipient": None, "locale": None}
