"""The Store contract, "my approvals" section: an approver's pending approvals (oldest first, nobody else's) and the
per-user daily summary subscription with its once-per-day compare-and-set. Runs against every implementation."""

from __future__ import annotations

import asyncio
import dataclasses

from connector.store.base import Approval, Store, SummarySubscription

T0 = 1_000_000.0
ENV = "contoso-prod"


def approval(wid: str, oid: str, created: float, *, env: str = ENV, status: str = "pending") -> Approval:
    return Approval(environment=env, work_item_id=wid, event_id=f"evt-{wid}", status=status,
                    assignee_object_id=oid, outcomes=["Approve", "Reject"], next_check_at=T0, created_at=created,
                    updated_at=created)


def sub(oid: str = "oid-megan", **kw: object) -> SummarySubscription:
    values: dict[str, object] = dict(user_object_id=oid, enabled=True, service_url="https://smba/",
                                     conversation_id=f"a:{oid}", tenant_id="t", user_name="Megan",
                                     time_zone="Europe/Berlin", next_due_at=T0 + 100, updated_at=T0)
    values.update(kw)
    return SummarySubscription(**values)  # type: ignore[arg-type]


async def test_list_approvals_for_is_the_assignees_pending_items_oldest_first(store: Store) -> None:
    await store.upsert_approval(approval("WI-3", "oid-megan", T0 + 30))
    await store.upsert_approval(approval("WI-1", "oid-megan", T0 + 10, env="fabrikam-prod"))
    await store.upsert_approval(approval("WI-2", "oid-alex", T0 + 5))
    await store.upsert_approval(approval("WI-4", "oid-megan", T0 + 1, status="decided"))
    await store.upsert_approval(approval("WI-5", "oid-megan", T0 + 20, status="superseded"))

    mine = await store.list_approvals_for("oid-megan")
    assert [(a.environment, a.work_item_id) for a in mine] == [("fabrikam-prod", "WI-1"), (ENV, "WI-3")]
    assert [a.work_item_id for a in await store.list_approvals_for("oid-alex")] == ["WI-2"]
    assert [a.work_item_id for a in await store.list_approvals_for("oid-megan", status="decided")] == ["WI-4"]
    assert await store.list_approvals_for("oid-nobody") == []
    assert len(await store.list_approvals_for("oid-megan", limit=1)) == 1


async def test_summary_subscription_round_trips_and_replaces(store: Store) -> None:
    assert await store.get_summary_subscription("oid-megan") is None
    await store.upsert_summary_subscription(sub())
    assert await store.get_summary_subscription("oid-megan") == sub()
    await store.upsert_summary_subscription(sub(enabled=False, time_zone="UTC", last_sent_day="2026-12-07"))
    got = await store.get_summary_subscription("oid-megan")
    assert got is not None and got.enabled is False and got.time_zone == "UTC" and got.last_sent_day == "2026-12-07"


async def test_due_summaries_are_enabled_and_due_oldest_first(store: Store) -> None:
    await store.upsert_summary_subscription(sub("oid-a", next_due_at=T0 + 50))
    await store.upsert_summary_subscription(sub("oid-b", next_due_at=T0 + 10))
    await store.upsert_summary_subscription(sub("oid-c", next_due_at=T0 + 500))
    await store.upsert_summary_subscription(sub("oid-d", next_due_at=T0, enabled=False))
    due = await store.list_due_summaries(now=T0 + 100)
    assert [s.user_object_id for s in due] == ["oid-b", "oid-a"]


async def test_claim_summary_day_wins_once_per_day_across_racers(store: Store) -> None:
    await store.upsert_summary_subscription(sub())
    results = await asyncio.gather(*(store.claim_summary_day("oid-megan", day="2026-12-07", next_due_at=T0 + 86400,
                                                             now=T0 + 101) for _ in range(8)))
    won = [r for r in results if r is not None]
    assert len(won) == 1
    assert dataclasses.replace(won[0]) == sub(last_sent_day="2026-12-07", next_due_at=T0 + 86400, updated_at=T0 + 101)
    # the same day again (a restart, a second instance): refused; the next day: allowed
    assert await store.claim_summary_day("oid-megan", day="2026-12-07", next_due_at=T0 + 1, now=T0 + 102) is None
    assert await store.claim_summary_day("oid-megan", day="2026-12-08", next_due_at=T0 + 2, now=T0 + 103) is not None
    # a disabled subscription is never claimed
    await store.upsert_summary_subscription(sub("oid-off", enabled=False))
    assert await store.claim_summary_day("oid-off", day="2026-12-09", next_due_at=T0, now=T0) is None
