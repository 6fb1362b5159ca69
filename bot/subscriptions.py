"""Graph change-notification subscriptions for channel messages, and the channel-message reads they lead to.

Rides on GraphClient's plumbing (its session, token callable, bounded retry that honours 429 + Retry-After, one
forced token refresh on 401, and its error tree). Knows nothing about the store, config or schedules: the connector
decides when to create, renew or re-create (teams.md §4.1, §4.4).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bot.graph import GraphClient

__all__ = ["ChannelMessage", "GraphSubscriptions", "SubscriptionInfo", "channel_resource"]

_PERMISSION = "ChannelMessage.Read.All"
_SUBSCRIPTION_PERMISSION = "ChannelMessage.Read.All"


def channel_resource(team_id: str, channel_id: str) -> str:
    """The subscription resource for one channel's messages (its replies included)."""
    return f"/teams/{team_id}/channels/{channel_id}/messages"


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.replace("Z", "+00:00")
    if "." in text:  # Graph sends up to 7 fractional digits; fromisoformat takes 6
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()


@dataclass(frozen=True)
class SubscriptionInfo:
    id: str
    resource: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True)
class ChannelMessage:
    """The parts of a Graph chatMessage a typed reply needs."""

    id: str
    reply_to_id: str | None  # the thread's root message id; None for a top-level post
    body: str
    content_type: str  # "html" | "text"
    from_user_id: str | None  # Entra object id of a user sender
    from_user_name: str | None
    from_app_id: str | None  # set when an app (a bot) sent it
    created_at: float
    web_url: str | None = None
    mentions: list[dict[str, Any]] = field(default_factory=list)
    message_type: str = "message"
    deleted: bool = False

    @classmethod
    def from_graph(cls, data: dict[str, Any]) -> "ChannelMessage":
        sender = data.get("from") if isinstance(data.get("from"), dict) else {}
        user = (sender or {}).get("user") if isinstance((sender or {}).get("user"), dict) else {}
        app = (sender or {}).get("application") if isinstance((sender or {}).get("application"), dict) else {}
        body = data.get("body") if isinstance(data.get("body"), dict) else {}
        return cls(id=str(data.get("id") or ""), reply_to_id=data.get("replyToId") or None,
                   body=str((body or {}).get("content") or ""), content_type=str((body or {}).get("contentType")
                                                                                 or "html").lower(),
                   from_user_id=(user or {}).get("id"), from_user_name=(user or {}).get("displayName"),
                   from_app_id=(app or {}).get("id"), created_at=epoch(data.get("createdDateTime")),
                   web_url=data.get("webUrl"), mentions=[m for m in data.get("mentions") or []
                                                         if isinstance(m, dict)],
                   message_type=str(data.get("messageType") or "message"),
                   deleted=bool(data.get("deletedDateTime")))


