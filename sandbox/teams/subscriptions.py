"""Graph change-notification subscriptions for channel messages, as Graph enforces them (teams.md §4.1–4.4), and
the channel-message reads (`GET /teams/{g}/channels/{c}/messages/{root}[/replies[/{id}]]`).

Rules: resource `/teams/{team-aad-group-id}/channels/{channel-id}/messages` of a known team and channel; the app
needs ChannelMessage.Read.All (or ChannelMessage.Read.Group); expiry at most 4,320 minutes ahead (earlier than 45
minutes is raised to 45); `lifecycleNotificationUrl` required past 60 minutes; `clientState` at most 128
characters; both URLs must pass the validation handshake (200, text/plain, the URL-decoded token, within 10 s; the
token needs URL decoding). Notifications for messages typed in a channel go to every live subscription on it;
undelivered ones are retried with backoff for 4 hours (sandbox clock), then dropped. Lifecycle events on demand.

The clock is wall time plus an offset the admin API moves (`POST /_sandbox/graph/clock {"advance": s}`), so a
week of renewals runs in a test without waiting; due retries and expiries are applied on every call and on
`POST /_sandbox/graph/deliver`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

MAX_MINUTES = 4320
MIN_MINUTES = 45
LIFECYCLE_REQUIRED_AFTER = 60 * 60
MAX_CLIENT_STATE = 128
HANDSHAKE_TIMEOUT = 10.0
RETRY_FOR = 4 * 3600
READ_ROLES = {"ChannelMessage.Read.All", "ChannelMessage.Read.Group"}
# a token that only survives if the endpoint URL-decodes it (spaces, '+', ':' and '/')
TOKEN_TEMPLATE = "Validation: Testing client application reachability for subscription Request-Id: {}"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    value = text.replace("Z", "+00:00")
    if "." in value:
        head, _, tail = value.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        value = f"{head}.{digits[:6]}{tail[len(digits):]}"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()


@dataclass
class Subscription:
    id: str
    resource: str
    team_id: str  # aad group id
    channel_id: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: float
    app_id: str
    removed: bool = False

    def as_json(self) -> dict:
        return {"id": self.id, "resource": self.resource, "applicationId": self.app_id,
                "changeType": self.change_type, "clientState": self.client_state,
                "notificationUrl": self.notification_url, "lifecycleNotificationUrl": self.lifecycle_url,
                "expirationDateTime": _iso(self.expires), "creatorId": self.app_id, "includeResourceData": False,
                "latestSupportedTlsVersion": "v1_2", "notificationQueryOptions": None,
                "encryptionCertificate": None, "encryptionCertificateId": None, "notificationUrlAppId": None}


@dataclass
class Pending:
    url: str
    body: dict
    first: float
    next_at: float
    attempts: int = 0


@dataclass
class SubscriptionStandIn:
    """State and rules; GraphService routes `/subscriptions*` and channel message reads here."""

    world: Any  # sandbox.teams.world.World
    ssl: Any = None  # client TLS for https notification URLs (the sandbox CA)
    offset: float = 0.0
    subs: dict[str, Subscription] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"delivered": 0, "failed": 0, "dropped": 0,
                                                            "handshakes": 0, "created": 0, "renewed": 0,
                                                            "deleted": 0, "reauthorized": 0, "lifecycle": 0})
    fail_deliveries: int = 0  # the next n deliveries count as failed (an endpoint that is down)
    wall: Callable[[], float] = time.time
    _session: aiohttp.ClientSession | None = None

    def now(self) -> float:
        return self.wall() + self.offset

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _expire(self) -> None:
        now = self.now()
        for sub in list(self.subs.values()):
            if sub.expires <= now:
                del self.subs[sub.id]

    def _team(self, group_id: str) -> Any:
        return next((t for t in self.world.teams.values() if t.aad_group_id.lower() == group_id.lower()), None)

    # --- subscriptions --------------------------------------------------------------------------------------
    async def handle(self, method: str, seg: str, body: Any, roles: set[str], app_id: str) -> tuple[int, Any]:
        self._expire()
        if seg == "subscriptions" and method == "GET":
            return 200, {"value": [s.as_json() for s in self.subs.values() if s.app_id == app_id]}
        if seg == "subscriptions" and method == "POST":
            return await self.create(body, roles, app_id)
        m = re.fullmatch(r"subscriptions/([^/]+)(/reauthorize)?", seg)
        if m:
            sub = self.subs.get(m[1])
            if sub is None:
                return 404, _err("ResourceNotFound", f"The object was not found: subscription {m[1]}")
            if m[2] and method == "POST":
                self.counts["reauthorized"] += 1
                return 204, None
            if method == "GET":
                return 200, sub.as_json()
            if method == "DELETE":
                del self.subs[sub.id]
                self.counts["deleted"] += 1
                return 204, None
            if method == "PATCH":
                expires = _epoch((body or {}).get("expirationDateTime"))
                problem = self._expiry_problem(expires, sub.lifecycle_url)
                if problem:
                    return 400, problem
                sub.expires = max(expires or 0, self.now() + MIN_MINUTES * 60)
                self.counts["renewed"] += 1
                return 200, sub.as_json()
        m = re.fullmatch(r"teams/([^/]+)/channels/([^/]+)/messages/([^/]+)(/replies(?:/([^/]+))?)?", seg)
        if m and method == "GET":
            if not roles & READ_ROLES:
                return 403, _err("Forbidden", "Missing role permissions on the request. API requires one of "
                                 "'ChannelMessage.Read.All, ChannelMessage.Read.Group'.")
            return self.read(m[1], m[2], m[3], bool(m[4]), m[5])
        return 400, _err("BadRequest", f"Resource not found for the segment '{seg.split('/')[0]}'.")

    def _expiry_problem(self, expires: float | None, lifecycle_url: str | None) -> dict | None:
        if expires is None:
            return _err("InvalidRequest", "expirationDateTime is a required property and must be a date.")
        if expires > self.now() + MAX_MINUTES * 60 + 5:
            return _err("InvalidRequest", f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.")
        if not lifecycle_url and expires > self.now() + LIFECYCLE_REQUIRED_AFTER:
            return _err("InvalidRequest", "lifecycleNotificationUrl is a required property for subscription "
                        "creation on this resource when the expirationDateTime value is set to greater than 1 hour.")
        return None

    async def create(self, body: Any, roles: set[str], app_id: str) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        if not roles & READ_ROLES:
            return 403, _err("ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: "
                             "Caller does not have access to the resource: ChannelMessage.Read.All]")
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not body.get(key):
                return 400, _err("InvalidRequest", f"{key} is a required property.")
        m = re.fullmatch(r"/?teams/([^/]+)/channels/([^/]+)/messages", str(body["resource"]))
        team = self._team(m[1]) if m else None
        if not m or team is None or m[2] not in team.channels or team.channels[m[2]].deleted:
            return 404, _err("ResourceNotFound", f"Resource '{body['resource']}' does not exist.")
        state = body.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > MAX_CLIENT_STATE):
            return 400, _err("InvalidRequest", "clientState must be a string of at most 128 characters.")
        lifecycle = body.get("lifecycleNotificationUrl") or None
        expires = _epoch(body["expirationDateTime"])
        problem = self._expiry_problem(expires, lifecycle)
        if problem:
            return 400, problem
        for url in (body["notificationUrl"], lifecycle):
            if url and not await self._handshake(url):
                return 400, _err("InvalidRequest", f"Subscription validation request failed. Notification "
                                 f"endpoint must respond with 200 OK to validation request ({url}).")
        sub = Subscription(str(uuid.uuid4()), str(body["resource"]), m[1], m[2], str(body["changeType"]),
                           str(body["notificationUrl"]), lifecycle, state,
                           max(expires or 0, self.now() + MIN_MINUTES * 60), app_id)
        self.subs[sub.id] = sub
        self.counts["created"] += 1
        return 201, sub.as_json()

    async def _handshake(self, url: str) -> bool:
        self.counts["handshakes"] += 1
        token = TOKEN_TEMPLATE.format(uuid.uuid4())
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
        try:
            async with self.session().post(target, data=b"", headers={"Content-Type": "text/plain; charset=utf-8"},
                                           timeout=aiohttp.ClientTimeout(total=HANDSHAKE_TIMEOUT)) as r:
                text = await r.text()
                return (r.status == 200 and r.headers.get("Content-Type", "").startswith("text/plain")
                        and text == token)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    # --- channel messages -----------------------------------------------------------------------------------
    def read(self, group_id: str, channel_id: str, root_id: str, replies: bool, reply_id: str | None) -> tuple:
        team = self._team(group_id)
        thread = self.world.threads.get(f"{channel_id};messageid={root_id}") if team else None
        if thread is None:
            return 404, _err("NotFound", "Resource not found.")
        msgs = [m for m in thread.messages if not m.deleted]
        if not replies:
            root = next((m for m in msgs if m.id == root_id), None)
            return (200, self.message_json(team, channel_id, root_id, root)) if root else (404, _err("NotFound", "."))
        if reply_id is not None:
            reply = next((m for m in msgs if m.id == reply_id and m.id != root_id), None)
            return (200, self.message_json(team, channel_id, root_id, reply)) if reply else (404, _err("NotFound", "."))
        return 200, {"@odata.count": len(msgs) - 1,
                     "value": [self.message_json(team, channel_id, root_id, m) for m in msgs if m.id != root_id]}

    def message_json(self, team: Any, channel_id: str, root_id: str, msg: Any) -> dict:
        person = None if msg.sender == "bot" else self.world.person(msg.sender)
        sender = ({"application": {"id": self.world.bot_app_id, "displayName": self.world.bot_name,
                                   "applicationIdentityType": "bot"}, "device": None, "user": None}
                  if msg.sender == "bot" else
                  {"application": None, "device": None,
                   "user": {"id": msg.sender, "displayName": person.name if person else None,
                            "userIdentityType": "aadUser", "tenantId": self.world.tenant_id}})
        text = msg.activity.get("text") or ""
        mentions = [{"id": i, "mentionText": e.get("text", "").replace("<at>", "").replace("</at>", ""),
                     "mentioned": {"application": {"id": self.world.bot_app_id, "displayName": self.world.bot_name}}
                     if str((e.get("mentioned") or {}).get("id", "")).startswith("28:") else
                     {"user": {"id": (e.get("mentioned") or {}).get("id")}}}
                    for i, e in enumerate(msg.activity.get("entities") or []) if e.get("type") == "mention"]
        for i, _ in enumerate(mentions):
            text = re.sub(r"<at>", f'<at id="{i}">', text, count=1)
        return {"id": msg.id, "replyToId": None if msg.id == root_id else root_id, "etag": msg.id,
                "messageType": "message", "createdDateTime": _iso(msg.created if msg.created > 1e9 else self.now()),
                "lastModifiedDateTime": None, "deletedDateTime": None, "subject": None, "importance": "normal",
                "locale": "en-us", "channelIdentity": {"teamId": team.aad_group_id, "channelId": channel_id},
                "webUrl": f"https://teams.microsoft.com/l/message/{quote(channel_id, safe='')}/{msg.id}"
                          f"?groupId={team.aad_group_id}&parentMessageId={root_id}",
                "from": sender, "body": {"contentType": "html", "content": f"<p>{text}</p>"},
                "attachments": [], "mentions": mentions, "reactions": []}

    # --- delivery -------------------------------------------------------------------------------------------
    def on_channel_message(self, team: Any, channel_id: str, root_id: str, message_id: str) -> list[dict]:
        """A message was typed in a channel: one notification body per live subscription on it."""
        self._expire()
        resource = (f"teams('{team.aad_group_id}')/channels('{channel_id}')/messages('{root_id}')"
                    + (f"/replies('{message_id}')" if message_id != root_id else ""))
        out = []
        for sub in self.subs.values():
            if sub.team_id.lower() == team.aad_group_id.lower() and sub.channel_id == channel_id and not sub.removed:
                body = {"value": [{"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                                   "changeType": "created", "clientState": sub.client_state,
                                   "tenantId": self.world.tenant_id, "resource": resource,
                                   "resourceData": {"id": message_id, "@odata.type": "#Microsoft.Graph.chatMessage",
                                                    "@odata.id": resource}}]}
                self.pending.append(Pending(sub.notification_url, body, self.now(), self.now()))
                out.append(body)
        return out

    def lifecycle(self, sub_id: str | None, event: str) -> list[dict]:
        """Queue `event` for one subscription (or all); subscriptionRemoved also removes it."""
        out = []
        for sub in list(self.subs.values()):
            if sub_id not in (None, "all", sub.id) or not sub.lifecycle_url:
                continue
            body = {"value": [{"lifecycleEvent": event, "subscriptionId": sub.id, "clientState": sub.client_state,
                               "subscriptionExpirationDateTime": _iso(sub.expires),
                               "tenantId": self.world.tenant_id}]}
            self.pending.append(Pending(sub.lifecycle_url, body, self.now(), self.now()))
            if event == "subscriptionRemoved":
                del self.subs[sub.id]
            self.counts["lifecycle"] += 1
            out.append(body)
        return out

    async def deliver_due(self) -> dict:
        """POST every due notification once; failures back off (1, 2, 4 ... min) and are dropped after 4 h."""
        now = self.now()
        due = [p for p in self.pending if p.next_at <= now]
        for p in due:
            ok = False
            if self.fail_deliveries > 0:
                self.fail_deliveries -= 1
            else:
                try:
                    async with self.session().post(p.url, data=json.dumps(p.body),
                                                   headers={"Content-Type": "application/json"},
                                                   timeout=aiohttp.ClientTimeout(total=30)) as r:
                        ok = 200 <= r.status < 300
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
            p.attempts += 1
            if ok:
                self.pending.remove(p)
                self.counts["delivered"] += 1
            elif self.now() - p.first >= RETRY_FOR:
                self.pending.remove(p)
                self.counts["dropped"] += 1
            else:
                self.counts["failed"] += 1
                p.next_at = self.now() + 60 * 2 ** min(p.attempts - 1, 6)
        return {"attempted": len(due), "pending": len(self.pending), **self.counts}

    def snapshot(self) -> dict:
        self._expire()
        return {"now": _iso(self.now()), "subscriptions": [s.as_json() for s in self.subs.values()],
                "pending": len(self.pending), "counts": dict(self.counts)}


def _err(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())}}}
