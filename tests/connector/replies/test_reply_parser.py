"""The reply parser: the verb opens the reply (after mentions), the rest is the comment, words per language."""

from __future__ import annotations

import pytest

from connector.replies.config import ReplySettings, ReplyWords
from connector.replies.parser import parse_reply

WORDS = ReplyWords()


@pytest.mark.parametrize("body, verb, comment", [
    ("approve", "approve", ""),
    ("Approved – ok to pay", "approve", "ok to pay"),
    ("<p>reject: wrong cost centre</p>", "reject", "wrong cost centre"),
    ("<p><at id=\"0\">ML Connector</at>&nbsp;Genehmigt, passt</p>", "approve", "passt"),
    ("REJECTED!!! &amp; never again", "reject", "& never again"),
    ("decline - duplicate invoice", "reject", "duplicate invoice"),
    ("ok to approve", "approve", ""),
])
def test_the_verb_opens_the_reply_and_the_rest_is_the_comment(body, verb, comment) -> None:
    parsed = parse_reply(body, WORDS)
    assert (parsed.verb, parsed.comment) == (verb, comment)


@pytest.mark.parametrize("body", ["maybe tomorrow", "I would not approve this", "approvedly", "rejection letter",
                                  "", "<p></p>", "👍"])
def test_anything_else_is_ambiguous(body) -> None:
    assert parse_reply(body, WORDS).verb is None


def test_a_mention_of_the_bot_is_noticed_by_name_or_by_the_caller() -> None:
    body = "<at>ML Connector</at> maybe tomorrow"
    assert parse_reply(body, WORDS, bot_names=("ML Connector",)).names_bot is True
    assert parse_reply(body, WORDS, bot_names=("Other",)).names_bot is False
    assert parse_reply("maybe", WORDS, mentions_bot=True).names_bot is True


def test_the_words_are_configuration() -> None:
    words = ReplySettings.model_validate({"words": {"approve": ["Godkänn"], "reject": ["Avslå"]}}).words
    assert parse_reply("godkänn – ok", words).verb == "approve"
    assert parse_reply("avslå: fel kostnadsställe", words).comment == "fel kostnadsställe"
    assert parse_reply("approve", words).verb is None
