"""Proactive posting: the wire bodies the Connector receives, the retry policy on fake time, error translation."""

from __future__ import annotations

import pytest

from bot import (
    CardTooLarge,
    PostedRef,
    TeamsBadRequest,
    TeamsError,
    TeamsForbidden,
    TeamsNotFound,
    TeamsPoster,
    TeamsThrottled,
    TeamsUnauthorized,
    TeamsUnavailable,
)
from bot.retry import RetryPolicy

TENANT = "11111111-1111-1111-1111-111111111111"
CHANNEL = "19:approvals@thread.tacv2"
THREAD = f"{CHANNEL};messageid=1700000000001"
CARD = {
    "type": "AdaptiveCard", "version": "1.5",
    "body": [{"type": "TextBlock", "text": "PO-1 confirmed by <at>Alex Wilber</at>"}],
    "msteams": {"width": "Full", "entities": [{"type": "mention", "text": "<at>Alex Wilber</at>",
                                               "mentioned": {"id": "aad-alex", "name": "Alex Wilber"}}]},
}
ATTACHMENT = [{"contentType": "application/vnd.microsoft.card.adaptive", "content": CARD}]


def _bodies(connector, method=None):
    return [r for r in connector.requests if method is None or r["method"] == method]


async def test_create_channel_thread_wire_body(poster, connector, token):
    ref = await poster.create_channel_thread(connector.url, TENANT, CHANNEL, CARD, text="New PO")
    [req] = connector.requests
    assert (req["method"], req["path"]) == ("POST", "/v3/conversations")
    assert req["auth"] == f"Bearer {token.current}"
    body = req["json"]
    assert body["isGroup"] is True
    assert body["channelData"]["channel"] == {"id": CHANNEL}
    assert body["channelData"]["tenant"] == {"id": TENANT}
    assert TENANT in (body.get("tenantId"), body.get("tenantID"))
    assert body["bot"]["id"].startswith("28:")
    assert body["activity"]["type"] == "message" and body["activity"]["text"] == "New PO"
    assert body["activity"]["attachments"] == ATTACHMENT
    assert ref == PostedRef(f"{CHANNEL};messageid=m1", "m1", connector.url)


async def test_reply_posts_into_the_thread_with_auth(poster, connector, token):
    ref = await poster.reply(connector.url, THREAD, CARD)
    [req] = connector.requests
    assert (req["method"], req["path"]) == ("POST", f"/v3/conversations/{THREAD}/activities")
    assert req["auth"] == f"Bearer {token.current}"  # continue_conversation got bot_app_id
    assert req["json"]["attachments"] == ATTACHMENT
    assert req["json"]["conversation"]["id"] == THREAD
    assert "replyToId" not in req["json"]  # never the continuation's random id
    assert ref == PostedRef(THREAD, "m1", connector.url)


async def test_update_puts_the_card_with_its_mentions_again(poster, connector, token):
    await poster.update(connector.url, THREAD, "1700000000001", CARD)
    [req] = connector.requests
    assert (req["method"], req["path"]) == ("PUT", f"/v3/conversations/{THREAD}/activities/1700000000001")
    assert req["auth"] == f"Bearer {token.current}"
    assert req["json"]["id"] == "1700000000001"
    assert req["json"]["attachments"][0]["content"]["msteams"]["entities"] == CARD["msteams"]["entities"]


async def test_text_mentions_repeat_the_cards_mention_entity(poster, connector):
    await poster.reply(connector.url, THREAD, CARD, text="FYI <at>Alex Wilber</at>")
    [req] = connector.requests
    assert req["json"]["entities"] == [{"type": "mention", "text": "<at>Alex Wilber</at>",
                                        "mentioned": {"id": "aad-alex", "name": "Alex Wilber"}}]


async def test_create_personal_opens_the_chat_then_posts(poster, connector, token):
    ref = await poster.create_personal(connector.url, TENANT, "aad-alex", CARD)
    create, post = connector.requests
    assert create["json"]["members"] == [{"id": "aad-alex"}]
    assert create["json"]["channelData"] == {"tenant": {"id": TENANT}}
    assert not create["json"].get("isGroup")
    assert post["path"] == "/v3/conversations/a:chat1/activities"
    assert all(r["auth"] == f"Bearer {token.current}" for r in connector.requests)
    assert ref == PostedRef("a:chat1", "m2", connector.url)


async def test_every_outbound_call_is_authorized(poster, connector):
    connector.accepted_tokens = {"tok-1"}
    await poster.create_channel_thread(connector.url, TENANT, CHANNEL, CARD)
    await poster.reply(connector.url, THREAD, CARD)
    await poster.update(connector.url, THREAD, "1", CARD)
    await poster.create_personal(connector.url, TENANT, "aad-alex", CARD)
    assert len(connector.requests) == 5
    assert {r["auth"] for r in connector.requests} == {"Bearer tok-1"}


# --- retries ----------------------------------------------------------------------------------------------------


async def test_429_is_retried_after_retry_after_seconds(poster, connector, fake_time):
    connector.answer(429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, {"Retry-After": "3"})
    ref = await poster.reply(connector.url, THREAD, CARD)
    assert fake_time.sleeps == [3.0]
    assert len(connector.requests) == 2 and ref.activity_id


