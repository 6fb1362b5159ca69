"""The Teams stand-in's shared state: the world, knobs, limiter, faults, request log and counters.

One object per running stand-in, handed to the route modules (connector.py, admin.py) through an AppKey.
Also the one place that turns a refusal into the Connector's JSON error shape.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.teams.channel import Channel
from sandbox.teams.limits import Faults, RateLimiter
from sandbox.teams.lint import MAX_ACTIVITY_BYTES
from sandbox.teams.world import World

CONNECTOR_AUDIENCE = "https://api.botframework.com"
VerifyToken = Callable[[str, str], "dict | Awaitable[dict]"]


class ConnectorError(Exception):
    """A refusal answered as `{"error": {"code", "message"}}` (the Bot Connector's ErrorResponse)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None,
                 body: dict | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
        self.body = body if body is not None else {"error": {"code": code, "message": message}}

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass
class Knobs:
    lint: bool = True  # card lint (version ≤ 1.5, mention entities) → 400 BadArgument
    retry_after_header: bool = True  # send Retry-After with 429s
    latency_ms: int = 0  # added to every Connector request
    max_activity_bytes: int = MAX_ACTIVITY_BYTES
    # a loginRequest answer to Action.Execute: "silent" (SSO: retry the press with a token), "button" (the client
    # cannot sign in silently: show the Sign-In button and stop), "refuse" (consent refused: show it and stop)
    sso: str = "silent"
    rsc: bool = False  # the app has ChannelMessage.Read.Group: every channel message reaches the bot

    def as_json(self) -> dict:
        return dict(vars(self))


@dataclass
class TeamsService:
    world: World
    channel: Channel
    verify_token: VerifyToken
    clock: Callable[[], float] = time.monotonic
    knobs: Knobs = field(default_factory=Knobs)
    limiter: RateLimiter = None  # type: ignore[assignment]
    faults: Faults = field(default_factory=Faults)
    log: list[dict] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    posts_per_thread: Counter = field(default_factory=Counter)
    posts_per_conversation: Counter = field(default_factory=Counter)
    renderer_dir: Any = None
    base_url: str = ""
    # mints the Teams SSO token for a person (the Entra stand-in, wired by starter.py); None: no SSO in this world
    sso_minter: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.clock)

    async def authenticate(self, request: web.Request) -> dict:
        """Verify the bot's outbound token: audience api.botframework.com, issued to the bot's app id."""
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise _denied()
        try:
            claims = self.verify_token(header[7:].strip(), CONNECTOR_AUDIENCE)
            if inspect.isawaitable(claims):
                claims = await claims
        except Exception:  # noqa: BLE001 - any verification failure is a 401, as the real service answers
            raise _denied() from None
        if self.world.bot_app_id not in (claims.get("appid"), claims.get("azp")):
            raise _denied()
        return claims

    def admit(self, operation: str, thread: str | None) -> None:
        """Count one request against the rate limits, or refuse it with 429 Throttled."""
        throttle = self.limiter.check(operation, thread, self.world.tenant_id)
        if throttle:
            self.counters["throttled"] += 1
            headers = {"Retry-After": throttle.retry_after_header} if self.knobs.retry_after_header else {}
            raise ConnectorError(429, "Throttled", f"Too many requests ({throttle.scope}).", headers)

    def injected(self, method: str, path: str) -> ConnectorError | None:
        fault = self.faults.take(method, path)
        if not fault:
            return None
        self.counters["injected"] += 1
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after)) if float(fault.retry_after).is_integer() \
                else str(fault.retry_after)
        code = {412: "PreconditionFailed", 429: "Throttled", 502: "ServiceError", 500: "ServiceError"}.get(
            fault.status, "ServiceUnavailable")
        return ConnectorError(fault.status, code, f"Injected fault {fault.status}.", headers)

    def record(self, entry: dict) -> None:
        entry["seq"] = len(self.log) + 1
        self.log.append(entry)
        self.counters[f"status_{entry['status']}"] += 1
        self.counters["requests"] += 1

    def stats(self) -> dict:
        return {"requests": self.counters["requests"], "throttled": self.counters["throttled"],
                "injected": self.counters["injected"],
                "status_429": self.counters["status_429"],
                "by_status": {k[7:]: v for k, v in self.counters.items() if k.startswith("status_")},
                "posts_per_thread": dict(self.posts_per_thread),
                "posts_per_conversation": dict(self.posts_per_conversation),
                "max_posts_per_thread": max(self.posts_per_thread.values(), default=0),
                "inbound": len(self.channel.sent)}

    def reset(self, *, threads: bool = False) -> None:
        self.log.clear()
        self.counters.clear()
        self.posts_per_thread.clear()
        self.posts_per_conversation.clear()
        self.channel.sent.clear()
        self.faults.clear()
        self.limiter.reset()
        if threads:
            self.world.threads.clear()
            self.world.viewer_cards.clear()


def _denied() -> ConnectorError:
    # The Bot Connector answers an unauthenticated call with this ASP.NET body, not the ErrorResponse shape.
    return ConnectorError(401, "Unauthorized", "Authorization has been denied for this request.",
                          body={"message": "Authorization has been denied for this request."})
