"""The Store contract (connector/store/base.py), run against every implementation by the `store` fixture."""

from __future__ import annotations

import asyncio
import random

import pytest

from connector.store.base import (
    Claim,
    EnqueueResult,
    EventStatus,
    Install,
    LeaseLost,
    NotFound,
    PostedCard,
    Store,
    StoreError,
)

from .conftest import make_event

T0 = 1_000_000.0


async def enqueue(store: Store, n: int, *, now: float = T0, **kw: object) -> str:
    result, event_id = await store.enqueue(make_event(n, **kw), first_stage="enrich", now=now)
    assert result is EnqueueResult.NEW
    return event_id


async def claim(store: Store, worker: str = "w1", *, now: float = T0, lease: float = 30.0) -> Claim:
    got = await store.claim(worker, now=now, lease_seconds=lease)
    assert got is not None, "expected something to claim"
    return got


# --- enqueue and dedup ---------------------------------------------------------------------------------------------
async def test_new_then_duplicate_with_history(store: Store) -> None:
    first = await store.enqueue(make_event(7), first_stage="enrich", now=T0)
    second = await store.enqueue(make_event(7), first_stage="enrich", now=T0 + 5)
    assert first[0] is EnqueueResult.NEW and second[0] is EnqueueResult.DUPLICATE
    assert first[1] == second[1] and first[1].isprintable() and first[1]

    event = await store.get_event(first[1])
    assert event is not None
    assert (event.status, event.stage, event.attempts) == (EventStatus.QUEUED, "enrich", 0)
    assert (event.environment, event.business_event_id, event.control_number) == (
        "contoso-prod",
        "PurchaseOrderConfirmedBusinessEvent",
        7,
    )
    assert event.payload == {"ControlNumber": 7, "PurchaseOrderNumber": "PO-00007"}
    assert (event.received_at, event.updated_at, event.next_attempt_at) == (T0, T0, T0)
    assert event.data == {} and event.lease_id is None and event.last_error is None

    history = await store.history(first[1])
    assert [(h.step, h.outcome, h.at) for h in history] == [("received", "ok", T0), ("received", "duplicate", T0 + 5)]


async def test_same_event_three_times_is_one_record(store: Store) -> None:
    answers = [await store.enqueue(make_event(1), first_stage="enrich", now=T0 + i) for i in range(3)]
    assert [a[0] for a in answers] == [EnqueueResult.NEW, EnqueueResult.DUPLICATE, EnqueueResult.DUPLICATE]
    assert len({a[1] for a in answers}) == 1
    assert len(await store.list_events()) == 1
    assert [h.outcome for h in await store.history(answers[0][1])] == ["ok", "duplicate", "duplicate"]


async def test_dedup_key_is_environment_event_and_control_number(store: Store) -> None:
    await enqueue(store, 1)
    await enqueue(store, 1, env="fabrikam-prod")  # same control number, other environment
    other_type = make_event(1)
    other_type = type(other_type)(**{**other_type.__dict__, "business_event_id": "VendorInvoicePostedBusinessEvent"})
    assert (await store.enqueue(other_type, first_stage="enrich", now=T0))[0] is EnqueueResult.NEW
    assert (await store.count_by_status())[EventStatus.QUEUED] == 3


async def test_thousand_shuffled_events_with_duplicates_concurrently(store: Store) -> None:
    unique = list(range(900))
    batch = unique + random.Random(4).sample(unique, 100)  # 10% duplicates
    random.Random(5).shuffle(batch)
    answers = await asyncio.gather(*(store.enqueue(make_event(n), first_stage="enrich", now=T0) for n in batch))
    assert sum(1 for a in answers if a[0] is EnqueueResult.NEW) == 900
    assert sum(1 for a in answers if a[0] is EnqueueResult.DUPLICATE) == 100
    by_number: dict[int, set[str]] = {}
    for n, (_, event_id) in zip(batch, answers):
        by_number.setdefault(n, set()).add(event_id)
    assert all(len(ids) == 1 for ids in by_number.values())
    assert (await store.count_by_status())[EventStatus.QUEUED] == 900
    assert len(await store.list_events(limit=2000)) == 900