async def test_retry_after_as_http_date(poster, connector, fake_time):
    # poster's wall clock is 1_800_000_000 (2027-01-15T08:00:00Z); the date is 4 s later
    connector.answer(503, "", {"Retry-After": "Fri, 15 Jan 2027 08:00:04 GMT"})
    await poster.update(connector.url, THREAD, "1", CARD)
    assert fake_time.sleeps == [4.0]


@pytest.mark.parametrize("status", [412, 502, 503, 504])
async def test_transient_statuses_back_off_without_retry_after(poster, connector, fake_time, status):
    connector.answer(status, times=2)
    await poster.reply(connector.url, THREAD, CARD)
    assert fake_time.sleeps == [0.5, 1.0]  # rng=0: half of 1 s, 2 s
    assert len(connector.requests) == 3


async def test_long_retry_after_is_handed_to_the_pipeline(poster, connector, fake_time):
    connector.answer(429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, {"Retry-After": "30"})
    with pytest.raises(TeamsThrottled) as info:
        await poster.create_channel_thread(connector.url, TENANT, CHANNEL, CARD)
    assert info.value.retry_after == 30.0 and info.value.transient
    assert fake_time.sleeps == [] and len(connector.requests) == 1


async def test_retries_are_bounded_by_attempts(make_runtime, connector, fake_time):
    poster = TeamsPoster(make_runtime(), policy=RetryPolicy(max_attempts=3, max_inline_wait=100),
                         sleep=fake_time.sleep, clock=fake_time.clock, rng=lambda: 0.0)
    connector.answer(503, headers={"Retry-After": "1"}, times=5)
    with pytest.raises(TeamsUnavailable) as info:
        await poster.reply(connector.url, THREAD, CARD)
    assert len(connector.requests) == 3 and fake_time.sleeps == [1.0, 1.0]
    assert info.value.status == 503 and info.value.retry_after == 1.0


async def test_retries_are_bounded_by_inline_wait(make_runtime, connector, fake_time):
    poster = TeamsPoster(make_runtime(), policy=RetryPolicy(max_attempts=10, max_inline_wait=5),
                         sleep=fake_time.sleep, clock=fake_time.clock, rng=lambda: 0.0)
    connector.answer(429, headers={"Retry-After": "2"}, times=5)
    with pytest.raises(TeamsThrottled) as info:
        await poster.reply(connector.url, THREAD, CARD)
    assert fake_time.sleeps == [2.0, 2.0] and info.value.retry_after == 2.0


async def test_401_refreshes_the_token_once_and_retries(poster, connector, token):
    connector.accepted_tokens = {"tok-2"}
    await poster.reply(connector.url, THREAD, CARD)
    assert [r["auth"] for r in connector.requests] == ["Bearer tok-1", "Bearer tok-2"]
    assert True in token.calls


async def test_401_twice_is_teams_unauthorized(poster, connector):
    connector.accepted_tokens = set()
    with pytest.raises(TeamsUnauthorized):
        await poster.reply(connector.url, THREAD, CARD)
    assert len(connector.requests) == 2


# --- translation ----------------------------------------------------------------------------------------------


async def test_403_blocked_keeps_teams_code_and_subcode(poster, connector):
    connector.answer(403, {"errorCode": 209, "message": '{"subCode":"MessageWritesBlocked","message":"blocked"}'})
    with pytest.raises(TeamsForbidden) as info:
        await poster.create_personal(connector.url, TENANT, "aad-alex", CARD)
    assert info.value.reason == "MessageWritesBlocked"
    assert "209" in str(info.value) and "MessageWritesBlocked" in str(info.value)


async def test_403_not_installed(poster, connector):
    connector.answer(403, {"error": {"code": "ForbiddenOperationException",
                                     "message": "Bot is not installed in user's personal scope"}})
    with pytest.raises(TeamsForbidden) as info:
        await poster.create_personal(connector.url, TENANT, "aad-alex", CARD)
    assert info.value.reason == "ForbiddenOperationException"
    assert "not installed" in info.value.message


@pytest.mark.parametrize("status,cls", [(404, TeamsNotFound), (413, CardTooLarge), (400, TeamsBadRequest),
                                        (409, TeamsError)])
async def test_statuses_translate(poster, connector, status, cls):
    connector.answer(status, {"error": {"code": "Code", "message": f"said {status}"}})
    with pytest.raises(cls) as info:
        await poster.reply(connector.url, THREAD, CARD)
    assert info.value.status == status and info.value.message == f"said {status}"
    assert len(connector.requests) == 1


async def test_unreachable_connector_is_unavailable_not_a_requests_error(poster, unused_tcp_port):
    with pytest.raises(TeamsUnavailable) as info:
        await poster.reply(f"http://127.0.0.1:{unused_tcp_port}/", THREAD, CARD)
    assert info.value.status is None and info.value.transient


async def test_failing_token_provider_is_unavailable(make_runtime, connector, fake_time):
    async def broken(*, force_refresh: bool = False) -> str:
        raise RuntimeError("entra down")

    poster = TeamsPoster(make_runtime(get_token=broken), sleep=fake_time.sleep, clock=fake_time.clock)
    with pytest.raises(TeamsUnavailable) as info:
        await poster.reply(connector.url, THREAD, CARD)
    assert "entra down" in str(info.value)
    assert connector.requests == []
