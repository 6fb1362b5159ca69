"""Proactive posting into Teams: new channel threads, thread replies, updates in place, 1:1 chats.

Owns the inline retry policy of ONE Connector call (429/412/502/503/504, Retry-After honoured, bounded) and the
translation of Connector failures into bot/errors.py. What outlasts the policy is raised as TeamsThrottled /
TeamsUnavailable with `retry_after`, for the pipeline to reschedule. A call that got no answer at all (network
error, timeout, no token) is not retried inline: it may have been delivered, so the pipeline decides.
A 401 gets one forced token refresh and one more try. The Connector requests live in bot/sdk.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from bot.activities import card_message
from bot.errors import (
    CardTooLarge,
    TeamsBadRequest,
    TeamsError,
    TeamsForbidden,
    TeamsNotFound,
    TeamsThrottled,
    TeamsUnauthorized,
    TeamsUnavailable,
)
from bot.models import PostedRef
from bot.retry import RetryBudget, RetryPolicy, parse_retry_after
from bot.sdk import BotRuntime, ConnectorFailure

__all__ = ["RETRYABLE_STATUSES", "TeamsPoster"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Teams' rate-limit guidance (teams.md §3.1): retry these, honouring Retry-After when present.
RETRYABLE_STATUSES = frozenset({412, 429, 502, 503, 504})


def _error_fields(body: str) -> tuple[str, str, str]:
    """(code, subCode, message) from the Connector's error bodies:
    `{"error": {"code", "message"}}` or Teams' `{"errorCode": 209, "message": "{\\"subCode\\": ...}"}`."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return "", "", body.strip()[:300]
    if not isinstance(data, dict):
        return "", "", ""
    error = data.get("error")
    inner = error if isinstance(error, dict) else data
    code = inner.get("code") or data.get("errorCode") or ""
    message = inner.get("message") or ""
    sub_code = inner.get("subCode") or ""
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            nested = json.loads(message)
        except ValueError:
            nested = None
        if isinstance(nested, dict):
            sub_code = sub_code or nested.get("subCode") or ""
            message = nested.get("message") or nested.get("details") or message
    return str(code), str(sub_code), str(message)


def classify(failure: ConnectorFailure, retry_after: float) -> TeamsError:
    """A Connector failure -> our error tree. `retry_after` is used by the transient errors."""
    code, sub_code, message = _error_fields(failure.body)
    message = message or failure.message
    kwargs: dict[str, Any] = {"sub_code": sub_code, "target": failure.target}
    status = failure.status
    if status is None:
        return TeamsUnavailable(retry_after, None, code, message, **kwargs)
    if status == 429:
        return TeamsThrottled(retry_after, 429, code, message, **kwargs)
    if status in RETRYABLE_STATUSES or status >= 500:
        return TeamsUnavailable(retry_after, status, code, message, **kwargs)
    cls = {400: TeamsBadRequest, 401: TeamsUnauthorized, 403: TeamsForbidden, 404: TeamsNotFound,
           413: CardTooLarge}.get(status, TeamsError)
    return cls(status, code, message, **kwargs)


def _message_id(conversation_id: str) -> str:
    _, sep, tail = conversation_id.partition(";messageid=")
    return tail if sep else ""


class TeamsPoster:
    """Posts cards through the Bot Connector with a bounded inline retry per call.

    Args:
        runtime: the bot runtime (bot/sdk.py) whose Connector calls we make.
        policy: attempts and inline-wait bounds.
        sleep, clock: injectable time (clock is monotonic, for the inline-wait budget).
        wall_clock: epoch seconds, to read Retry-After HTTP-dates.
        rng: jitter source in [0, 1).
    """

    def __init__(self, runtime: BotRuntime, *, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self._runtime = runtime
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng

    async def create_channel_thread(self, service_url: str, tenant_id: str, channel_id: str,
                                    card: Mapping[str, Any], *, text: str | None = None) -> PostedRef:
        """Start a new thread in a channel with `card` as its first message.

        Raises:
            TeamsForbidden, TeamsNotFound, CardTooLarge, TeamsBadRequest, TeamsThrottled, TeamsUnavailable...
        """
        activity = card_message(card, text)
        conversation_id, first_id = await self._call(lambda: self._runtime.create_conversation(
            service_url, tenant_id, channel_id=channel_id, activity=activity))
        activity_id = first_id or _message_id(conversation_id)
        if not first_id:
            log.warning("Teams returned no activityId for the new thread %s", conversation_id)
        return PostedRef(conversation_id, activity_id, service_url)

    async def reply(self, service_url: str, conversation_id: str, card: Mapping[str, Any], *,
                    text: str | None = None) -> PostedRef:
        """Post `card` into an existing conversation (a `...;messageid=` id posts into that thread)."""
        activity = card_message(card, text)
        activity_id = await self._call(lambda: self._runtime.send_to_conversation(
            service_url, conversation_id, activity))
        return PostedRef(conversation_id, activity_id or "", service_url)

    async def update(self, service_url: str, conversation_id: str, activity_id: str,
                     card: Mapping[str, Any]) -> None:
        """Replace a message's card in place; the card's msteams.entities (mentions) go again with it."""
        activity = card_message(card)
        await self._call(lambda: self._runtime.update_activity(service_url, conversation_id, activity_id, activity))

    async def create_personal(self, service_url: str, tenant_id: str, user_aad_object_id: str,
                              card: Mapping[str, Any], *, text: str | None = None) -> PostedRef:
        """Open (or find) the 1:1 chat with a user and post `card` there.

        Raises:
            TeamsForbidden: the app is not installed for the user (or is blocked); the message keeps Teams'
                code/subCode.
        """
        conversation_id, _ = await self._call(lambda: self._runtime.create_conversation(
            service_url, tenant_id, member_id=user_aad_object_id))
        return await self.reply(service_url, conversation_id, card, text=text)

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        budget = RetryBudget(self._policy, sleep=self._sleep, clock=self._clock, rng=self._rng)
        refreshed = False
        while True:
            try:
                return await make()
            except ConnectorFailure as failure:
                if failure.status == 401 and not refreshed:
                    refreshed = True
                    await self._refresh(budget)
                    continue
                if failure.status in RETRYABLE_STATUSES:
                    retry_after = parse_retry_after(failure.headers.get("retry-after"), self._wall_clock())
                    delay = budget.delay_for(retry_after)
                    log.info("Teams answered %s on %s; retry in %.1f s", failure.status, failure.target, delay)
                    if await budget.wait(delay):
                        continue
                    raise classify(failure, delay) from None
                raise classify(failure, budget.delay_for(None)) from None

    async def _refresh(self, budget: RetryBudget) -> None:
        try:
            await self._runtime.refresh_token()
        except Exception as exc:  # noqa: BLE001 - the token provider's own errors: reschedule
            raise TeamsUnavailable(budget.delay_for(None), None, "", f"Connector token refresh failed: {exc}") \
                from None
