"""The Store contract, approvals section (connector/store/base.py): approvals with their compare-and-set, the
append-only audit log, and F&O user -> Entra user mappings. Run against every implementation by the `store` fixture
(SQLite, mongomock-motor, and a real MongoDB when ML_TEST_MONGODB_URI is set)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from connector.store.base import Approval, AuditEntry, Store, UserMapping

T0 = 1_000_000.0
ENV = "contoso-prod"


def approval(work_item_id: str = "WI-1", *, env: str = ENV, **kw: object) -> Approval:
    values: dict[str, object] = dict(
        environment=env,
        work_item_id=work_item_id,
        event_id=f"evt-{work_item_id}",
        assignee_fo_user="Alex",
        assignee_object_id="oid-alex",
        assignee_name="Alex Wilber",
        subject=f"Purchase order {work_item_id} needs approval",
        outcomes=["Approve", "Reject", "RequestChange"],
        fo_status="Pending",
        next_check_at=T0 + 300,
        created_at=T0,
        updated_at=T0,
    )
    values.update(kw)
    return Approval(**values)  # type: ignore[arg-type]


def audit(at: float, action: str = "press", *, env: str = ENV, work_item_id: str = "WI-1", **kw: object) -> AuditEntry:
    return AuditEntry(at=at, environment=env, work_item_id=work_item_id, action=action, **kw)  # type: ignore[arg-type]


def mapping(fo_user: str = "Alex", *, env: str = ENV, **kw: object) -> UserMapping:
    values: dict[str, object] = dict(
        environment=env,
        fo_user=fo_user,
        object_id="oid-alex",
        upn="alex@contoso.example",
        display_name="Alex Wilber",
        expires_at=T0 + 3600,
    )
    values.update(kw)
    return UserMapping(**values)  # type: ignore[arg-type]


# --- approvals: upsert and read ------------------------------------------------------------------------------------
async def test_approval_round_trips_every_field(store: Store) -> None:
    full = approval(
        status="decided",
        outcome="Approve",
        comment="ok — within budget ✓",
        decided_by_object_id="oid-megan",
        decided_by_name="Megan Bowen",
        decided_at=T0 + 60,
        fo_status="Completed",
        superseded_by="WI-2",
        reminders_sent=3,
        last_reminder_at=T0 + 30,
        next_check_at=T0 + 90.5,
        updated_at=T0 + 60,
    )
    await store.upsert_approval(full)
    got = await store.get_approval(ENV, "WI-1")
    assert got == full
    assert isinstance(got.outcomes, list) and isinstance(got.reminders_sent, int)

    minimal = Approval(environment=ENV, work_item_id="WI-min", event_id="evt")
    await store.upsert_approval(minimal)
    assert await store.get_approval(ENV, "WI-min") == minimal  # defaults (None, [], 0) round-trip too


async def test_unknown_approval_reads_as_none(store: Store) -> None:
    assert await store.get_approval(ENV, "nope") is None
    await store.upsert_approval(approval("WI-1"))
    assert await store.get_approval("fabrikam-prod", "WI-1") is None  # other environment
    assert await store.get_approval(ENV, "wi-1") is None  # work item ids are exact


async def test_upsert_replaces_by_environment_and_work_item(store: Store) -> None:
    await store.upsert_approval(approval("WI-1"))
    await store.upsert_approval(approval("WI-1", env="fabrikam-prod", subject="other environment"))
    replaced = approval("WI-1", status="closed", outcomes=["Approve"], subject=None, fo_status="Recalled",
                        updated_at=T0 + 5)
    await store.upsert_approval(replaced)
    assert await store.get_approval(ENV, "WI-1") == replaced  # every field replaced, the list shrunk, None kept
    assert (await store.get_approval("fabrikam-prod", "WI-1")).subject == "other environment"
    assert len(await store.list_approvals()) == 2


# --- approvals: compare-and-set ------------------------------------------------------------------------------------
async def test_transition_applies_changes_when_the_status_matches(store: Store) -> None:
    await store.upsert_approval(approval())
    changes = {
        "status": "submitting",
        "outcome": "Approve",
        "comment": "fine",
        "decided_by_object_id": "oid-alex",
        "decided_by_name": "Alex Wilber",
        "updated_at": T0 + 10,
    }
    got = await store.transition_approval(ENV, "WI-1", from_status=("pending",), changes=changes)
    assert got == dataclasses.replace(approval(), **changes)
    assert await store.get_approval(ENV, "WI-1") == got

    done = await store.transition_approval(
        ENV, "WI-1", from_status=("submitting",),
        changes={"status": "decided", "decided_at": T0 + 11, "fo_status": "Completed", "outcomes": []},
    )
    assert (done.status, done.decided_at, done.fo_status, done.outcomes) == ("decided", T0 + 11, "Completed", [])
    assert done.outcome == "Approve" and done.updated_at == T0 + 10  # untouched fields stay; updated_at not implied


async def test_transition_refused_when_the_status_does_not_match(store: Store) -> None:
    before = approval(status="decided", outcome="Reject")
    await store.upsert_approval(before)
    assert await store.transition_approval(
        ENV, "WI-1", from_status=("pending", "submitting"), changes={"status": "submitting", "outcome": "Approve"}
    ) is None
    assert await store.get_approval(ENV, "WI-1") == before  # nothing changed
    assert await store.transition_approval(ENV, "WI-404", from_status=("pending",), changes={"status": "x"}) is None
    assert await store.get_approval(ENV, "WI-404") is None  # a transition never creates one


async def test_transition_accepts_any_of_several_statuses(store: Store) -> None:
    await store.upsert_approval(approval("WI-1", status="submitting"))
    await store.upsert_approval(approval("WI-2", status="pending"))
    for work_item_id in ("WI-1", "WI-2"):
        got = await store.transition_approval(
            ENV, work_item_id, from_status=("pending", "submitting"),
            changes={"status": "superseded", "superseded_by": "WI-9"},
        )
        assert (got.status, got.superseded_by) == ("superseded", "WI-9")


async def test_transition_can_set_any_field_but_the_key(store: Store) -> None:
    await store.upsert_approval(approval())
    changes = {
        "event_id": "evt-other",
        "assignee_fo_user": "Megan",
        "assignee_object_id": "oid-megan",
        "assignee_name": "Megan Bowen",
        "subject": "changed",
        "outcomes": ("Approve", "Reject"),  # any sequence; read back as a list
        "reminders_sent": 2,
        "last_reminder_at": T0 + 7,
        "next_check_at": T0 + 900,
        "created_at": T0 - 1,
        "superseded_by": None,
    }
    got = await store.transition_approval(ENV, "WI-1", from_status=("pending",), changes=changes)
    assert got == dataclasses.replace(approval(), **{**changes, "outcomes": ["Approve", "Reject"]})
    assert await store.get_approval(ENV, "WI-1") == got


async def test_transition_with_no_changes_only_checks_the_status(store: Store) -> None:
    await store.upsert_approval(approval())
    assert await store.transition_approval(ENV, "WI-1", from_status=("pending",), changes={}) == approval()
    assert await store.transition_approval(ENV, "WI-1", from_status=("decided",), changes={}) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"environment": "fabrikam-prod"},
        {"work_item_id": "WI-2"},
        {"status": "decided", "work_item_id": "WI-2"},
        {"statuss": "decided"},
        {"status": "decided", "decision": "Approve"},
    ],
    ids=["environment", "work_item_id", "key-with-others", "typo", "unknown-with-known"],
)
async def test_transition_refuses_the_key_and_unknown_fields(store: Store, changes: dict) -> None:
    await store.upsert_approval(approval())
    with pytest.raises(ValueError):
        await store.transition_approval(ENV, "WI-1", from_status=("pending",), changes=changes)
    assert await store.get_approval(ENV, "WI-1") == approval()  # nothing applied, not even the valid part


@pytest.mark.parametrize("from_status", ["pending", ()], ids=["bare-string", "empty"])
async def test_transition_refuses_a_malformed_from_status(store: Store, from_status: object) -> None:
    await store.upsert_approval(approval())
    with pytest.raises(ValueError):
        await store.transition_approval(ENV, "WI-1", from_status=from_status, changes={"status": "submitting"})
    assert await store.get_approval(ENV, "WI-1") == approval()


async def test_twenty_concurrent_presses_make_one_decision(store: Store) -> None:
    """The guarantee behind "one decision however often the button is pressed"."""
    await store.upsert_approval(approval())
    answers = await asyncio.gather(
        *(
            store.transition_approval(
                ENV, "WI-1", from_status=("pending",),
                changes={"status": "submitting", "outcome": f"outcome-{i}", "decided_by_object_id": f"oid-{i}"},
            )
            for i in range(20)
        )
    )
    winners = [a for a in answers if a is not None]
    assert len(winners) == 1 and answers.count(None) == 19
    stored = await store.get_approval(ENV, "WI-1")
    assert stored == winners[0] and stored.status == "submitting"
    assert stored.decided_by_object_id == f"oid-{stored.outcome.removeprefix('outcome-')}"  # one caller's changes


async def test_concurrent_competing_transitions_make_one_winner(store: Store) -> None:
    """Deciders and a reconciler race from "pending": exactly one of all of them moves it; then, from "submitting",
    F&O's answer and a reconciler race again: exactly one again."""
    await store.upsert_approval(approval())
    deciders = [
        store.transition_approval(ENV, "WI-1", from_status=("pending",), changes={"status": "submitting"})
        for _ in range(10)
    ]
    closers = [
        store.transition_approval(ENV, "WI-1", from_status=("pending",), changes={"status": "closed"})
        for _ in range(10)
    ]
    mixed = [c for pair in zip(deciders, closers) for c in pair]
    assert sum(a is not None for a in await asyncio.gather(*mixed)) == 1

    await store.upsert_approval(approval("WI-2", status="submitting"))
    finals = [
        store.transition_approval(
            ENV, "WI-2", from_status=("submitting",),
            changes=(
                {"status": "decided", "decided_at": T0 + i} if i % 2 else {"status": "closed", "fo_status": "Failed"}
            ),
        )
        for i in range(20)
    ]
    winners = [a for a in await asyncio.gather(*finals) if a is not None]
    assert len(winners) == 1 and await store.get_approval(ENV, "WI-2") == winners[0]


