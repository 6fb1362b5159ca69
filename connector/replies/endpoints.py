"""`POST /api/graph/notifications` and `POST /api/graph/lifecycle` (teams.md §4.2–4.4).

The validation handshake answers 200 text/plain with the decoded `validationToken` (aiohttp's query parsing decodes
it). Every notification's `clientState` is compared in constant time with the one stored (encrypted) for its
`subscriptionId`; an unknown subscription or a mismatch is dropped, logged and counted, and nothing else happens
for it (no Graph read, no decision). Valid notifications are stored in the reply inbox before the 202, and the
work runs off the request, so the answer does not wait for Graph, F&O or Teams.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from connector.replies.inbox import ReplyInbox
from connector.store import GraphSubscription, Store, StoreError

log = logging.getLogger(__name__)

_RESOURCE = re.compile(r"teams\('(?P<team>[^']+)'\)/channels\('(?P<channel>[^']+)'\)/messages\('(?P<root>[^']+)'\)"
                       r"(?:/replies\('(?P<reply>[^']+)'\))?", re.IGNORECASE)
MAX_BODY = 1024 * 1024
NOTE_EVERY = 60.0  # last_notification_at is written at most this often per subscription (one write less per call)
SUB_CACHE = 10.0  # a subscription looked up by id is reused this long (a busy channel: one read less per call)

ClientState = Callable[[GraphSubscription], Awaitable[str | None]]
Lifecycle = Callable[[GraphSubscription, str], Awaitable[None]]


def parse_resource(resource: str) -> dict[str, str] | None:
    """team, channel, root (and reply) ids from a notification's `resource`, or None for another shape."""
    found = _RESOURCE.search(resource or "")
    if not found:
        return None
    return {k: v for k, v in found.groupdict().items() if v}


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class GraphEndpoints:
    """Args:
        store; inbox (ReplyInbox); client_state (the stored clientState of a subscription, decrypted);
        on_lifecycle (runs a lifecycle event off the request); clock.
    """

    def __init__(self, store: Store, inbox: ReplyInbox, *, client_state: ClientState, on_lifecycle: Lifecycle,
                 spawn: Callable[[Awaitable[None]], None], clock: Callable[[], float]) -> None:
        self.store = store
        self.inbox = inbox
        self.client_state = client_state
        self.on_lifecycle = on_lifecycle
        self.spawn = spawn
        self.clock = clock
        self.counts: Counter[str] = Counter()  # accepted, duplicate, dropped_unknown, dropped_client_state, ...
        self._noted: dict[str, float] = {}
        self._subs: dict[str, tuple[float, GraphSubscription]] = {}

    def add_routes(self, app: web.Application, notification_path: str, lifecycle_path: str) -> None:
        app.router.add_post(notification_path, self.notifications)
        app.router.add_post(lifecycle_path, self.lifecycle)

    async def notifications(self, request: web.Request) -> web.Response:
        """Change notifications: a reply under a card goes to the inbox (stored before the 202)."""
        return await self._receive(request, self._notification, "graph notification not stored")

    async def lifecycle(self, request: web.Request) -> web.Response:
        """Lifecycle notifications (reauthorizationRequired, subscriptionRemoved, missed): handled in the background."""
        return await self._receive(request, self._lifecycle_event, "graph lifecycle notification not handled")

    async def _receive(self, request: web.Request,
                       handle: Callable[[dict[str, Any], GraphSubscription], Awaitable[None]],
                       failure: str) -> web.Response:
        """One Graph POST: the validation handshake, or a batch whose items are each checked (clientState) and
        handled; a store failure answers 503 so that Graph delivers again."""
        token = self._handshake(request)
        if token is not None:
            return token
        items = await self._items(request)
        if isinstance(items, web.Response):
            return items
        try:
            for item in items:
                sub = await self._verified(item)
                if sub is not None:
                    await handle(item, sub)
        except StoreError as exc:  # not stored: ask Graph to deliver again
            log.warning("%s: %s", failure, exc)
            return _problem(503, "the connector's store is unavailable; deliver again later")
        return web.Response(status=202)

    async def _notification(self, item: dict[str, Any], sub: GraphSubscription) -> None:
        ids = parse_resource(str(item.get("resource") or ""))
        if ids is None or "reply" not in ids:
            self.counts["ignored_top_level"] += 1  # a new post, not a reply under a card
            return
        new = await self.inbox.accept_notification(ids["reply"], ids)
        self.counts["accepted" if new else "duplicate"] += 1
        await self._note(sub.subscription_id or "")

    async def _lifecycle_event(self, item: dict[str, Any], sub: GraphSubscription) -> None:
        event = str(item.get("lifecycleEvent") or "")
        self.counts[f"lifecycle_{event or 'unknown'}"] += 1
        self.spawn(self.on_lifecycle(sub, event))

    async def _note(self, subscription_id: str) -> None:
        now = self.clock()
        if now - self._noted.get(subscription_id, float("-inf")) >= NOTE_EVERY:
            self._noted[subscription_id] = now
            await self.store.note_graph_notification(subscription_id, at=now)

    async def _find(self, subscription_id: str) -> GraphSubscription | None:
        now = self.clock()
        cached = self._subs.get(subscription_id)
        if cached is not None and now - cached[0] < SUB_CACHE:
            return cached[1]
        sub = await self.store.find_graph_subscription(subscription_id)
        if sub is None:
            self._subs.pop(subscription_id, None)
        else:
            if len(self._subs) > 10_000:
                self._subs.clear()
            self._subs[subscription_id] = (now, sub)
        return sub

    def _handshake(self, request: web.Request) -> web.Response | None:
        if "validationToken" not in request.query:
            return None
        self.counts["handshake"] += 1
        return web.Response(status=200, text=request.query["validationToken"], content_type="text/plain")

    async def _items(self, request: web.Request) -> list[dict[str, Any]] | web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _problem(413, f"notification body larger than {MAX_BODY} bytes")
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return _problem(400, "body is not JSON: expected {\"value\": [notifications]}")
        values = body.get("value") if isinstance(body, dict) else None
        if not isinstance(values, list):
            return _problem(400, "body has no \"value\" array of notifications")
        return [v for v in values if isinstance(v, dict)]

    async def _verified(self, item: dict[str, Any]) -> GraphSubscription | None:
        sub_id = item.get("subscriptionId")
        sub = await self._find(sub_id) if isinstance(sub_id, str) and sub_id else None
        if sub is None:
            self.counts["dropped_unknown"] += 1
            log.warning("graph notification dropped: unknown subscription %r", sub_id)
            return None
        expected = await self.client_state(sub)
        given = item.get("clientState")
        if not expected or not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
            self.counts["dropped_client_state"] += 1
            log.warning("graph notification dropped: clientState mismatch for subscription %s", sub_id)
            return None
        return sub