async def test_extreme_control_numbers(store: Store) -> None:
    for n in (-(2**63), 2**63 - 1, 0):
        event_id = await enqueue(store, n)
        assert (await store.get_event(event_id)).control_number == n
    assert (await store.enqueue(make_event(-(2**63)), first_stage="enrich", now=T0))[0] is EnqueueResult.DUPLICATE


async def test_ignored_events_are_recorded_but_never_claimed(store: Store) -> None:
    event_id = await enqueue(store, 1, ignore=True)
    event = await store.get_event(event_id)
    assert event.status is EventStatus.IGNORED
    assert [(h.step, h.outcome) for h in await store.history(event_id)] == [("received", "ignored")]
    assert await store.claim("w1", now=T0 + 10_000, lease_seconds=30) is None
    with pytest.raises(StoreError):
        await store.replay(event_id, now=T0)


# --- claims and leases ---------------------------------------------------------------------------------------------
async def test_claim_respects_next_attempt_at_and_order(store: Store) -> None:
    assert await store.claim("w1", now=T0, lease_seconds=30) is None  # empty
    late = await enqueue(store, 1, now=T0 + 100)
    early = await enqueue(store, 2, now=T0 + 10)
    assert await store.claim("w1", now=T0 + 5, lease_seconds=30) is None  # nothing due yet
    got = await claim(store, now=T0 + 200)
    assert got.event.id == early
    assert got.event.status is EventStatus.PROCESSING
    assert got.event.lease_id == got.lease_id and got.lease_expires_at == T0 + 230
    assert (await claim(store, now=T0 + 200)).event.id == late
    assert await store.claim("w1", now=T0 + 200, lease_seconds=30) is None


async def test_rescheduled_event_waits_until_its_time(store: Store) -> None:
    first = await enqueue(store, 1)
    second = await enqueue(store, 2, now=T0 + 1)
    got = await claim(store, now=T0 + 2)
    assert got.event.id == first
    await store.reschedule(got, at=T0 + 60, reason="429 from OData", now=T0 + 2)
    assert (await claim(store, now=T0 + 3, lease=1000)).event.id == second
    assert await store.claim("w1", now=T0 + 59, lease_seconds=30) is None
    again = await claim(store, now=T0 + 60)
    assert again.event.id == first and again.event.attempts == 1


async def test_expired_lease_lets_another_worker_claim_and_fences_the_old_one(store: Store) -> None:
    await enqueue(store, 1)
    old = await claim(store, "w1", now=T0, lease=30)
    assert await store.claim("w2", now=T0 + 29, lease_seconds=30) is None  # still leased
    new = await claim(store, "w2", now=T0 + 31, lease=30)
    assert new.event.id == old.event.id and new.lease_id != old.lease_id

    with pytest.raises(LeaseLost):
        await store.record_step(old, step="enrich", outcome="ok", data={"x": 1}, now=T0 + 32)
    with pytest.raises(LeaseLost):
        await store.complete(old, now=T0 + 32)
    with pytest.raises(LeaseLost):
        await store.reschedule(old, at=T0 + 40, reason="late", now=T0 + 32)
    with pytest.raises(LeaseLost):
        await store.park(old, reason="late", now=T0 + 32)

    event = await store.get_event(new.event.id)
    assert event.status is EventStatus.PROCESSING and event.lease_id == new.lease_id and event.data == {}
    await store.complete(new, now=T0 + 33)
    assert (await store.get_event(new.event.id)).status is EventStatus.DONE


async def test_an_expired_but_untaken_lease_still_writes(store: Store) -> None:
    await enqueue(store, 1)
    got = await claim(store, now=T0, lease=10)
    await store.complete(got, now=T0 + 100)  # late, but nobody else took it
    assert (await store.get_event(got.event.id)).status is EventStatus.DONE


async def test_writes_after_the_claim_ended_raise_lease_lost(store: Store) -> None:
    await enqueue(store, 1)
    got = await claim(store)
    await store.complete(got, now=T0 + 1)
    with pytest.raises(LeaseLost):
        await store.complete(got, now=T0 + 2)


async def test_concurrent_claimers_never_get_the_same_event(store: Store) -> None:
    for n in range(30):
        await enqueue(store, n)
    claims = await asyncio.gather(*(store.claim(f"w{i}", now=T0, lease_seconds=30) for i in range(50)))
    taken = [c.event.id for c in claims if c is not None]
    assert len(taken) == 30 and len(set(taken)) == 30


