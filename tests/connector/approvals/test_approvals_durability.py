"""Crash safety, F&O latency and throttling, the reconciler, reminders, delegation, the 1:1 copy's install."""

from __future__ import annotations

import asyncio
import time

from approvals_fakes import (ADELE, CHANNEL, ENV, MEGAN, WI, World, buttons, chat_of, execute, make_world,
                             personal_install, submit, text_of)
from connector.approvals import format_approvals, format_audit, show_approval
from connector.store import EventStatus, open_store
from dynamics import ODataThrottled


async def test_killed_right_after_the_ack_the_decision_reaches_f_and_o_once_after_restart(tmp_path, world):
    await world.work_item_event()
    answer = await world.service.on_submit(submit(MEGAN, comment="ok"))
    assert isinstance(answer, dict)  # acknowledged: Teams has its answer
    # the process dies: no pipeline ran; drop everything but the database file
    await world.store.close()
    store = open_store(f"sqlite:///{world.path}")
    await store.open()
    reborn = World(store, world.clock, world.poster, world.workflow, world.graph, world.settings, world.path).build()
    await reborn.run_pipeline()
    assert world.workflow.completions == [
        (WI, "Approve", f"Approved in Microsoft Teams by Megan Bowen ({MEGAN.upn}): ok")]
    # the reconciler finds nothing to redo, and the job does not run twice
    world.clock.now += 3600
    await reborn.approvals.reconciler.reconcile_once(world.clock.now)
    await reborn.run_pipeline()
    assert len(world.workflow.completions) == 1
    assert (await store.get_approval(ENV, WI)).status == "decided"
    world.store = store  # the fixture closes this one


async def test_a_crash_between_the_cas_and_the_enqueue_is_repaired_by_the_reconciler(world):
    await world.work_item_event()
    now = world.clock()
    await world.store.transition_approval(ENV, WI, from_status=("pending",), changes={
        "status": "submitting", "outcome": "Reject", "comment": "no", "decided_by_object_id": MEGAN.id,
        "decided_by_name": "Megan Bowen", "decided_at": now, "updated_at": now,
        "next_check_at": now + world.settings.submitting_stale_after})
    assert await world.run_pipeline() == 0  # no job: the crash lost it
    await world.approvals.reconciler.reconcile_once(now + 10)
    assert await world.run_pipeline() == 0  # not stale yet
    world.clock.now = now + world.settings.submitting_stale_after + 1
    lines = await world.approvals.reconciler.reconcile_once(world.clock.now)
    assert any("re-enqueued" in line for line in lines)
    await world.run_pipeline()
    assert [c[:2] for c in world.workflow.completions] == [(WI, "Reject")]
    world.clock.now = now + 10 * world.settings.submitting_stale_after
    await world.approvals.reconciler.reconcile_once(world.clock.now)
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1


async def test_the_press_returns_fast_while_f_and_o_takes_its_time(world):
    await world.work_item_event()
    world.workflow.gate = asyncio.Event()  # F&O answers only when released ("after 5 s")
    world.pipeline.poll_interval = 0.01
    await world.pipeline.start()
    try:
        started = time.monotonic()
        answer = await world.service.on_execute(execute(MEGAN, "approve"))
        elapsed = time.monotonic() - started
        assert elapsed < 2.0 and isinstance(answer, dict)
        await asyncio.wait_for(world.workflow.entered.wait(), timeout=10)  # the job is inside complete()
        assert world.workflow.completions == []
        world.workflow.gate.set()
        deadline = time.monotonic() + 10
        while (await world.store.get_approval(ENV, WI)).status != "decided":
            assert time.monotonic() < deadline, "the decision never landed"
            await asyncio.sleep(0.01)
    finally:
        await world.pipeline.stop()
    assert len(world.workflow.completions) == 1


async def test_a_throttled_complete_is_retried_after_retry_after(world):
    await world.work_item_event()
    world.workflow.fail_complete.append(ODataThrottled(120))
    await world.service.on_submit(submit(MEGAN))
    await world.run_pipeline()
    assert world.workflow.completions == []
    [job] = [e for e in await world.store.list_events() if e.business_event_id == "ml-connector.ApprovalDecision"]
    assert job.status == EventStatus.QUEUED and job.next_attempt_at >= world.clock() + 120
    world.clock.now = job.next_attempt_at
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1 and world.workflow.validations == [WI, WI]


async def test_card_updates_that_fail_transiently_are_retried(world):
    from bot import TeamsUnavailable
    await world.work_item_event()
    world.poster.fail_updates.append(TeamsUnavailable(5.0, 503))
    await world.service.on_submit(submit(MEGAN))
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1
    [job] = [e for e in await world.store.list_events() if e.business_event_id == "ml-connector.ApprovalDecision"]
    assert job.stage == "approval-cards" and job.status == EventStatus.QUEUED
    world.clock.now = job.next_attempt_at
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1  # the F&O call is not repeated
    assert {a for _, a, _ in world.poster.updates} >= {WI}
    assert '"Approved"' in text_of(world.poster.last_card(WI))


async def test_decided_in_f_and_o_directly_the_reconciler_corrects_the_cards(world):
    await world.work_item_event()
    world.workflow.rows[WI].update(Status="Completed", Outcome="Reject", Comment="too expensive", CompletedBy="megan")
    assert await world.approvals.reconciler.reconcile_once(world.clock.now + 60) == []  # not due yet
    world.clock.now += world.settings.reconcile_every
    lines = await world.approvals.reconciler.reconcile_once(world.clock.now)
    assert lines == [f"{WI}: closed (Completed)"]
    await world.run_pipeline()
    card = world.poster.last_card(WI)
    assert '"Rejected"' in text_of(card) and "megan in Dynamics" in text_of(card) and buttons(card) == []
    assert world.workflow.completions == []


