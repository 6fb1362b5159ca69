"""The Store contract, typed replies: Graph subscriptions (insert-once, a lease only one instance holds, lookup by
Graph's id) and the reply inbox (one row per Teams message id, leased claims, fenced finish). Runs against every
implementation."""

from __future__ import annotations

import asyncio
import dataclasses

from connector.store.base import GraphSubscription, InboundReply, PostedCard, Store

T0 = 1_000_000.0
RES = "/teams/g-1/channels/19:c1@thread.tacv2/messages"


def sub(resource: str = RES, **kw: object) -> GraphSubscription:
    values: dict[str, object] = dict(resource=resource, team_id="g-1", channel_id="19:c1@thread.tacv2")
    values.update(kw)
    return GraphSubscription(**values)  # type: ignore[arg-type]


def reply(key: str, at: float = T0, **kw: object) -> InboundReply:
    values: dict[str, object] = dict(key=key, source="graph", payload={"messageId": key, "n": [1, 2]},
                                     received_at=at, next_attempt_at=at)
    values.update(kw)
    return InboundReply(**values)  # type: ignore[arg-type]


async def test_a_subscription_is_added_once_and_found_by_graph_id(store: Store) -> None:
    assert await store.add_graph_subscription(sub()) is True
    assert await store.add_graph_subscription(sub(status="active", subscription_id="x")) is False
    assert (await store.get_graph_subscription(RES)).status == "new"  # type: ignore[union-attr]

    await store.put_graph_subscription(sub(status="active", subscription_id="s-1", expires_at=T0 + 10,
                                           created_at=T0, renewals=2))
    found = await store.find_graph_subscription("s-1")
    assert found == sub(status="active", subscription_id="s-1", expires_at=T0 + 10, created_at=T0, renewals=2)
    assert await store.find_graph_subscription("s-2") is None
    await store.add_graph_subscription(sub("/teams/g-0/channels/19:c0@thread.tacv2/messages", team_id="g-0"))
    assert [s.team_id for s in await store.list_graph_subscriptions()] == ["g-0", "g-1"]

    await store.note_graph_notification("s-1", at=T0 + 5)
    await store.note_graph_notification("s-1", at=T0 + 1)  # never moves back
    assert (await store.get_graph_subscription(RES)).last_notification_at == T0 + 5  # type: ignore[union-attr]

    assert await store.delete_graph_subscription(RES) is True
    assert await store.delete_graph_subscription(RES) is False
    assert await store.get_graph_subscription(RES) is None


async def test_one_instance_holds_a_subscriptions_lease_until_it_expires(store: Store) -> None:
    await store.add_graph_subscription(sub())
    results = await asyncio.gather(*(store.lease_graph_subscription(RES, f"i-{n}", now=T0, lease_seconds=60)
                                     for n in range(5)))
    winners = [r.lease_owner for r in results if r is not None]
    assert len(winners) == 1
    assert await store.lease_graph_subscription(RES, winners[0], now=T0 + 1, lease_seconds=60) is not None
    assert await store.lease_graph_subscription(RES, "other", now=T0 + 30, lease_seconds=60) is None
    taken = await store.lease_graph_subscription(RES, "other", now=T0 + 61, lease_seconds=60)
    assert taken is not None and taken.lease_owner == "other" and taken.lease_expires_at == T0 + 121
    assert await store.lease_graph_subscription("/teams/nope/channels/x/messages", "other", now=T0,
                                                lease_seconds=60) is None


async def test_a_reply_is_stored_once_per_message_id_and_claimed_by_one_owner(store: Store) -> None:
    assert await store.enqueue_reply(reply("m-2", T0 + 1)) is True
    assert await store.enqueue_reply(reply("m-1", T0)) is True
    assert await store.enqueue_reply(reply("m-1", T0 + 5, source="bot")) is False  # Graph and the bot feed: once
    assert await store.enqueue_reply(reply("m-later", T0, next_attempt_at=T0 + 190)) is True

    a, b = await asyncio.gather(store.claim_replies("i-a", now=T0 + 2, lease_seconds=30),
                                store.claim_replies("i-b", now=T0 + 2, lease_seconds=30))
    claimed = sorted([r.key for r in a] + [r.key for r in b])
    assert claimed == ["m-1", "m-2"]  # each once; m-later is not due
    first = (a or b)[0]
    assert first.key == "m-1" and first.attempts == 1 and first.status == "processing"
    assert first.payload == {"messageId": "m-1", "n": [1, 2]} and first.source == "graph"

    owner = "i-a" if any(r.key == "m-1" for r in a) else "i-b"
    assert await store.finish_reply("m-1", "intruder", status="done", outcome="x", now=T0 + 3) is False
    assert await store.finish_reply("m-1", owner, status="done", outcome="approved", now=T0 + 3) is True
    done = await store.get_reply("m-1")
    assert done is not None and done.status == "done" and done.outcome == "approved" and done.lease_owner is None
    assert await store.claim_replies("i-c", now=T0 + 10, lease_seconds=30) == []  # m-2 still leased

    again = await store.claim_replies("i-c", now=T0 + 40, lease_seconds=30)  # m-2's lease expired
    assert [(r.key, r.attempts, r.lease_owner) for r in again] == [("m-2", 2, "i-c")]
    assert await store.finish_reply("m-2", "i-c", status="queued", outcome="later", now=T0 + 40,
                                    retry_at=T0 + 200) is True
    assert await store.claim_replies("i-c", now=T0 + 150, lease_seconds=30) == []
    due = await store.claim_replies("i-c", now=T0 + 201, lease_seconds=30)
    assert [r.key for r in due] == ["m-later", "m-2"]  # oldest received first
    assert await store.get_reply("nope") is None


async def test_cards_are_found_by_their_message_id(store: Store) -> None:
    card = PostedCard(event_id="e-1", route="r", conversation_id="19:c1@thread.tacv2;messageid=111",
                      activity_id="111", service_url="https://smba/", kind="thread", channel_id="19:c1@thread.tacv2",
                      posted_at=T0)
    await store.record_card(card)
    await store.record_card(dataclasses.replace(card, event_id="e-2", activity_id="222", posted_at=T0 + 1))
    assert await store.find_cards_by_activity("111") == [card]
    assert await store.find_cards_by_activity("333") == []
