"""incoming_message carries what the typed-reply feed needs: whether the bot is @mentioned (RSC delivers every
channel message), the replied-to message, the HTML body, and whether a bot sent it."""

from __future__ import annotations

from bot.activities import incoming_message

BOT = "28:5f0c7f1e-8a7c-4b7e-9f5e-0d2a1c3b4e5f"


def activity(**kw):
    a = {"type": "message", "id": "1764150000042", "text": "reject: wrong cost centre", "serviceUrl": "https://smba/",
         "from": {"id": "29:1abc", "aadObjectId": "0b5e0003-3c2d-4e1f-8a9b-000000000003", "name": "Megan Bowen"},
         "recipient": {"id": BOT, "name": "ML Connector"},
         "conversation": {"id": "19:c@thread.tacv2;messageid=1764150000001", "conversationType": "channel"},
         "channelData": {"channel": {"id": "19:c@thread.tacv2"}, "team": {"id": "19:t@thread.tacv2"},
                         "tenant": {"id": "t"}},
         "entities": [{"type": "clientInfo", "locale": "en-US"}]}
    a.update(kw)
    return a


def test_a_channel_reply_without_a_mention_is_marked_so() -> None:
    m = incoming_message(activity(replyToId="1764150000001", attachments=[
        {"contentType": "text/html", "content": "<p>reject: wrong cost centre</p>"}]))
    assert m is not None and m.mentions_bot is False and m.from_bot is False
    assert m.reply_to_id == "1764150000001" and m.html == "<p>reject: wrong cost centre</p>"
    assert m.conversation_id.endswith(";messageid=1764150000001") and m.activity_id == "1764150000042"


def test_a_mention_of_the_bot_and_a_bot_sender_are_recognised() -> None:
    mention = {"type": "mention", "text": "<at>ML Connector</at>", "mentioned": {"id": BOT, "name": "ML Connector"}}
    other = {"type": "mention", "text": "<at>Adele</at>", "mentioned": {"id": "29:adele", "name": "Adele"}}
    assert incoming_message(activity(entities=[mention])).mentions_bot is True  # type: ignore[union-attr]
    assert incoming_message(activity(entities=[other])).mentions_bot is False  # type: ignore[union-attr]
    assert incoming_message(activity(**{"from": {"id": "28:other-bot"}})).from_bot is True  # type: ignore[union-attr]