async def test_concurrent_transitions_on_different_items_do_not_interfere(store: Store) -> None:
    for n in range(10):
        await store.upsert_approval(approval(f"WI-{n}"))
    answers = await asyncio.gather(
        *(
            store.transition_approval(ENV, f"WI-{n % 10}", from_status=("pending",), changes={"status": "submitting"})
            for n in range(40)
        )
    )
    won = sorted(a.work_item_id for a in answers if a is not None)
    assert won == sorted(f"WI-{n}" for n in range(10))


# --- approvals: listing -----------------------------------------------------------------------------------------
async def test_list_approvals_oldest_next_check_first_with_filters(store: Store) -> None:
    assert await store.list_approvals() == []
    await store.upsert_approval(approval("WI-a", next_check_at=T0 + 30))
    await store.upsert_approval(approval("WI-b", next_check_at=T0 + 10, status="submitting"))
    await store.upsert_approval(approval("WI-c", next_check_at=T0 + 20))
    await store.upsert_approval(approval("WI-d", next_check_at=T0 + 40, status="decided"))
    await store.upsert_approval(approval("WI-e", next_check_at=T0 + 5, env="fabrikam-prod"))

    def ids(found: list[Approval]) -> list[str]:
        return [a.work_item_id for a in found]

    assert ids(await store.list_approvals()) == ["WI-e", "WI-b", "WI-c", "WI-a", "WI-d"]
    assert ids(await store.list_approvals(status="pending")) == ["WI-e", "WI-c", "WI-a"]
    assert ids(await store.list_approvals(due_before=T0 + 20)) == ["WI-e", "WI-b", "WI-c"]  # inclusive
    assert ids(await store.list_approvals(status="pending", due_before=T0 + 29.9)) == ["WI-e", "WI-c"]
    assert ids(await store.list_approvals(due_before=T0)) == []
    assert ids(await store.list_approvals(status="closed")) == []
    assert ids(await store.list_approvals(limit=2)) == ["WI-e", "WI-b"]
    assert ids(await store.list_approvals(status="pending", limit=1)) == ["WI-e"]
    assert (await store.list_approvals(status="decided"))[0] == approval("WI-d", next_check_at=T0 + 40,
                                                                         status="decided")