# --- steps and state transitions ------------------------------------------------------------------------------
async def test_record_step_merges_data_and_moves_stage(store: Store) -> None:
    event_id = await enqueue(store, 1)
    got = await claim(store)
    got = await store.record_step(
        got, step="enrich", outcome="ok", data={"order": {"a": 1}, "lines": [1, 2]}, next_stage="post", now=T0 + 1
    )
    assert (got.event.stage, got.event.attempts, got.event.updated_at) == ("post", 0, T0 + 1)
    assert got.event.data == {"order": {"a": 1}, "lines": [1, 2]}
    got = await store.record_step(
        got, step="post", outcome="partial", detail="1 of 2", data={"order": {"b": 2}}, now=T0 + 2
    )
    assert got.event.stage == "post"  # no next_stage: stays
    assert got.event.data == {"order": {"b": 2}, "lines": [1, 2]}  # top-level keys replace
    assert got.event.status is EventStatus.PROCESSING and got.event.lease_id == got.lease_id
    stored = await store.get_event(event_id)
    assert stored.data == got.event.data and stored.stage == "post"
    assert [(h.step, h.outcome, h.detail) for h in await store.history(event_id)][1:] == [
        ("enrich", "ok", ""),
        ("post", "partial", "1 of 2"),
    ]


async def test_record_step_resets_attempts_when_the_stage_moves(store: Store) -> None:
    event_id = await enqueue(store, 1)
    await store.reschedule(await claim(store), at=T0, reason="e1", now=T0)
    await store.reschedule(await claim(store), at=T0, reason="e2", now=T0)
    got = await claim(store)
    assert got.event.attempts == 2 and got.event.last_error == "e2"
    got = await store.record_step(got, step="enrich", outcome="ok", next_stage="post", now=T0 + 1)
    assert got.event.attempts == 0
    assert (await store.get_event(event_id)).attempts == 0


async def test_record_step_refuses_data_keys_mongo_cannot_store(store: Store) -> None:
    await enqueue(store, 1)
    got = await claim(store)
    with pytest.raises(ValueError):
        await store.record_step(got, step="enrich", outcome="ok", data={"a.b": 1}, now=T0)


async def test_complete(store: Store) -> None:
    event_id = await enqueue(store, 1)
    await store.complete(await claim(store), now=T0 + 5, detail="posted 2 cards")
    event = await store.get_event(event_id)
    assert (event.status, event.stage, event.lease_id, event.lease_expires_at) == (EventStatus.DONE, "", None, None)
    assert event.updated_at == T0 + 5
    assert (await store.history(event_id))[-1] == type((await store.history(event_id))[-1])(
        at=T0 + 5, step="done", outcome="ok", detail="posted 2 cards"
    )
    assert await store.claim("w1", now=T0 + 10_000, lease_seconds=30) is None


async def test_reschedule(store: Store) -> None:
    event_id = await enqueue(store, 1)
    await store.reschedule(await claim(store), at=T0 + 60, reason="ODataThrottled", now=T0 + 1)
    event = await store.get_event(event_id)
    assert (event.status, event.next_attempt_at, event.attempts, event.last_error, event.lease_id) == (
        EventStatus.QUEUED,
        T0 + 60,
        1,
        "ODataThrottled",
        None,
    )
    last = (await store.history(event_id))[-1]
    assert (last.step, last.outcome, last.detail, last.at) == ("enrich", "retry", "ODataThrottled", T0 + 1)


async def test_park_and_replay(store: Store) -> None:
    event_id = await enqueue(store, 1)
    got = await claim(store)
    got = await store.record_step(got, step="enrich", outcome="ok", next_stage="post", now=T0 + 1)
    await store.park(got, reason="card too large", now=T0 + 2)
    event = await store.get_event(event_id)
    assert (event.status, event.last_error, event.lease_id) == (EventStatus.FAILED, "card too large", None)
    assert await store.claim("w1", now=T0 + 10_000, lease_seconds=30) is None  # parked: never claimed

    replayed = await store.replay(event_id, now=T0 + 100)
    assert (replayed.status, replayed.stage, replayed.attempts, replayed.next_attempt_at) == (
        EventStatus.QUEUED,
        "post",
        0,
        T0 + 100,
    )
    assert [(h.step, h.outcome) for h in await store.history(event_id)] == [
        ("received", "ok"),
        ("enrich", "ok"),
        ("park", "parked"),
        ("replay", "ok"),
    ]
    assert (await claim(store, now=T0 + 100)).event.id == event_id


