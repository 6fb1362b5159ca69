"""Activity JSON both ways: inbound Teams activities -> our models, and our cards -> outgoing message activities.

Pure functions, no I/O, no botbuilder.

We read the raw JSON rather than botbuilder's models on purpose: its deserializer drops `conversation.tenantId`
(it expects `tenantID`), and raw dicts keep this module independent of the bot SDK.
Shapes: teams.md §1.1 (install events), §2.1 (Action.Submit), §2.2 (Action.Execute).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bot.models import CardExecute, CardSubmit, ChannelEvent, IncomingMessage, InstallEvent, InvokeFailure, LoginRequest

__all__ = [
    "ADAPTIVE_CARD",
    "CHANNEL_EVENT_KINDS",
    "card_message",
    "card_execute",
    "card_submit",
    "channel_event",
    "incoming_message",
    "install_event",
    "invoke_body",
    "invoke_error",
    "login_request",
    "tenant_of",
]

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
LOGIN_REQUEST = "application/vnd.microsoft.activity.loginRequest"

# conversationUpdate eventTypes that describe the team or its channels (not its members).
CHANNEL_EVENT_KINDS = frozenset({
    "channelCreated", "channelRenamed", "channelDeleted", "channelRestored", "channelShared", "channelUnshared",
    "teamRenamed", "teamDeleted", "teamHardDeleted", "teamArchived", "teamUnarchived", "teamRestored",
})


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class _View:
    """Read-only accessors over one activity dict; every lookup tolerates missing or mistyped parts."""

    def __init__(self, activity: Mapping[str, Any]) -> None:
        self.a = activity
        self.conversation = _obj(activity.get("conversation"))
        self.channel_data = _obj(activity.get("channelData"))
        self.team = _obj(self.channel_data.get("team"))
        self.channel = _obj(self.channel_data.get("channel"))
        self.sender = _obj(activity.get("from"))
        self.recipient = _obj(activity.get("recipient"))

    @property
    def tenant_id(self) -> str | None:
        return (_str(_obj(self.channel_data.get("tenant")).get("id"))
                or _str(self.conversation.get("tenantId")) or _str(self.conversation.get("tenantID")))

    @property
    def conversation_type(self) -> str | None:
        return _str(self.conversation.get("conversationType"))

    @property
    def scope(self) -> str:
        kind = self.conversation_type
        if kind == "personal":
            return "personal"
        if kind == "groupChat":
            return "groupChat"
        if kind == "channel" or self.team:
            return "team"
        return "groupChat" if self.conversation.get("isGroup") else "personal"

    @property
    def channel_id(self) -> str | None:
        selected = _obj(_obj(self.channel_data.get("settings")).get("selectedChannel"))
        return _str(self.channel.get("id")) or _str(selected.get("id"))

    def common(self) -> dict[str, Any]:
        """Fields shared by the user-action models."""
        return {
            "conversation_id": _str(self.conversation.get("id")) or "",
            "service_url": _str(self.a.get("serviceUrl")) or "",
            "tenant_id": self.tenant_id,
            "conversation_type": self.conversation_type,
            "team_id": _str(self.team.get("id")),
            "channel_id": self.channel_id,
            "user_id": _str(self.sender.get("id")),
            "user_aad_object_id": _str(self.sender.get("aadObjectId")),
            "user_name": _str(self.sender.get("name")),
        }

    def bot_in(self, key: str) -> bool:
        bot_id = self.recipient.get("id")
        return any(_obj(member).get("id") == bot_id for member in self.a.get(key) or [])


def tenant_of(activity: Mapping[str, Any]) -> str | None:
    """The Entra tenant an activity comes from (channelData.tenant.id, else conversation.tenantId), or None."""
    return _View(activity).tenant_id


def install_event(activity: Mapping[str, Any], channels: Mapping[str, str] | None = None) -> InstallEvent | None:
    """The install or uninstall an activity announces, or None.

    `installationUpdate` add / add-upgrade / remove / remove-upgrade, and `conversationUpdate` whose
    membersAdded / membersRemoved contains the bot itself (team, personal and group chat scope).

    Args:
        activity: the activity's wire JSON.
        channels: the team's channels (id -> name) when the caller fetched them.
    """
    view = _View(activity)
    kind = activity.get("type")
    if kind == "installationUpdate":
        action = _str(activity.get("action"))
        if action not in ("add", "remove", "add-upgrade", "remove-upgrade"):
            return None
    elif kind == "conversationUpdate":
        if view.bot_in("membersAdded"):
            action = "add"
        elif view.bot_in("membersRemoved"):
            action = "remove"
        else:
            return None
    else:
        return None
    return InstallEvent(
        action=action,
        scope=view.scope,
        source=kind,
        tenant_id=view.tenant_id or "",
        service_url=_str(activity.get("serviceUrl")) or "",
        bot_id=_str(view.recipient.get("id")) or "",
        conversation_id=_str(view.conversation.get("id")),
        team_id=_str(view.team.get("id")),
        aad_group_id=_str(view.team.get("aadGroupId")),
        team_name=_str(view.team.get("name")),
        channel_id=view.channel_id,
        channel_name=_str(view.channel.get("name")),
        user_id=_str(view.sender.get("id")),
        user_aad_object_id=_str(view.sender.get("aadObjectId")),
        channels=MappingProxyType(dict(channels)) if channels else MappingProxyType({}),
    )


def channel_event(activity: Mapping[str, Any]) -> ChannelEvent | None:
    """A team/channel change from a `conversationUpdate` (channelCreated, teamDeleted...), or None."""
    if activity.get("type") != "conversationUpdate":
        return None
    view = _View(activity)
    kind = _str(view.channel_data.get("eventType"))
    if kind not in CHANNEL_EVENT_KINDS:
        return None
    return ChannelEvent(
        kind=kind,
        tenant_id=view.tenant_id or "",
        service_url=_str(activity.get("serviceUrl")) or "",
        team_id=_str(view.team.get("id")),
        aad_group_id=_str(view.team.get("aadGroupId")),
        team_name=_str(view.team.get("name")),
        channel_id=_str(view.channel.get("id")),
        channel_name=_str(view.channel.get("name")),
    )


def card_submit(activity: Mapping[str, Any]) -> CardSubmit | None:
    """An Action.Submit: a `message` whose `value` is an object (Teams drops non-object data). Else None."""
    value = activity.get("value")
    if activity.get("type") != "message" or not isinstance(value, dict):
        return None
    view = _View(activity)
    return CardSubmit(value=MappingProxyType(dict(value)), reply_to_id=_str(activity.get("replyToId")),
                      activity_id=_str(activity.get("id")), **view.common())


def card_execute(activity: Mapping[str, Any]) -> CardExecute:
    """An Action.Execute invoke (`adaptiveCard/action`). Raises ValueError when `value.action` is not one."""
    value = _obj(activity.get("value"))
    action = _obj(value.get("action"))
    if action.get("type") != "Action.Execute":
        raise ValueError(f"not an Action.Execute: {action.get('type')!r}")
    data = action.get("data")
    view = _View(activity)
    auth = _obj(value.get("authentication"))
    state = value.get("state")
    return CardExecute(verb=_str(action.get("verb")), data=MappingProxyType(dict(_obj(data))),
                       action_id=_str(action.get("id")), trigger=_str(value.get("trigger")),
                       reply_to_id=_str(activity.get("replyToId")), auth_token=_str(auth.get("token")),
                       auth_state=str(state) if isinstance(state, (str, int)) and str(state) else None,
                       auth_id=_str(auth.get("id")), **view.common())


def incoming_message(activity: Mapping[str, Any]) -> IncomingMessage | None:
    """A text `message` to the bot (not a card submit), or None."""
    if activity.get("type") != "message" or isinstance(activity.get("value"), dict):
        return None
    view = _View(activity)
    text = activity.get("text")
    bot_id = view.recipient.get("id")
    mentions_bot = any(_obj(e).get("type") == "mention" and _obj(_obj(e).get("mentioned")).get("id") == bot_id
                       for e in activity.get("entities") or []) if bot_id else False
    html = next((_obj(a).get("content") for a in activity.get("attachments") or []
                 if _obj(a).get("contentType") == "text/html" and isinstance(_obj(a).get("content"), str)), None)
    return IncomingMessage(text=text if isinstance(text, str) else "",
                           activity_id=_str(activity.get("id")), reply_to_id=_str(activity.get("replyToId")),
                           mentions_bot=mentions_bot, html=html,
                           from_bot=str(view.sender.get("id") or "").startswith("28:"), **view.common())


def card_message(card: Mapping[str, Any] | None, text: str | None = None) -> dict[str, Any]:
    """The wire JSON of a message activity carrying `card` (an Adaptive Card) and/or `text`.

    The card goes as is, `msteams.entities` (its mentions) included, so an update in place keeps its mentions.
    Mentions the card declares whose `<at>...</at>` also appears in `text` are repeated as activity entities,
    which is how Teams wants mentions in message text.
    """
    activity: dict[str, Any] = {"type": "message"}
    if text:
        activity["text"] = text
    if card is not None:
        activity["attachments"] = [{"contentType": ADAPTIVE_CARD, "content": dict(card)}]
    if text and card is not None:
        entities = _obj(card.get("msteams")).get("entities") or []
        mentions = [dict(e) for e in entities
                    if isinstance(e, dict) and e.get("type") == "mention" and isinstance(e.get("text"), str)
                    and e["text"] in text]
        if mentions:
            activity["entities"] = mentions
    return activity


def login_request(req: LoginRequest) -> dict[str, Any]:
    """The loginRequest body (sso-obo.md §1.2): OAuthCard keys, a non-empty connectionName and a sign-in button;
    `tokenExchangeResource` only when SSO is wanted (without it Teams goes straight to the manual sign-in)."""
    value: dict[str, Any] = {
        "text": req.text, "connectionName": req.connection_name,
        "buttons": [{"type": "signin", "title": "Sign-In", "text": "Sign-In", "value": req.sign_in_url}]}
    if req.exchange_id:
        value["tokenExchangeResource"] = {"id": req.exchange_id, "uri": req.exchange_uri}
    return {"statusCode": 401, "type": LOGIN_REQUEST, "value": value}


def invoke_body(result: Mapping[str, Any] | str | LoginRequest | InvokeFailure | None) -> dict[str, Any]:
    """The body of our answer to an Action.Execute invoke: a card that replaces the user's view, or a text, or a
    loginRequest, or an error."""
    if isinstance(result, LoginRequest):
        return login_request(result)
    if isinstance(result, InvokeFailure):
        return {"statusCode": result.status, "type": f"application/vnd.microsoft.error.{result.kind}",
                "value": {"code": str(result.status), "message": result.message}}
    if isinstance(result, Mapping):
        return {"statusCode": 200, "type": ADAPTIVE_CARD, "value": dict(result)}
    return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": result or ""}


def invoke_error(status: int, code: str, message: str) -> dict[str, Any]:
    """An Universal Actions error answer (Teams shows a generic failure; never put exception text here)."""
    return {"statusCode": status, "type": "application/vnd.microsoft.error",
            "value": {"code": code, "message": message}}