async def test_list_approvals_follows_transitions(store: Store) -> None:
    for n, at in enumerate((10, 20, 30)):
        await store.upsert_approval(approval(f"WI-{n}", next_check_at=T0 + at))
    await store.transition_approval(ENV, "WI-0", from_status=("pending",), changes={"next_check_at": T0 + 99})
    await store.transition_approval(ENV, "WI-1", from_status=("pending",), changes={"status": "decided"})
    assert [a.work_item_id for a in await store.list_approvals(status="pending")] == ["WI-2", "WI-0"]


async def test_list_approvals_ties_are_stable(store: Store) -> None:
    for work_item_id in ("WI-3", "WI-1", "WI-2"):
        await store.upsert_approval(approval(work_item_id, next_check_at=T0))
    first = [a.work_item_id for a in await store.list_approvals()]
    assert first == ["WI-1", "WI-2", "WI-3"]  # same next_check_at: by environment, then work item id
    assert [a.work_item_id for a in await store.list_approvals()] == first


@pytest.mark.parametrize("limit", [0, -1])
async def test_list_limits_must_be_positive(store: Store, limit: int) -> None:
    with pytest.raises(ValueError):
        await store.list_approvals(limit=limit)
    with pytest.raises(ValueError):
        await store.list_audit(limit=limit)


