"""bot/: everything that talks to Teams — the bot (inbound activities), proactive posting, Microsoft Graph.

A leaf package: it imports nothing of ours and takes an aiohttp session, token callables and plain values as
arguments. Every botbuilder import lives in bot/sdk.py; no botbuilder, msrest or aiohttp type or exception
crosses this surface. connector/ uses only what `__all__` lists.
"""

from bot.errors import (
    BotAuthError,
    BotError,
    CardTooLarge,
    GraphBadRequest,
    GraphError,
    GraphForbidden,
    GraphNotFound,
    GraphThrottled,
    GraphUnauthorized,
    GraphUnavailable,
    TeamsBadRequest,
    TeamsError,
    TeamsForbidden,
    TeamsNotFound,
    TeamsThrottled,
    TeamsUnauthorized,
    TeamsUnavailable,
)
from bot.graph import GraphClient
from bot.models import (
    BotHandlers,
    BotSettings,
    CardExecute,
    CardSubmit,
    ChannelEvent,
    GraphUser,
    IncomingMessage,
    InstallEvent,
    InvokeFailure,
    LoginRequest,
    PostedRef,
)
from bot.posting import TeamsPoster
from bot.retry import RetryPolicy
from bot.sdk import BotRuntime, BotTrust, make_messages_handler
from bot.usertoken import SsoUser, UserTokenRejected, UserTokenValidator

__all__ = [
    "BotAuthError",
    "BotError",
    "BotHandlers",
    "BotRuntime",
    "BotTrust",
    "BotSettings",
    "CardExecute",
    "CardSubmit",
    "CardTooLarge",
    "ChannelEvent",
    "GraphBadRequest",
    "GraphClient",
    "GraphError",
    "GraphForbidden",
    "GraphNotFound",
    "GraphThrottled",
    "GraphUnauthorized",
    "GraphUnavailable",
    "GraphUser",
    "IncomingMessage",
    "InstallEvent",
    "InvokeFailure",
    "LoginRequest",
    "PostedRef",
    "RetryPolicy",
    "SsoUser",
    "TeamsBadRequest",
    "TeamsError",
    "TeamsForbidden",
    "TeamsNotFound",
    "TeamsPoster",
    "TeamsThrottled",
    "TeamsUnauthorized",
    "TeamsUnavailable",
    "UserTokenRejected",
    "UserTokenValidator",
    "make_messages_handler",
]