async def test_the_reconciler_keeps_to_its_f_and_o_budget(tmp_path):
    from connector.approvals import ApprovalSettings
    world = await make_world(str(tmp_path / "b.db"), settings=ApprovalSettings(reconcile_per_minute=2))
    try:
        for wid in ("1", "2", "3"):
            world.workflow.add(wid)
            await world.work_item_event(wid, route_personal=False)
        later = world.clock.now + world.settings.reconcile_every
        lines = await world.approvals.reconciler.reconcile_once(later)
        assert len(world.workflow.validations) == 2 and "budget spent" in lines[-1]
        await world.approvals.reconciler.reconcile_once(later + 30)  # one call's worth refilled
        assert len(world.workflow.validations) == 3
    finally:
        await world.store.close()


async def test_a_workflow_event_closes_a_recalled_item(world):
    await world.work_item_event()
    world.workflow.rows[WI]["Status"] = "Recalled"
    record = world.records[WI]
    from dataclasses import replace
    event = replace(record, business_event_id="Workflow_VendInvoiceReview_000123",
                    payload={"WorkflowWorkItemInstanceId": WI, "WorkflowStatus": "Canceled"})
    outcome = await world.approvals.stages()["approval-sync"](event)
    assert "closed (Recalled)" in outcome.detail
    await world.run_pipeline()
    assert "No longer pending in Dynamics (Recalled)" in text_of(world.poster.last_card(WI))


async def test_delegation_supersedes_the_old_cards(world):
    await world.work_item_event()
    world.workflow.rows[WI].update(Status="Delegated", ReassignedWorkItemId="5637169400", ReassignedTo="adele")
    await world.store.upsert_install(personal_install(ADELE.id))
    notes = await world.work_item_event("5637169400", "adele", previous=WI)
    assert any("superseded by 5637169400" in n for n in notes)
    old = await world.store.get_approval(ENV, WI)
    assert old.status == "superseded" and old.superseded_by == "5637169400"
    await world.run_pipeline()
    card = world.poster.last_card(WI)
    assert "Reassigned in Dynamics" in text_of(card) and "to Adele Vance" in text_of(card) and buttons(card) == []
    # Megan's old card no longer decides anything
    answer = await world.service.on_submit(submit(MEGAN))
    assert "reassigned" in text_of(answer)
    assert world.workflow.completions == []


async def test_reminders_reply_in_every_copy_and_stop_once_decided(world):
    await world.work_item_event()
    rec = world.approvals.reconciler
    start = world.clock.now
    assert await rec.remind_once(start + 3600) == []
    assert len(await rec.remind_once(start + 24 * 3600)) == 1
    threads = sorted(conv for conv, _, _ in world.poster.replies)
    assert threads == sorted([f"{CHANNEL};messageid={WI}", chat_of(MEGAN.id)])
    _, card, _ = world.poster.replies[0]
    assert card["msteams"]["entities"][0]["mentioned"]["id"] == MEGAN.id
    assert "<at>Megan Bowen</at>" in card["body"][0]["text"]
    assert await rec.remind_once(start + 24 * 3600 + 60) == []  # not again before `every`
    assert len(await rec.remind_once(start + 48 * 3600)) == 1
    await world.service.on_submit(submit(MEGAN))
    assert await rec.remind_once(start + 72 * 3600) == []
    assert (await world.store.get_approval(ENV, WI)).reminders_sent == 2


async def test_the_personal_copy_installs_the_app_first(world):
    world.poster.personal_forbidden.add(ADELE.id)
    world.workflow.add("42", "adele")

    async def create_personal(service_url, tenant_id, oid, card, *, text=None, _orig=world.poster.create_personal):
        if await world.store.get_install(f"personal:{oid}") is not None:
            world.poster.personal_forbidden.discard(oid)
        return await _orig(service_url, tenant_id, oid, card, text=text)

    world.poster.create_personal = create_personal
    notes = await world.work_item_event("42", "adele")
    assert world.graph.installs == [(ADELE.id, "catalog-app-1")]
    assert any("1:1 copy sent" in n for n in notes)
    assert [c.kind for c in await world.store.cards_for_event(world.records["42"].id)] == ["thread", "personal"]


async def test_the_personal_copy_falls_back_to_the_mention_when_installing_is_not_permitted(world):
    world.poster.personal_forbidden.add(ADELE.id)
    world.graph.forbid_install = True
    world.workflow.add("43", "adele")
    notes = await world.work_item_event("43", "adele")
    assert any("not permitted" in n and "TeamsAppInstallation.ReadWriteSelfForUser.All" in n for n in notes)
    audit = await world.store.list_audit(work_item_id="43")
    assert any(e.action == "personal-copy" and "not permitted" in e.detail for e in audit)


async def test_installing_waits_with_a_deadline(world):
    world.poster.personal_forbidden.add(ADELE.id)
    world.graph.store = None  # Teams never confirms the install
    world.workflow.add("44", "adele")
    before = world.clock.now
    notes = await world.work_item_event("44", "adele")
    assert any("did not confirm within 30s" in n for n in notes)
    assert world.clock.now - before >= 30  # waited on the injected sleep, not for real


async def test_cli_text(world):
    await world.work_item_event()
    await world.service.on_submit(submit(MEGAN, comment="fine"))
    await world.run_pipeline()
    listing = format_approvals(await world.store.list_approvals())
    assert WI in listing and "decided (Completed)" in listing and "Megan Bowen" in listing
    shown = await show_approval(world.store, ENV, WI)
    assert "decision:  Approve by Megan Bowen" in shown and "comment='fine'" in shown
    assert shown.index(" press ") < shown.index(" completed ")
    assert "F&O answered" in format_audit(await world.store.list_audit(work_item_id=WI))