# --- audit ---------------------------------------------------------------------------------------------------------
async def test_audit_round_trips_every_field(store: Store) -> None:
    entry = audit(
        T0 + 1.25,
        "refused",
        actor_object_id="oid-megan",
        actor_name="Megan Bowen",
        outcome="Approve",
        comment="é ✓ \"quoted\"",
        card="19:abc@thread.tacv2;messageid=1/act-1",
        detail="not the assignee",
    )
    await store.append_audit(entry)
    await store.append_audit(audit(T0 + 2, "reminder"))
    assert await store.list_audit() == [audit(T0 + 2, "reminder"), entry]


async def test_audit_newest_first_with_filters_and_limit(store: Store) -> None:
    assert await store.list_audit() == []
    await store.append_audit(audit(T0 + 1, "press"))
    await store.append_audit(audit(T0 + 5, "completed"))
    await store.append_audit(audit(T0 + 3, "submitted"))  # appended later, but older
    await store.append_audit(audit(T0 + 4, "press", work_item_id="WI-2"))
    await store.append_audit(audit(T0 + 2, "press", env="fabrikam-prod"))

    def actions(found: list[AuditEntry]) -> list[tuple[float, str]]:
        return [(e.at - T0, e.action) for e in found]

    assert actions(await store.list_audit()) == [
        (5, "completed"), (4, "press"), (3, "submitted"), (2, "press"), (1, "press"),
    ]
    assert actions(await store.list_audit(environment=ENV, work_item_id="WI-1")) == [
        (5, "completed"), (3, "submitted"), (1, "press"),
    ]
    assert actions(await store.list_audit(environment=ENV)) == [(5, "completed"), (4, "press"), (3, "submitted"),
                                                                (1, "press")]
    assert actions(await store.list_audit(work_item_id="WI-1")) == [(5, "completed"), (3, "submitted"), (2, "press"),
                                                                    (1, "press")]
    assert actions(await store.list_audit(environment="fabrikam-prod")) == [(2, "press")]
    assert actions(await store.list_audit(environment=ENV, work_item_id="WI-1", limit=2)) == [
        (5, "completed"), (3, "submitted"),
    ]
    assert await store.list_audit(work_item_id="WI-404") == []