class GraphSubscriptions:
    """`POST/PATCH/DELETE /subscriptions`, `/reauthorize`, and the channel message reads (app-only).

    Every failure leaves as bot/errors.py's GraphError tree (GraphForbidden names ChannelMessage.Read.All);
    GraphThrottled carries Graph's Retry-After once the inline retries are spent.
    """

    def __init__(self, graph: GraphClient) -> None:
        self._graph = graph

    async def create(self, resource: str, *, notification_url: str, lifecycle_url: str, expires_at: float,
                     client_state: str, change_type: str = "created") -> SubscriptionInfo:
        body = {"changeType": change_type, "notificationUrl": notification_url,
                "lifecycleNotificationUrl": lifecycle_url, "resource": resource,
                "expirationDateTime": iso(expires_at), "clientState": client_state, "includeResourceData": False}
        status, data = await self._graph._request("POST", "/subscriptions", json_body=body,
                                                  target="POST /subscriptions")
        if status != 201 and status != 200:
            raise self._graph._error(status, data, "POST /subscriptions", _SUBSCRIPTION_PERMISSION)
        return _info(data, resource)

    async def renew(self, subscription_id: str, *, expires_at: float) -> SubscriptionInfo | None:
        """PATCH the expiry; None when Graph no longer has the subscription (404: re-create it)."""
        path = f"/subscriptions/{quote(subscription_id, safe='')}"
        status, data = await self._graph._request("PATCH", path, json_body={"expirationDateTime": iso(expires_at)},
                                                  target="PATCH /subscriptions/{id}")
        if status == 404:
            return None
        if status != 200:
            raise self._graph._error(status, data, "PATCH /subscriptions/{id}", _SUBSCRIPTION_PERMISSION)
        return _info(data, "")

    async def reauthorize(self, subscription_id: str) -> bool:
        """False when Graph no longer has the subscription."""
        path = f"/subscriptions/{quote(subscription_id, safe='')}/reauthorize"
        status, data = await self._graph._request("POST", path, target="POST /subscriptions/{id}/reauthorize")
        if status == 404:
            return False
        if status not in (200, 202, 204):
            raise self._graph._error(status, data, "POST /subscriptions/{id}/reauthorize", _SUBSCRIPTION_PERMISSION)
        return True

    async def delete(self, subscription_id: str) -> bool:
        """False when it was already gone."""
        path = f"/subscriptions/{quote(subscription_id, safe='')}"
        status, data = await self._graph._request("DELETE", path, target="DELETE /subscriptions/{id}")
        if status == 404:
            return False
        if status not in (200, 204):
            raise self._graph._error(status, data, "DELETE /subscriptions/{id}", _SUBSCRIPTION_PERMISSION)
        return True

    async def get_message(self, team_id: str, channel_id: str, message_id: str,
                          reply_id: str | None = None) -> ChannelMessage | None:
        """A channel message or one reply in its thread; None when it does not exist (deleted)."""
        path = _messages(team_id, channel_id) + f"/{quote(message_id, safe='')}"
        if reply_id:
            path += f"/replies/{quote(reply_id, safe='')}"
        status, data = await self._graph._request("GET", path, target="GET channel message")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise self._graph._error(status, data, "GET channel message", _PERMISSION)
        message = ChannelMessage.from_graph(data)
        if reply_id and message.reply_to_id is None:  # a reply's replyToId is its root; some answers omit it
            message = ChannelMessage(**{**message.__dict__, "reply_to_id": message_id})
        return message

    async def list_replies(self, team_id: str, channel_id: str, message_id: str, *,
                           max_pages: int = 20) -> list[ChannelMessage]:
        """The replies of one thread (Graph pages of up to 50 each), oldest first."""
        path: str | None = _messages(team_id, channel_id) + f"/{quote(message_id, safe='')}/replies?$top=50"
        found: list[ChannelMessage] = []
        for _ in range(max_pages):
            if path is None:
                break
            status, data = await self._graph._request("GET", path, target="GET channel message replies")
            if status == 404:
                return []
            if status != 200 or not isinstance(data, dict):
                raise self._graph._error(status, data, "GET channel message replies", _PERMISSION)
            for item in data.get("value") or []:
                if isinstance(item, dict):
                    message = ChannelMessage.from_graph(item)
                    found.append(message if message.reply_to_id else
                                 ChannelMessage(**{**message.__dict__, "reply_to_id": message_id}))
            path = self._relative(data.get("@odata.nextLink"))
        return sorted(found, key=lambda m: (m.created_at, m.id))

    def _relative(self, link: Any) -> str | None:
        if not isinstance(link, str) or not link:
            return None
        base = self._graph._base
        return link[len(base):] if link.startswith(base) else None


def _messages(team_id: str, channel_id: str) -> str:
    return f"/teams/{quote(team_id, safe='')}/channels/{quote(channel_id, safe='@:')}/messages"


def _info(data: Any, resource: str) -> SubscriptionInfo:
    data = data if isinstance(data, dict) else {}
    return SubscriptionInfo(id=str(data.get("id") or ""), resource=str(data.get("resource") or resource),
                            expires_at=epoch(data.get("expirationDateTime")))
