"""Our own dataclasses crossing bot/'s boundary: settings in, Teams events out, posted-message references back.

Plain values only: no botbuilder type ever appears here, so connector/ never learns which bot SDK we use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "APP_TYPES",
    "BotHandlers",
    "BotSettings",
    "CardExecute",
    "CardSubmit",
    "ChannelEvent",
    "GraphUser",
    "IncomingMessage",
    "InstallEvent",
    "InvokeFailure",
    "LoginRequest",
    "PostedRef",
]

APP_TYPES = ("SingleTenant", "MultiTenant", "UserAssignedMSI")

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class BotSettings:
    """How the bot talks to the Bot Framework, as plain values read once from our config.

    Defaults are the public cloud's (teams.md §1.5); `BotSettings.us_gov()` gives the US Government values.
    The login URL and OAuth scope are handed to botbuilder for completeness, but the bot's outbound token always
    comes from our token callable (see bot/sdk.py), never from botbuilder's own MSAL.

    Args:
        app_id: the bot's Microsoft App ID (the `aud` of inbound tokens).
        app_type: "SingleTenant" (new bots), "MultiTenant" (legacy) or "UserAssignedMSI".
        tenant_id: the bot's home tenant; required for SingleTenant and UserAssignedMSI.
        channel_service: botbuilder's CHANNEL_SERVICE (sovereign-cloud marker); optional.
        to_bot_from_channel_token_issuer: the `iss` inbound channel tokens must carry.
        to_bot_from_channel_openid_metadata_url: where the channel's signing keys are published.
        to_channel_from_bot_login_url: token endpoint for the bot's outbound token (informational, see above).
        to_channel_from_bot_oauth_scope: audience of the bot's outbound token (the Connector).
        oauth_url: the Bot Framework token service (user SSO), optional.
        validate_authority: botbuilder's VALIDATE_AUTHORITY.
        connector_timeout: seconds for one Connector HTTP call (botbuilder's default is 100).
        auth_timeout: seconds we wait for inbound token validation, OpenID metadata fetch included.
        allowed_tenants: tenants besides `tenant_id` whose activities are accepted. Activities from any other
            tenant are refused (403) before a handler sees them; with neither set (a MultiTenant bot with no home
            tenant), every tenant is accepted.
    """

    app_id: str
    app_type: str = "SingleTenant"
    tenant_id: str | None = None
    channel_service: str | None = None
    to_bot_from_channel_token_issuer: str = "https://api.botframework.com"
    to_bot_from_channel_openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    to_channel_from_bot_login_url: str = "https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token"
    to_channel_from_bot_oauth_scope: str = "https://api.botframework.com"
    oauth_url: str | None = None
    validate_authority: bool = True
    connector_timeout: float = 30.0
    auth_timeout: float = 15.0
    allowed_tenants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.allowed_tenants, (str, bytes)) or not all(
                isinstance(t, str) and t.strip() for t in self.allowed_tenants):
            raise ValueError("BotSettings.allowed_tenants is a list of tenant ids")
        object.__setattr__(self, "allowed_tenants", tuple(self.allowed_tenants))
        if not self.app_id:
            raise ValueError("BotSettings.app_id is required")
        if self.app_type not in APP_TYPES:
            raise ValueError(f"BotSettings.app_type must be one of {', '.join(APP_TYPES)}, not {self.app_type!r}")
        if self.app_type != "MultiTenant" and not self.tenant_id:
            raise ValueError(f"BotSettings.tenant_id is required for app_type {self.app_type}")

    @property
    def tenants(self) -> frozenset[str]:
        """The tenants whose activities the bot accepts (lower case); empty = any tenant."""
        return frozenset(t.strip().lower() for t in (self.tenant_id, *self.allowed_tenants) if t and t.strip())

    @property
    def bot_id(self) -> str:
        """The bot's Teams id, `28:<app id>`."""
        return f"28:{self.app_id}"

    @classmethod
    def us_gov(cls, app_id: str, tenant_id: str | None = None, **overrides: Any) -> BotSettings:
        """Settings for the US Government cloud (GCC High), from botbuilder's government constants."""
        values: dict[str, Any] = {
            "channel_service": "https://botframework.azure.us",
            "to_bot_from_channel_token_issuer": "https://api.botframework.us",
            "to_bot_from_channel_openid_metadata_url":
                "https://login.botframework.azure.us/v1/.well-known/openidconfiguration",
            "to_channel_from_bot_login_url":
                f"https://login.microsoftonline.us/{tenant_id or 'MicrosoftServices.onmicrosoft.us'}",
            "to_channel_from_bot_oauth_scope": "https://api.botframework.us",
            "oauth_url": "https://api.botframework.azure.us",
        }
        values.update(overrides)
        return cls(app_id=app_id, tenant_id=tenant_id, **values)


@dataclass(frozen=True)
class InstallEvent:
    """The app was installed into (or removed from) a team, a personal scope or a group chat.

    Teams sends both an `installationUpdate` and a `conversationUpdate` for one team install, so a handler sees
    two of these: treat them as idempotent upserts (by team id / user / conversation).

    Args:
        action: "add" | "remove" | "add-upgrade" | "remove-upgrade" (upgrades keep the app installed).
        scope: "team" | "personal" | "groupChat".
        source: the activity type that carried it ("installationUpdate" or "conversationUpdate").
        channels: channel id -> name, from the Connector (best effort, team installs only).
    """

    action: str
    scope: str
    source: str
    tenant_id: str
    service_url: str
    bot_id: str
    conversation_id: str | None = None
    team_id: str | None = None
    aad_group_id: str | None = None
    team_name: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    user_id: str | None = None
    user_aad_object_id: str | None = None
    channels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    @property
    def installed(self) -> bool:
        return self.action != "remove"


@dataclass(frozen=True)
class ChannelEvent:
    """A change to a team the app lives in.

    Args:
        kind: Teams' eventType: channelCreated | channelRenamed | channelDeleted | channelRestored |
            teamRenamed | teamDeleted | teamHardDeleted | teamArchived | teamUnarchived | teamRestored.
    """

    kind: str
    tenant_id: str
    service_url: str
    team_id: str | None = None
    aad_group_id: str | None = None
    team_name: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None


@dataclass(frozen=True)
class CardSubmit:
    """An Action.Submit on one of our cards (a `message` activity with `value`).

    Args:
        value: the action's `data` merged with the card's input values.
        reply_to_id: id of the message holding the card (the one to update in place).
        activity_id: id of the submit activity itself.
    """

    value: Mapping[str, Any]
    reply_to_id: str | None
    conversation_id: str
    service_url: str
    tenant_id: str | None
    activity_id: str | None = None
    conversation_type: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    user_aad_object_id: str | None = None
    user_name: str | None = None


@dataclass(frozen=True)
class CardExecute:
    """An Action.Execute (Universal Actions `adaptiveCard/action` invoke) on one of our cards.

    Args:
        verb: the action's verb.
        data: the action's data merged with the card's inputs.
        trigger: "manual" (a click) or "automatic" (a refresh).
        reply_to_id: id of the message holding the card, when Teams sends it.
    """

    verb: str | None
    data: Mapping[str, Any]
    conversation_id: str
    service_url: str
    tenant_id: str | None
    action_id: str | None = None
    trigger: str | None = None
    reply_to_id: str | None = None
    conversation_type: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    user_aad_object_id: str | None = None
    user_name: str | None = None
    # Universal Actions sign-in (sso-obo.md §1.2): the retried press carries the SSO token, or a `state` code after
    # a manual sign-in. Kept out of repr so a logged press never shows a credential.
    auth_token: str | None = field(default=None, repr=False)
    auth_state: str | None = field(default=None, repr=False)
    auth_id: str | None = None  # echoes tokenExchangeResource.id (unconfirmed)


@dataclass(frozen=True)
class LoginRequest:
    """An answer to an Action.Execute that asks Teams to sign the user in and press again (loginRequest, 401).

    Args:
        text: what the sign-in asks ("Sign in to approve as yourself in Dynamics 365").
        connection_name: required non-empty by Teams; the Bot Framework OAuth connection when one is used.
        exchange_id: tokenExchangeResource.id (Teams honours only this for SSO); None asks for the manual sign-in.
        exchange_uri: tokenExchangeResource.uri (the App ID URI, api://botid-<app id>).
        sign_in_url: the Sign-In button's URL (the fallback when the client cannot sign in silently).
    """

    text: str
    connection_name: str
    exchange_id: str | None
    exchange_uri: str
    sign_in_url: str


@dataclass(frozen=True)
class InvokeFailure:
    """An Universal Actions error answer: 412 preconditionFailed (token exchange failed: Teams falls back to the
    manual sign-in) or 401 invalidAuthCode. `message` is shown to nobody but the client; no secrets in it."""

    status: int
    kind: str  # "preconditionFailed" | "invalidAuthCode"
    message: str


@dataclass(frozen=True)
class IncomingMessage:
    """A plain text message to the bot (a channel @mention or a 1:1 chat), for the optional `on_message`."""

    text: str
    conversation_id: str
    service_url: str
    tenant_id: str | None
    activity_id: str | None = None
    conversation_type: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None
    user_aad_object_id: str | None = None
    user_name: str | None = None
    reply_to_id: str | None = None  # the message this one replies to (Teams sets it on thread replies)
    # an @mention entity names the bot; activities.incoming_message always sets it. The default is what a channel
    # message meant before RSC: Teams only delivered those that @mentioned the bot.
    mentions_bot: bool = True
    html: str | None = None  # the text/html attachment Teams adds (1:1 quotes: the replied-to message's id)
    from_bot: bool = False  # sent by a bot or app (from.id "28:...")


@dataclass(frozen=True)
class PostedRef:
    """Where a message we posted lives: enough to reply to its thread or update it in place."""

    conversation_id: str
    activity_id: str
    service_url: str


@dataclass(frozen=True)
class GraphUser:
    """The few user properties we read from Graph."""

    id: str
    display_name: str | None
    upn: str | None
    mail: str | None


@runtime_checkable
class BotHandlers(Protocol):
    """What the bot calls for each inbound Teams activity (connector/ implements it).

    Exceptions raised here are logged by the bot's turn error handler; Teams is never shown their text.
    An optional `async on_message(IncomingMessage) -> str | dict | None` answers plain text messages
    (a reply text or card); without it they are ignored.
    """

    async def on_install(self, event: InstallEvent) -> None:
        """The app was added (or upgraded) in a team, personal scope or group chat. May be called twice."""

    async def on_uninstall(self, event: InstallEvent) -> None:
        """The app was removed."""

    async def on_channel_event(self, event: ChannelEvent) -> None:
        """A channel or the team changed (created, renamed, deleted, archived...)."""

    async def on_submit(self, submit: CardSubmit) -> str | dict | None:
        """An Action.Submit. Return a card (dict) to update the card in place, a text to reply in the thread,
        or None to do nothing."""

    async def on_execute(self, execute: CardExecute) -> dict | str | LoginRequest | InvokeFailure:
        """An Action.Execute. Return the card that replaces it for this user (dict), or a short text, or a
        LoginRequest (Teams signs the user in and presses again), or an InvokeFailure."""
