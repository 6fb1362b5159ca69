"""Typed approval replies: from a Teams message body (HTML or text) to a verb and a comment.

"approve", "Approved – ok to pay", "reject: wrong cost centre", "<at>Connector</at> genehmigt" all parse; the verb
must open the reply (after any mentions), so "I would not approve this" stays ambiguous on purpose: a decision
sent to F&O is not taken back, and a word in the middle of a sentence is not a decision.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from connector.replies.config import ReplyWords

_AT = re.compile(r"<at\b[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SEPARATORS = " \t\r\n:;,.!-–—"
MAX_COMMENT = 1000


@dataclass(frozen=True)
class ParsedReply:
    verb: str | None  # "approve" | "reject" | None (ambiguous)
    comment: str
    names_bot: bool  # the reply @mentions the bot (an ambiguity is then answered)
    text: str  # the plain text, mentions removed


def plain_text(body: str, *, content_type: str = "html") -> tuple[str, list[str]]:
    """The message's text without HTML and mentions, and the names it mentioned."""
    mentioned = [html.unescape(_TAG.sub("", m)).strip() for m in _AT.findall(body)]
    text = _AT.sub(" ", body)
    if content_type.lower() == "html" or "<" in text:
        text = _BREAK.sub("\n", text)
        text = _TAG.sub("", text)
        text = html.unescape(text)
    return " ".join(text.replace("\xa0", " ").split()), mentioned


def parse_reply(body: str, words: ReplyWords, *, bot_names: tuple[str, ...] = (), content_type: str = "html",
                mentions_bot: bool | None = None) -> ParsedReply:
    """The verb (the longest configured word that opens the reply, case-insensitively) and the rest as comment.

    `mentions_bot` overrides the name match when the caller knows it (an activity's mention entities)."""
    text, mentioned = plain_text(body, content_type=content_type)
    names = {n.lower() for n in bot_names if n}
    names_bot = mentions_bot if mentions_bot is not None else any(m.lower() in names for m in mentioned)
    lowered = text.lower()
    best: tuple[int, str] | None = None
    for verb, candidates in (("approve", words.approve), ("reject", words.reject)):
        for word in candidates:
            if _opens(lowered, word) and (best is None or len(word) > best[0]):
                best = (len(word), verb)
    if best is None:
        return ParsedReply(verb=None, comment="", names_bot=names_bot, text=text)
    comment = text[best[0]:].strip(_SEPARATORS).strip()
    return ParsedReply(verb=best[1], comment=comment[:MAX_COMMENT], names_bot=names_bot, text=text)


def _opens(text: str, word: str) -> bool:
    """`word` is the reply's first word(s): followed by the end, a space or punctuation, not more letters."""
    if not text.startswith(word):
        return False
    rest = text[len(word):]
    return not rest or rest[0] in _SEPARATORS or not rest[0].isalnum()


HOW_TO_REPLY = ("To decide by replying, start your reply with one of: {approve} (approve) or {reject} (reject), "
                "optionally followed by a comment, e.g. \"reject: wrong cost centre\".")


def how_to_reply(words: ReplyWords) -> str:
    return HOW_TO_REPLY.format(approve=", ".join(f'"{w}"' for w in words.approve[:3]),
                               reject=", ".join(f'"{w}"' for w in words.reject[:3]))
