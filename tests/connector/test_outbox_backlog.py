"""The outbox folds a burst from the channel's backlog in the store, not only from the events in flight (perf goal
4): the first cards of a burst already go out as digests of digest_max; approval cards are never folded; a channel
is credited only its share of the store's backlog."""

from __future__ import annotations

import asyncio
from typing import Any

from bot import PostedRef
from connector.outbox import Delivered, Outbox, OutboxItem
from connector.pacing import Pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


class Poster:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def create_channel_thread(self, service_url: str, tenant_id: str, channel_id: str, card: dict[str, Any],
                                    *, text: str | None = None) -> PostedRef:
        self.posts.append((channel_id, card))
        return PostedRef(f"{channel_id};messageid={len(self.posts)}", str(len(self.posts)), service_url)

    async def reply(self, service_url: str, conversation_id: str, card: dict[str, Any], *,
                    text: str | None = None) -> PostedRef:
        self.posts.append((conversation_id, card))
        return PostedRef(conversation_id, str(len(self.posts)), service_url)


def digest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"digest": [r["n"] for r in rows]}


def item(n: int, channel: str = "19:a", *, digestible: bool = True) -> OutboxItem:
    return OutboxItem(tenant_id="t", service_url="https://smba/", channel_id=channel, card={"single": n},
                      summary={"n": n}, digestible=digestible)


def outbox(poster: Poster, t: FakeTime, waiting: int, **kw: Any) -> Outbox:
    async def backlog() -> int:
        return waiting

    return Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), digest, digest_after=30.0, digest_max=10,
                  backlog=backlog, clock=t.clock, **kw)


async def test_the_first_cards_of_a_burst_fold_when_the_store_holds_the_rest() -> None:
    poster, t = Poster(), FakeTime()
    box = outbox(poster, t, waiting=500)
    results = await asyncio.gather(*(box.send(item(n)) for n in range(30)))
    # 30 in flight alone would drain in ~8 s at Teams' pace (under digest_after): singles, before. The store says
    # 500 are waiting: 3 digests of 10.
    assert [card for _, card in poster.posts] == [{"digest": list(range(i, i + 10))} for i in (0, 10, 20)]
    assert all(isinstance(r, Delivered) and r.kind == "digest" and r.digest_size == 10 for r in results)


async def test_a_folding_channel_waits_for_a_full_digest_while_more_are_coming() -> None:
    poster, t = Poster(), FakeTime()
    box = outbox(poster, t, waiting=500, hold=5.0)
    first = [asyncio.ensure_future(box.send(item(n))) for n in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert poster.posts == []  # held: 3 of a burst of 500 would waste a post
    rest = [asyncio.ensure_future(box.send(item(n))) for n in range(3, 10)]
    await asyncio.gather(*first, *rest)
    assert [card for _, card in poster.posts] == [{"digest": list(range(10))}]


async def test_approval_cards_are_never_folded() -> None:
    poster, t = Poster(), FakeTime()
    box = outbox(poster, t, waiting=500, hold=0.0)
    await asyncio.gather(*(box.send(item(n, digestible=False)) for n in range(4)))
    assert [card for _, card in poster.posts] == [{"single": n} for n in range(4)]


async def test_each_channel_is_credited_its_share_of_the_store_backlog() -> None:
    poster, t = Poster(), FakeTime()
    box = outbox(poster, t, waiting=20)  # 20 unfinished in the store, 10 queued here per channel: no burst
    await asyncio.gather(*(box.send(item(n, channel=f"19:{n % 2}")) for n in range(20)))
    assert all("single" in card for _, card in poster.posts) and len(poster.posts) == 20


async def test_without_a_store_count_it_decides_from_the_queue_as_before() -> None:
    poster, t = Poster(), FakeTime()
    box = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), digest, digest_after=30.0, digest_max=10,
                 clock=t.clock)
    await asyncio.gather(*(box.send(item(n)) for n in range(30)))
    assert all("single" in card for _, card in poster.posts)


async def test_the_tail_of_a_burst_folds_too() -> None:
    poster, t = Poster(), FakeTime()
    waiting = {"n": 500}

    async def backlog() -> int:
        return waiting["n"]

    box = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), digest, digest_after=30.0, digest_max=10,
                 backlog=backlog, clock=t.clock, hold=0.0)
    await asyncio.gather(*(box.send(item(n)) for n in range(10)))
    waiting["n"] = 3  # the burst is nearly over: 3 left, which alone would go out as single cards
    await asyncio.gather(*(box.send(item(n)) for n in range(10, 13)))
    assert [card for _, card in poster.posts] == [{"digest": list(range(10))}, {"digest": [10, 11, 12]}]
    t.now += 31  # burst mode ends digest_after after the last digest
    await box.send(item(99))
    assert poster.posts[-1][1] == {"single": 99}