async def test_replay_a_done_event_at_another_stage(store: Store) -> None:
    event_id = await enqueue(store, 1)
    await store.complete(await claim(store), now=T0 + 1)
    replayed = await store.replay(event_id, now=T0 + 2, stage="post")
    assert (replayed.status, replayed.stage) == (EventStatus.QUEUED, "post")
    await store.complete(await claim(store, now=T0 + 2), now=T0 + 3)
    replayed = await store.replay(event_id, now=T0 + 4)  # no stage given: back to the first stage
    assert replayed.stage == "enrich"


async def test_replay_refuses_unknown_and_active_events(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.replay("no-such-event", now=T0)
    event_id = await enqueue(store, 1)
    with pytest.raises(StoreError):
        await store.replay(event_id, now=T0)  # queued
    await claim(store)
    with pytest.raises(StoreError):
        await store.replay(event_id, now=T0)  # processing: replay would break the lease


# --- reading ----------------------------------------------------------------------------------------------------
async def test_list_events_newest_first_with_filter_and_paging(store: Store) -> None:
    ids = [await enqueue(store, n, now=T0 + n) for n in range(5)]
    await store.complete(await claim(store, now=T0 + 10), now=T0 + 11)  # the oldest (n=0) is done
    listed = await store.list_events()
    assert [e.id for e in listed] == ids[::-1]
    assert [e.id for e in await store.list_events(limit=2, offset=1)] == [ids[3], ids[2]]
    assert [e.id for e in await store.list_events(status=EventStatus.QUEUED)] == ids[:0:-1]
    assert [e.id for e in await store.list_events(status=EventStatus.DONE)] == [ids[0]]
    assert await store.list_events(status=EventStatus.FAILED) == []


async def test_list_events_same_timestamp_keeps_insertion_order(store: Store) -> None:
    ids = [await enqueue(store, n) for n in range(20)]
    assert [e.id for e in await store.list_events()] == ids[::-1]


async def test_count_by_status_reports_every_status(store: Store) -> None:
    assert await store.count_by_status() == {status: 0 for status in EventStatus}
    for n in range(3):
        await enqueue(store, n)
    await enqueue(store, 99, ignore=True)
    await claim(store)
    assert await store.count_by_status() == {
        EventStatus.QUEUED: 2,
        EventStatus.PROCESSING: 1,
        EventStatus.DONE: 0,
        EventStatus.FAILED: 0,
        EventStatus.IGNORED: 1,
    }


async def test_unknown_ids_read_as_nothing(store: Store) -> None:
    assert await store.get_event("nope") is None
    assert await store.history("nope") == []


async def test_ids_are_unique_printable_and_sortable(store: Store) -> None:
    ids = [await enqueue(store, n) for n in range(50)]
    assert len(set(ids)) == 50
    assert all(i.isascii() and i.isalnum() and len(i) <= 32 for i in ids)
    assert ids == sorted(ids)


# --- secrets -------------------------------------------------------------------------------------------------------
async def test_secrets_round_trip(store: Store) -> None:
    blob = bytes(range(256))
    await store.put_secret("fno.client_secret", blob, "k1", now=T0)
    got = await store.get_secret("fno.client_secret")
    assert (got.name, got.ciphertext, got.key_id, got.created_at, got.updated_at) == (
        "fno.client_secret", blob, "k1", T0, T0,
    )
    assert isinstance(got.ciphertext, bytes)
    await store.put_secret("fno.client_secret", b"\x00new", "k2", now=T0 + 5)
    got = await store.get_secret("fno.client_secret")
    assert (got.ciphertext, got.key_id, got.created_at, got.updated_at) == (b"\x00new", "k2", T0, T0 + 5)
    await store.put_secret("bot.app_password", b"x", "k2", now=T0)
    assert [s.name for s in await store.list_secrets()] == ["bot.app_password", "fno.client_secret"]
    assert await store.delete_secret("fno.client_secret") is True
    assert await store.delete_secret("fno.client_secret") is False
    assert await store.get_secret("fno.client_secret") is None
    assert [s.name for s in await store.list_secrets()] == ["bot.app_password"]


# --- installs -----------------------------------------------------------------------------------------------------
def _team(active: bool = True, **kw: object) -> Install:
    return Install(
        id="team:19:abc@thread.tacv2",
        scope="team",
        tenant_id="t-1",
        service_url="https://smba.example/emea/",
        bot_id="28:app",
        team_id="19:abc@thread.tacv2",
        aad_group_id="g-1",
        team_name="Finance",
        channels={"19:abc@thread.tacv2": "General", "19:def@thread.tacv2": "AP"},
        active=active,
        installed_at=T0,
        updated_at=T0,
        **kw,
    )


async def test_installs_upsert_by_id(store: Store) -> None:
    team = _team()
    personal = Install(
        id="personal:oid-1", scope="personal", tenant_id="t-1", service_url="https://smba.example/",
        bot_id="28:app", conversation_id="a:1", user_aad_object_id="oid-1", installed_at=T0, updated_at=T0,
    )
    await store.upsert_install(team)
    await store.upsert_install(personal)
    assert await store.get_install(team.id) == team
    assert await store.get_install(personal.id) == personal
    assert await store.get_install("team:none") is None

    removed = _team(active=False)
    await store.upsert_install(removed)
    assert await store.get_install(team.id) == removed
    assert [i.id for i in await store.list_installs()] == sorted([team.id, personal.id])
    assert [i.id for i in await store.list_installs(active_only=True)] == [personal.id]


# --- posted cards ---------------------------------------------------------------------------------------------
def _card(event_id: str, kind: str = "thread", conversation: str = "19:c1@thread.tacv2;messageid=1",
          **kw: object) -> PostedCard:
    values = dict(
        event_id=event_id, route="po-confirmed", conversation_id=conversation, activity_id="act-1",
        service_url="https://smba.example/", kind=kind, thread_key="usmf/PO-1", channel_id="19:c1@thread.tacv2",
        posted_at=T0,
    )
    values.update(kw)
    return PostedCard(**values)


async def test_record_card_is_unique_per_event_route_kind_conversation(store: Store) -> None:
    event_id = await enqueue(store, 1)
    first = _card(event_id)
    assert await store.record_card(first) is True
    assert await store.record_card(_card(event_id, activity_id="act-2")) is False  # replayed post
    assert await store.cards_for_event(event_id) == [first]
    reply = _card(event_id, kind="reply", activity_id="act-3", posted_at=T0 + 1)
    other_route = _card(event_id, route="ap-team", activity_id="act-4", posted_at=T0 + 2)
    assert await store.record_card(reply) is True
    assert await store.record_card(other_route) is True
    assert await store.cards_for_event(event_id) == [first, reply, other_route]
    assert await store.cards_for_event("other") == []


async def test_find_thread_returns_the_first_thread_card(store: Store) -> None:
    a = await enqueue(store, 1)
    b = await enqueue(store, 2)
    assert await store.find_thread("usmf/PO-1", "19:c1@thread.tacv2") is None
    await store.record_card(_card(a, kind="reply", posted_at=T0 - 10))  # not a thread
    first = _card(a, posted_at=T0)
    await store.record_card(first)
    await store.record_card(_card(b, conversation="19:c1@thread.tacv2;messageid=2", posted_at=T0 + 5))
    await store.record_card(_card(b, channel_id="19:c2@thread.tacv2", conversation="x", posted_at=T0 - 5))
    assert await store.find_thread("usmf/PO-1", "19:c1@thread.tacv2") == first
    assert (await store.find_thread("usmf/PO-1", "19:c2@thread.tacv2")).conversation_id == "x"
    assert await store.find_thread("usmf/PO-2", "19:c1@thread.tacv2") is None


# --- lifecycle -------------------------------------------------------------------------------------------------------
async def test_open_is_idempotent(store: Store) -> None:
    event_id = await enqueue(store, 1)
    await store.open()
    assert (await store.get_event(event_id)).id == event_id
