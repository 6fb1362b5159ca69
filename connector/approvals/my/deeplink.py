"""Teams deep links to the card a work item belongs to, built from the recorded conversation and message ids.

Formats (Microsoft Learn, "Deep link to Teams chat": navigate to a channel conversation / to chat messages):
  channel message: https://teams.microsoft.com/l/message/<channelId>/<messageId>?tenantId=<tenantId>
                   &groupId=<groupId>&parentMessageId=<parentMessageId>&teamName=<teamName>
                   &channelName=<channelName>&createdTime=<createdTime>
  chat message:    https://teams.microsoft.com/l/message/<chatId>/<messageId>?context={"contextType":"chat"}
A channel thread's conversation id is `<channelId>;messageid=<root message id>`; the root is the parentMessageId of
every reply in it (and its own). Optional parameters we do not know are left out rather than guessed.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from connector.store import Install, PostedCard

TEAMS = "https://teams.microsoft.com"
_PREFERENCE = {"thread": 0, "reply": 1, "personal": 2}


def split_thread(conversation_id: str) -> tuple[str, str | None]:
    """`19:x@thread.tacv2;messageid=123` -> ("19:x@thread.tacv2", "123")."""
    channel, sep, rest = conversation_id.partition(";messageid=")
    return channel, (rest or None) if sep else None


def message_link(card: PostedCard, team: Install | None, *, base: str = TEAMS) -> str | None:
    """The deep link to one posted card, or None for kinds that have no message of their own (digest rows)."""
    if card.kind in ("thread", "reply"):
        channel, root = split_thread(card.conversation_id)
        channel = card.channel_id or channel
        params: dict[str, str] = {}
        if team is not None:
            params["tenantId"] = team.tenant_id
            if team.aad_group_id:
                params["groupId"] = team.aad_group_id
        params["parentMessageId"] = root or card.activity_id
        if team is not None and team.team_name:
            params["teamName"] = team.team_name
        name = team.channels.get(channel) if team is not None else None
        if name:
            params["channelName"] = name
        if card.posted_at:
            params["createdTime"] = str(int(card.posted_at * 1000))
        return f"{base}/l/message/{quote(channel, safe='')}/{quote(card.activity_id, safe='')}?{urlencode(params)}"
    if card.kind == "personal":
        context = urlencode({"context": '{"contextType":"chat"}'})
        return f"{base}/l/message/{quote(card.conversation_id, safe='')}/{quote(card.activity_id, safe='')}?{context}"
    return None


def best_card(cards: list[PostedCard]) -> PostedCard | None:
    """The copy to link to: the channel card (thread root, then a thread reply), else the 1:1 copy."""
    ranked = sorted((c for c in cards if c.kind in _PREFERENCE), key=lambda c: (_PREFERENCE[c.kind], c.posted_at))
    return ranked[0] if ranked else None


def team_of(card: PostedCard, installs: list[Install]) -> Install | None:
    """The team install whose channels hold the card's channel."""
    channel = card.channel_id or split_thread(card.conversation_id)[0]
    for install in installs:
        if install.scope == "team" and (channel in install.channels or install.team_id == channel):
            return install
    return None