async def test_audit_same_timestamp_newest_appended_first(store: Store) -> None:
    for n in range(15):
        await store.append_audit(audit(T0, "press", detail=f"#{n}"))
    assert [e.detail for e in await store.list_audit()] == [f"#{n}" for n in reversed(range(15))]


async def test_audit_is_append_only(store: Store) -> None:
    entry = audit(T0, "press")
    await store.append_audit(entry)
    await store.append_audit(entry)  # the same entry twice is two entries: nothing is deduplicated or replaced
    assert await store.list_audit() == [entry, entry]
    audit_methods = {name for name in dir(store) if "audit" in name and not name.startswith("_")}
    # no way to change or remove one entry; only an admin's explicit purge by age (`events purge --audit`)
    assert audit_methods == {"append_audit", "list_audit", "purge_audit"}


async def test_concurrent_audit_appends_all_land(store: Store) -> None:
    await asyncio.gather(*(store.append_audit(audit(T0 + n, "press", detail=str(n))) for n in range(50)))
    found = await store.list_audit(limit=100)
    assert [e.detail for e in found] == [str(n) for n in reversed(range(50))]


# --- user mappings -------------------------------------------------------------------------------------------------
async def test_user_mapping_round_trip_and_case_insensitive_lookup(store: Store) -> None:
    assert await store.get_user_mapping(ENV, "Alex") is None
    stored = mapping("Alex")
    await store.put_user_mapping(stored)
    for spelled in ("Alex", "alex", "ALEX", "aLeX"):
        assert await store.get_user_mapping(ENV, spelled) == stored
    assert await store.get_user_mapping("fabrikam-prod", "Alex") is None  # per environment
    assert await store.get_user_mapping(ENV, "Alexa") is None


async def test_user_mapping_put_replaces_whatever_the_case(store: Store) -> None:
    await store.put_user_mapping(mapping("ALEX", expires_at=T0 + 10))
    newer = mapping("alex", object_id="oid-alex-2", display_name="Alex W.", expires_at=T0 + 20, source="config")
    await store.put_user_mapping(newer)
    assert await store.get_user_mapping(ENV, "Alex") == newer  # one mapping, spelled as last put
    other_env = mapping("alex", env="fabrikam-prod", object_id="oid-f")
    await store.put_user_mapping(other_env)
    assert await store.get_user_mapping(ENV, "ALEX") == newer
    assert await store.get_user_mapping("fabrikam-prod", "ALEX") == other_env


async def test_user_mapping_negative_and_expired_entries_are_returned(store: Store) -> None:
    negative = mapping("ghost", object_id=None, upn=None, display_name=None, expires_at=T0 - 1)
    await store.put_user_mapping(negative)
    assert await store.get_user_mapping(ENV, "GHOST") == negative  # expired and negative: the caller decides


async def test_user_mapping_non_ascii_case_folding(store: Store) -> None:
    await store.put_user_mapping(mapping("Ärger"))
    assert (await store.get_user_mapping(ENV, "äRGER")).fo_user == "Ärger"


# --- lifecycle -------------------------------------------------------------------------------------------------------
async def test_open_again_keeps_approvals_audit_and_mappings(store: Store) -> None:
    await store.upsert_approval(approval())
    await store.append_audit(audit(T0))
    await store.put_user_mapping(mapping())
    await store.open()
    assert await store.get_approval(ENV, "WI-1") == approval()
    assert await store.list_audit() == [audit(T0)]
    assert await store.get_user_mapping(ENV, "alex") == mapping()
