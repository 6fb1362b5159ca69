"""The deliver stage in a burst (perf goal 4): an event folded into a digest costs its summary row, never a render
of its own card; a card that goes out on its own is the same card as before; a digest's cards are recorded
together (one group commit) before the channel's next post. Real SQLite store and the built-in card catalog; the
poster is in-process (the outbox tests' one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from cards import Catalog, TemplateError, render_card
from connector.carddata import build_card_data
from connector.delivery import DeliveryDeps, make_deliver_stage, make_digest_renderer
from connector.outbox import Delivered, Outbox, OutboxItem
from connector.pacing import Pacer
from connector.pipeline import Park
from connector.routes import routes_from_config
from connector.store import Install, Store, open_store
from test_carddata import record
from test_outbox_backlog import FakeTime, Poster

PO_EVENT = "PurchaseOrderConfirmedBusinessEvent"
PO_TEMPLATE = "purchase-order-confirmed"


class CountingCatalog:
    """The built-in catalog, counting which templates were rendered (cards.render asks for each one's text)."""

    def __init__(self, fail: str | None = None) -> None:
        self._inner = Catalog.builtin()
        self.rendered: list[str] = []
        self.fail = fail

    def template_text(self, name: str) -> str:
        self.rendered.append(name)
        if name == self.fail:
            raise TemplateError("broken on purpose", template=name)
        return self._inner.template_text(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/ml.db")
    await s.open()
    await s.upsert_install(Install(id="team:19:t", scope="team", tenant_id="tenant", service_url="https://smba/",
                                   bot_id="28:bot", team_id="19:t", team_name="Finance",
                                   channels={"19:c": "General"}))
    try:
        yield s
    finally:
        await s.close()


def po(n: int):
    return record(PO_EVENT, {"PurchaseOrderNumber": f"PO-{n:05d}", "TransactionCurrencyAmount": 10.0 * n,
                             "TransactionCurrencyCode": "USD", "VendorAccount": "US-104"}, n=n)


def deps_for(store: Store, catalog: CountingCatalog, waiting: int, t: FakeTime, poster: Poster,
             hold: float = 0.0) -> DeliveryDeps:
    deps = DeliveryDeps(store=store, outbox=None,  # type: ignore[arg-type]  # set below: the renderer needs deps
                        catalog=catalog,  # type: ignore[arg-type]
                        routes=routes_from_config([{"name": "po", "events": [PO_EVENT], "team": "Finance",
                                                    "mention": []}]),
                        graph=None, environments={"contoso-prod": "https://contoso.example"}, clock=t.clock)

    async def backlog() -> int:
        return waiting

    deps.outbox = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), make_digest_renderer(deps),
                         digest_after=30.0, digest_max=10, backlog=backlog, clock=t.clock, hold=hold)
    return deps


async def test_events_folded_into_digests_never_render_their_own_cards(store: Store) -> None:
    t, poster, catalog = FakeTime(), Poster(), CountingCatalog()
    deliver = make_deliver_stage(deps_for(store, catalog, 500, t, poster, hold=30.0))
    outcomes = await asyncio.wait_for(asyncio.gather(*(deliver(po(n)) for n in range(1, 21))), timeout=60)
    assert all("in digest" in o.detail for o in outcomes)
    # main rendered all 20 cards, then posted none of them; now at most the first, rendered before the channel's
    # first slot, when it could not yet know that a burst was coming
    assert catalog.rendered.count(PO_TEMPLATE) <= 1
    assert catalog.rendered.count("digest") == len(poster.posts)
    for n in range(1, 21):
        assert [c.kind for c in await store.cards_for_event(f"ev-{n}")] == ["digest"]


async def test_a_card_posted_on_its_own_is_the_card_rendered_before(store: Store) -> None:
    t, poster, catalog = FakeTime(), Poster(), CountingCatalog()
    deliver = make_deliver_stage(deps_for(store, catalog, 0, t, poster))
    await deliver(po(7))
    expected = render_card(PO_TEMPLATE, build_card_data(po(7), environment_name="contoso-prod",
                                                        base_url="https://contoso.example"),
                           catalog=Catalog.builtin(), max_bytes=28_000, max_lines=20).card
    assert poster.posts == [("19:c", expected)]
    assert catalog.rendered == [PO_TEMPLATE]
    assert [c.kind for c in await store.cards_for_event("ev-7")] == ["thread"]


async def test_a_card_that_cannot_be_rendered_parks_its_event_and_posts_nothing(store: Store) -> None:
    t, poster, catalog = FakeTime(), Poster(), CountingCatalog(fail=PO_TEMPLATE)
    deliver = make_deliver_stage(deps_for(store, catalog, 0, t, poster))
    with pytest.raises(Park, match="route 'po': the card could not be rendered: .*broken on purpose"):
        await deliver(po(3))
    assert poster.posts == [] and await store.cards_for_event("ev-3") == []


async def test_a_digests_cards_are_recorded_together_before_the_next_post() -> None:
    t, poster = FakeTime(), Poster()

    async def backlog() -> int:
        return 500

    box = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), lambda rows: {"digest": [r["n"] for r in rows]},
                 digest_after=30.0, digest_max=10, backlog=backlog, clock=t.clock, hold=0.0)
    recording: set[int] = set()
    most = 0
    posts_seen: list[int] = []

    def item(n: int) -> OutboxItem:
        async def on_posted(delivered: Delivered) -> None:
            nonlocal most
            recording.add(n)
            most = max(most, len(recording))
            posts_seen.append(len(poster.posts))
            await asyncio.sleep(0)  # the store's round trip: the others of the digest join it meanwhile
            recording.discard(n)

        return OutboxItem(tenant_id="t", service_url="https://smba/", channel_id="19:a", card={"single": n},
                          summary={"n": n}, on_posted=on_posted)

    await asyncio.gather(*(box.send(item(n)) for n in range(20)))
    assert len(poster.posts) == 2
    assert most == 10  # main recorded them one after another (most == 1): ten transactions per digest
    assert posts_seen == [1] * 10 + [2] * 10  # every card recorded before the channel's next post


