"""Random operation sequences checked against a tiny model of the queue (hypothesis), on SQLite and mongomock.

The model knows dedup, due times, claim order (oldest next_attempt_at, then arrival), lease expiry and fencing;
each store must agree with it on every answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.store.base import Claim, EnqueueResult, EventStatus, LeaseLost, NotFound, StoreError
from connector.store.mongo import MongoStore
from connector.store.sqlite import SQLiteStore

from .conftest import make_event

LEASE = 20.0

ops = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(0, 3)),
        st.tuples(st.just("claim"), st.just(0)),
        st.tuples(st.just("claim"), st.just(0)),
        st.tuples(st.just("complete"), st.integers(0, 5)),
        st.tuples(st.just("reschedule"), st.integers(0, 5), st.integers(0, 40)),
        st.tuples(st.just("reschedule"), st.integers(0, 5), st.integers(0, 40)),
        st.tuples(st.just("park"), st.integers(0, 5)),
        st.tuples(st.just("replay"), st.integers(0, 6)),
        st.tuples(st.just("wait"), st.integers(1, 30)),
    ),
    max_size=30,
)


@dataclass
class Model:
    now: float = 0.0
    order: list[int] = field(default_factory=list)  # control numbers in arrival order
    status: dict[int, EventStatus] = field(default_factory=dict)
    due: dict[int, float] = field(default_factory=dict)
    lease: dict[int, tuple[str, float]] = field(default_factory=dict)

    def claimable(self) -> int | None:
        ready = [
            n
            for n in self.order
            if (self.status[n] is EventStatus.QUEUED and self.due[n] <= self.now)
            or (self.status[n] is EventStatus.PROCESSING and self.lease[n][1] <= self.now)
        ]
        return min(ready, key=lambda n: (self.due[n], self.order.index(n))) if ready else None

    def holds(self, n: int, lease_id: str) -> bool:
        return self.status[n] is EventStatus.PROCESSING and self.lease[n][0] == lease_id


async def run(store, program) -> None:
    model = Model()
    ids: dict[int, str] = {}
    claims: list[tuple[int, Claim]] = []
    await store.open()
    try:
        for op in program:
            kind = op[0]
            if kind == "enqueue":
                n = op[1]
                result, event_id = await store.enqueue(make_event(n), first_stage="s", now=model.now)
                assert result is (EnqueueResult.DUPLICATE if n in ids else EnqueueResult.NEW)
                if n not in ids:
                    ids[n] = event_id
                    model.order.append(n)
                    model.status[n], model.due[n] = EventStatus.QUEUED, model.now
                assert ids[n] == event_id
            elif kind == "claim":
                expected = model.claimable()
                got = await store.claim("w", now=model.now, lease_seconds=LEASE)
                assert (got.event.id if got else None) == (ids[expected] if expected is not None else None)
                if got:
                    model.status[expected] = EventStatus.PROCESSING
                    model.lease[expected] = (got.lease_id, model.now + LEASE)
                    claims.append((expected, got))
            elif kind in ("complete", "reschedule", "park"):
                if not claims:
                    continue
                n, claim = claims[op[1] % len(claims)]
                valid = model.holds(n, claim.lease_id)
                try:
                    if kind == "complete":
                        await store.complete(claim, now=model.now)
                    elif kind == "reschedule":
                        await store.reschedule(claim, at=model.now + op[2], reason="r", now=model.now)
                    else:
                        await store.park(claim, reason="p", now=model.now)
                except LeaseLost:
                    assert not valid
                    continue
                assert valid
                model.status[n] = {
                    "complete": EventStatus.DONE, "reschedule": EventStatus.QUEUED, "park": EventStatus.FAILED,
                }[kind]
                if kind == "reschedule":
                    model.due[n] = model.now + op[2]
            elif kind == "replay":
                n = op[1]
                if n not in ids:
                    with pytest.raises(NotFound):
                        await store.replay(f"missing-{n}", now=model.now)
                elif model.status[n] in (EventStatus.DONE, EventStatus.FAILED):
                    record = await store.replay(ids[n], now=model.now)
                    assert record.status is EventStatus.QUEUED
                    model.status[n], model.due[n] = EventStatus.QUEUED, model.now
                else:
                    with pytest.raises(StoreError):
                        await store.replay(ids[n], now=model.now)
            else:
                model.now += op[1]
        counts = {status: 0 for status in EventStatus}
        for status in model.status.values():
            counts[status] += 1
        assert await store.count_by_status() == counts
        for n, event_id in ids.items():
            assert (await store.get_event(event_id)).status is model.status[n]
    finally:
        await store.close()


def _mongomock_store():
    from mongomock_motor import AsyncMongoMockClient

    return MongoStore(AsyncMongoMockClient(), "ml_model")


@pytest.mark.parametrize("make_store", [lambda: SQLiteStore(":memory:"), _mongomock_store], ids=["sqlite", "mongomock"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=ops)
def test_store_agrees_with_the_model(make_store, program) -> None:
    asyncio.run(run(make_store(), program))


def test_ids_are_ordered_and_made_without_a_kernel_call_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # os.urandom lets go of the GIL: one per enqueue or claim made the database thread wait to get it back.
    import os

    from connector.store._common import IdGenerator

    new_id = IdGenerator()
    monkeypatch.setattr(os, "urandom", lambda n: (_ for _ in ()).throw(AssertionError("a kernel call per id")))
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000 and all(len(i) == 22 for i in ids)
