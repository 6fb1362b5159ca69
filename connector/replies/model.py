"""TypedReply: one message that may decide an approval, whichever way it reached us (Graph, the bot feed, resync).

It is what the reply inbox stores (as a dict) once the message itself is known; a Graph notification only names
the message, so its inbox entry holds the ids until the worker has fetched it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

_QUOTED = re.compile(r"<blockquote[^>]*itemtype=\"http://schema\.skype\.com/Reply\"[^>]*itemid=\"(\d+)\"",
                     re.IGNORECASE)


@dataclass(frozen=True)
class TypedReply:
    message_id: str  # the Teams message id (the dedup key)
    root_id: str | None  # channel: the thread's root message; 1:1: the message replied to (the card), if any
    conversation_id: str  # where an answer goes: "<channel>;messageid=<root>" or the 1:1 chat id
    conversation_type: str  # "channel" | "personal"
    body: str
    content_type: str = "html"
    user_object_id: str | None = None  # from.user.id (Graph) / from.aadObjectId (bot)
    user_name: str | None = None
    from_app: bool = False  # a bot or app sent it (ours included)
    mentions_bot: bool | None = None  # known from the activity's mention entities; None: match by name
    service_url: str | None = None
    tenant_id: str | None = None
    web_url: str | None = None
    source: str = "graph"  # "graph" | "bot" | "resync"
    created_at: float = 0.0
    channel_id: str | None = None
    team_id: str | None = None  # the team's Entra group id (Graph)

    def to_payload(self) -> dict[str, Any]:
        return {"message": asdict(self)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "TypedReply | None":
        data = payload.get("message")
        if not isinstance(data, dict):
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def quoted_message_id(body: str) -> str | None:
    """The id of the message a Teams 1:1 reply quotes (`<blockquote itemtype=".../Reply" itemid="...">`)."""
    found = _QUOTED.search(body or "")
    return found.group(1) if found else None


def strip_quote(body: str) -> str:
    """The reply without the quoted message (whose text must not be parsed as the verb)."""
    return re.sub(r"<blockquote\b.*?</blockquote>", " ", body or "", flags=re.IGNORECASE | re.DOTALL)