async def test_the_last_digest_of_a_burst_does_not_wait_out_the_hold() -> None:
    """At the tail the store still counts the previous post's events until the pipeline finishes them: the drainer
    asks again while nothing arrives and posts what it has as soon as nothing else is coming."""
    t, poster = FakeTime(), Poster()
    counts = iter([500, 500])  # the burst, then (stale) the last post's events not yet finished; then the truth

    async def backlog() -> int:
        return next(counts, 5)

    box = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), lambda rows: {"digest": [r["n"] for r in rows]},
                 digest_after=30.0, digest_max=10, backlog=backlog, clock=t.clock, hold=3600.0, backlog_ttl=0.0)

    def item(n: int) -> OutboxItem:
        return OutboxItem(tenant_id="t", service_url="https://smba/", channel_id="19:a", card={"single": n},
                          summary={"n": n})

    await asyncio.wait_for(asyncio.gather(*(box.send(item(n)) for n in range(10))), timeout=30)
    # main waited the whole hold here (an hour) for events the store counted but that were already posted
    await asyncio.wait_for(asyncio.gather(*(box.send(item(n)) for n in range(10, 15))), timeout=30)
    assert [card for _, card in poster.posts] == [{"digest": list(range(10))}, {"digest": list(range(10, 15))}]


async def test_a_single_card_is_rendered_before_its_pacing_slot_not_between_slot_and_post() -> None:
    """Teams counts a post when it arrives; the pacer counts it from its slot. A render in between (CPU, and many
    channels share one event loop) would push posts past their slots until the tenant's window is overbooked."""
    t, poster = FakeTime(), Poster()
    slots: list[float] = []

    class RecordingPacer(Pacer):
        def reserve(self, keys: list[str]) -> float:
            slots.append(super().reserve(keys))
            return slots[-1]

    posted_at: list[float] = []

    class TimedPoster(Poster):
        async def create_channel_thread(self, *args: Any, **kw: Any) -> Any:
            posted_at.append(t.now)
            return await super().create_channel_thread(*args, **kw)

    poster = TimedPoster()
    box = Outbox(poster, RecordingPacer(clock=t.clock, sleep=t.sleep), lambda rows: {"digest": rows},
                 digest_after=30.0, digest_max=10, clock=t.clock)

    def item(n: int) -> OutboxItem:
        def render() -> dict[str, Any]:
            t.now += 0.4  # a slow render (a starved event loop)
            return {"single": n}

        return OutboxItem(tenant_id="t", service_url="https://smba/", channel_id="19:a", card=render,
                          summary={"n": n})

    await asyncio.gather(*(box.send(item(n)) for n in range(3)))
    assert [card for _, card in poster.posts] == [{"single": n} for n in range(3)]
    assert posted_at == slots  # each post at its slot: the render came before its reservation


async def test_a_digest_held_for_more_events_is_posted_at_its_slot() -> None:
    """The hold for a full digest comes before the slot is reserved: the post is counted when it really goes."""
    t, slots, posted_at = FakeTime(), [], []

    class RecordingPacer(Pacer):
        def reserve(self, keys: list[str]) -> float:
            slots.append(super().reserve(keys))
            return slots[-1]

    class TimedPoster(Poster):
        async def create_channel_thread(self, *args: Any, **kw: Any) -> Any:
            posted_at.append(t.now)
            return await super().create_channel_thread(*args, **kw)

    async def backlog() -> int:
        return 500

    poster = TimedPoster()
    box = Outbox(poster, RecordingPacer(clock=t.clock, sleep=t.sleep), lambda rows: {"digest": [r["n"] for r in rows]},
                 digest_after=30.0, digest_max=10, backlog=backlog, clock=t.clock, hold=5.0)

    def item(n: int) -> OutboxItem:
        return OutboxItem(tenant_id="t", service_url="https://smba/", channel_id="19:a", card={"single": n},
                          summary={"n": n})

    first = [asyncio.ensure_future(box.send(item(n))) for n in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    t.now += 0.7  # the rest of the digest arrives while the drainer holds
    await asyncio.gather(*first, *(box.send(item(n)) for n in range(3, 10)))
    assert [card for _, card in poster.posts] == [{"digest": list(range(10))}]
    assert posted_at == slots  # main reserved the slot before the hold: counted 0.7 s before the post went


async def test_before_posting_a_single_card_the_outbox_counts_the_store_again() -> None:
    """A cached count from just before the burst arrived must not turn its first cards into singles."""
    t, poster = FakeTime(), Poster()
    counts = iter([3])  # the first count: the burst has not arrived yet; then the store holds it

    async def backlog() -> int:
        return next(counts, 500)

    box = Outbox(poster, Pacer(clock=t.clock, sleep=t.sleep), lambda rows: {"digest": [r["n"] for r in rows]},
                 digest_after=30.0, digest_max=10, backlog=backlog, clock=t.clock, hold=0.0, backlog_ttl=60.0)
    await asyncio.gather(*(box.send(OutboxItem(tenant_id="t", service_url="https://smba/", channel_id="19:a",
                                               card={"single": n}, summary={"n": n})) for n in range(10)))
    assert [card for _, card in poster.posts] == [{"digest": list(range(10))}]  # main: 10 singles
