"""Every error that leaves bot/. Foreign errors (botbuilder, msrest, requests, aiohttp) are translated here, once.

    BotError
    ├── BotAuthError(reason)                     an inbound request we refuse (the messages endpoint answers 401)
    ├── TeamsError(status, code, sub_code, message)   the Bot Connector said no
    │   ├── TeamsBadRequest                      400: the service's message says what it disliked
    │   ├── TeamsUnauthorized                    401 even after one forced token refresh
    │   ├── TeamsForbidden(reason)               403: app removed / blocked / not installed for the user
    │   ├── TeamsNotFound                        404: channel, conversation or message deleted
    │   ├── CardTooLarge                         413: the activity is over Teams' ~100 KB limit
    │   ├── TeamsThrottled(retry_after)          429 whose wait is longer than we sit out inline
    │   └── TeamsUnavailable(retry_after)        412, 5xx, timeout, connection failure or no token (transient)
    └── GraphError(status, code, message)        Microsoft Graph said no
        ├── GraphBadRequest                      400
        ├── GraphUnauthorized                    401 even after one forced token refresh
        ├── GraphForbidden(permission)           403, naming the permission when Graph (or the call) says which
        ├── GraphNotFound                        404 where "not found" is not an answer (e.g. installing an app)
        ├── GraphThrottled(retry_after)          429 whose wait is longer than we sit out inline
        └── GraphUnavailable(retry_after)        5xx, timeout or connection failure after retries (transient)

Transient errors carry `transient = True` and `retry_after: float` (seconds) so the pipeline can reschedule
without listing classes. This module knows nothing about HTTP libraries.
"""

from __future__ import annotations

__all__ = [
    "BotAuthError",
    "BotError",
    "CardTooLarge",
    "GraphBadRequest",
    "GraphError",
    "GraphForbidden",
    "GraphNotFound",
    "GraphThrottled",
    "GraphUnauthorized",
    "GraphUnavailable",
    "TeamsBadRequest",
    "TeamsError",
    "TeamsForbidden",
    "TeamsNotFound",
    "TeamsThrottled",
    "TeamsUnauthorized",
    "TeamsUnavailable",
]


class BotError(Exception):
    """Root of every error raised by bot/."""

    transient: bool = False


class BotAuthError(BotError):
    """An inbound Bot Framework request whose token we refuse (missing, malformed, expired, wrong key...).

    Args:
        reason: why, for the log only; the HTTP answer never carries it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TeamsError(BotError):
    """An error answer from the Bot Connector (or no answer at all).

    Args:
        status: HTTP status, or None when the service could not be reached.
        code: `error.code` (e.g. "BadSyntax", "ConversationNotFound") or Teams' numeric `errorCode` as text.
        sub_code: Teams' `subCode` (e.g. "MessageWritesBlocked") when the body has one.
        message: the service's message.
        target: "METHOD /v3/..." to say which call failed.
    """

    def __init__(self, status: int | None, code: str = "", message: str = "", *, sub_code: str = "",
                 target: str | None = None) -> None:
        self.status = status
        self.code = code
        self.sub_code = sub_code
        self.message = message
        self.target = target
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "Teams"
        for part in (self.code, self.sub_code):
            if part:
                head += f" {part}"
        on = f" on {self.target}" if self.target else ""
        return f"{head}{on}: {self.message or 'no message'}"


class TeamsBadRequest(TeamsError):
    """400: the Connector refused the request; `message` is the service's explanation."""


class TeamsUnauthorized(TeamsError):
    """401 even after one forced token refresh: the bot's credentials are wrong for this cloud/tenant."""


class TeamsForbidden(TeamsError):
    """403: the app was removed or blocked, or is not installed for the user (personal scope).

    `reason` is the most specific thing Teams said (`subCode`, else code, else message).
    """

    @property
    def reason(self) -> str:
        return self.sub_code or self.code or self.message or "forbidden"


class TeamsNotFound(TeamsError):
    """404: the channel, conversation or message no longer exists."""


class CardTooLarge(TeamsError):
    """413: the activity (card + text + mentions) is over Teams' message size limit."""


class TeamsThrottled(TeamsError):
    """429 that we did not sit out inline.

    Args:
        retry_after: seconds to wait before trying again (Retry-After, or our backoff when it was missing).
    """

    transient = True

    def __init__(self, retry_after: float, status: int | None = 429, code: str = "", message: str = "", *,
                 sub_code: str = "", target: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, message or "Too many requests", sub_code=sub_code, target=target)

    def _describe(self) -> str:
        return f"{super()._describe()} (retry after {self.retry_after:g} s)"


class TeamsUnavailable(TeamsError):
    """412, 5xx, timeout, connection failure, or no token for the Connector: try again later.

    Args:
        retry_after: seconds to wait (Retry-After when the service sent one, else our backoff).
    """

    transient = True

    def __init__(self, retry_after: float, status: int | None = None, code: str = "", message: str = "", *,
                 sub_code: str = "", target: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, message or "Teams unavailable", sub_code=sub_code, target=target)

    def _describe(self) -> str:
        return f"{super()._describe()} (retry after {self.retry_after:g} s)"


class GraphError(BotError):
    """An error answer from Microsoft Graph, parsed from its `{"error": {"code", "message"}}` body.

    Args:
        status: HTTP status, or None when Graph could not be reached.
        code: `error.code` (e.g. "Request_ResourceNotFound", "Authorization_RequestDenied").
        message: `error.message`.
        target: "METHOD /users/..." without the query string.
    """

    def __init__(self, status: int | None, code: str = "", message: str = "", *,
                 target: str | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "Graph"
        if self.code:
            head += f" {self.code}"
        on = f" on {self.target}" if self.target else ""
        return f"{head}{on}: {self.message or 'no message'}"


class GraphBadRequest(GraphError):
    """400: Graph refused the request (bad filter, bad id)."""


class GraphUnauthorized(GraphError):
    """401 even after one forced token refresh."""


class GraphForbidden(GraphError):
    """403: the app lacks an application permission (or admin consent).

    Args:
        permission: the permission Graph named in its message, else the one this call is documented to need
            (e.g. "User.Read.All"), else None.
    """

    def __init__(self, status: int | None = 403, code: str = "", message: str = "", *,
                 permission: str | None = None, target: str | None = None) -> None:
        self.permission = permission
        super().__init__(status, code, message, target=target)

    def _describe(self) -> str:
        text = super()._describe()
        return f"{text} (needs {self.permission})" if self.permission else text


class GraphNotFound(GraphError):
    """404 where absence is an error (installing an app for a user that does not exist)."""


class GraphThrottled(GraphError):
    """429 whose Retry-After is longer than we wait inline, or which outlasted our attempts.

    Args:
        retry_after: seconds to wait before trying again.
    """

    transient = True

    def __init__(self, retry_after: float, code: str = "", message: str = "", *,
                 target: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(429, code, message or "Too many requests", target=target)

    def _describe(self) -> str:
        return f"{super()._describe()} (retry after {self.retry_after:g} s)"


class GraphUnavailable(GraphError):
    """5xx, timeout or connection failure after retries.

    Args:
        retry_after: seconds to wait before trying again.
    """

    transient = True

    def __init__(self, retry_after: float, status: int | None = None, code: str = "", message: str = "", *,
                 target: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(status, code, message or "Graph unavailable", target=target)

    def _describe(self) -> str:
        return f"{super()._describe()} (retry after {self.retry_after:g} s)"
