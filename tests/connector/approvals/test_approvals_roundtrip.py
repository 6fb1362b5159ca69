"""The round trip with fakes for Teams and F&O and the real SQLite store."""

from __future__ import annotations

import asyncio

from approvals_fakes import ADELE, ALEX, CHANNEL, ENV, MEGAN, WI, buttons, chat_of, execute, kinds, submit, text_of


async def audit_actions(world, wid=WI) -> list[str]:
    return [e.action for e in reversed(await world.store.list_audit(environment=ENV, work_item_id=wid))]


async def test_posting_tracks_the_approval_and_sends_the_personal_copy(world):
    notes = await world.work_item_event()
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "pending" and approval.assignee_object_id == MEGAN.id
    assert approval.outcomes == ["Approve", "Reject"] and approval.assignee_fo_user == "megan"
    [(oid, card)] = world.poster.personal
    assert oid == MEGAN.id and [a["verb"] for a in buttons(card)] == ["approve", "reject"]
    cards = await world.store.cards_for_event(world.records[WI].id)
    assert sorted(c.kind for c in cards) == ["personal", "thread"]
    assert any("1:1 copy sent" in n for n in notes)


async def test_the_approver_approves_once_and_every_copy_is_updated(world):
    await world.work_item_event()
    answer = await world.service.on_submit(submit(MEGAN, comment="Prices checked"))
    assert isinstance(answer, dict) and "sending the decision to Dynamics" in text_of(answer)
    assert buttons(answer) == []  # no second press from the updated card
    assert world.workflow.completions == []  # the press itself never calls F&O
    await world.run_pipeline()
    assert world.workflow.completions == [
        (WI, "Approve", f"Approved in Microsoft Teams by Megan Bowen ({MEGAN.upn}): Prices checked")]
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "decided" and approval.decided_by_object_id == MEGAN.id
    updated = {(conv, act) for conv, act, _ in world.poster.updates}
    personal = [c for c in await world.store.cards_for_event(world.records[WI].id) if c.kind == "personal"][0]
    assert updated == {(f"{CHANNEL};messageid={WI}", WI), (chat_of(MEGAN.id), personal.activity_id)}
    for _, _, card in world.poster.updates:
        shown = text_of(card)
        assert '"Approved"' in shown and "Megan Bowen in Microsoft Teams" in shown and "Prices checked" in shown
        assert buttons(card) == [] and kinds(card, "Action.Submit") == []
        assert MEGAN.id in [e["mentioned"]["id"] for e in card["msteams"]["entities"]]  # mentions sent again
        assert "refresh" not in card
    assert await audit_actions(world) == ["tracked", "personal-copy", "press", "submitted", "completed"]
    # a later press sees the recorded decision
    again = await world.service.on_execute(execute(MEGAN, "reject"))
    assert "Already approved by Megan Bowen" in text_of(again)
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1


async def test_someone_else_is_refused_privately_without_f_and_o(world):
    await world.work_item_event()
    from approvals_fakes import personal_install
    await world.store.upsert_install(personal_install(ADELE.id))
    answer = await world.service.on_submit(submit(ADELE))
    assert answer is None  # the shared card is not touched
    await world.service.drain()
    [(conv, card, text)] = world.poster.replies
    assert conv == chat_of(ADELE.id) and card is None and "Only Megan Bowen can decide" in text
    # Action.Execute: a card only Adele sees, without buttons
    view = await world.service.on_execute(execute(ADELE, "reject"))
    assert buttons(view) == [] and "Only Megan Bowen can decide" in text_of(view)
    await world.run_pipeline()
    assert world.workflow.completions == [] and world.workflow.validations == []
    assert (await world.store.get_approval(ENV, WI)).status == "pending"
    refused = [e for e in await world.store.list_audit(work_item_id=WI) if e.action == "refused"]
    assert {e.actor_object_id for e in refused} == {ADELE.id} and len(refused) == 2
    assert world.poster.updates == []


async def test_refusal_without_a_personal_chat_is_a_short_thread_reply(world):
    await world.work_item_event()
    answer = await world.service.on_submit(submit(ALEX))
    assert answer == "Only Megan Bowen can decide on work item 5637169327."
    entry = [e for e in await world.store.list_audit(work_item_id=WI) if e.action == "refused"][0]
    assert "thread reply" in entry.detail


async def test_five_concurrent_presses_complete_once(world):
    await world.work_item_event()
    presses = [
        world.service.on_submit(submit(MEGAN, "approve")),
        world.service.on_execute(execute(MEGAN, "approve")),
        world.service.on_submit(submit(MEGAN, "reject", personal=True, activity="p1")),
        world.service.on_execute(execute(MEGAN, "reject", personal=True, activity="p1")),
        world.service.on_submit(submit(MEGAN, "approve", comment="twice")),
    ]
    answers = await asyncio.gather(*presses)
    assert all(isinstance(a, dict) for a in answers)
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1
    entries = await world.store.list_audit(work_item_id=WI)
    assert [e.action for e in entries].count("submitted") == 1
    assert sum("ignored: Already" in e.detail for e in entries) == 4
    events = await world.store.list_events()
    assert [e.business_event_id for e in events].count("ml-connector.ApprovalDecision") == 1


async def test_recalled_before_the_press_is_no_longer_pending(world):
    await world.work_item_event()
    world.workflow.rows[WI]["Status"] = "Recalled"
    await world.service.on_submit(submit(MEGAN))
    await world.run_pipeline()
    assert world.workflow.completions == [] and world.workflow.validations == [WI]
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "closed" and approval.fo_status == "Recalled"
    card = world.poster.last_card(WI)
    assert "No longer pending in Dynamics (Recalled)" in text_of(card) and buttons(card) == []
    assert "not-pending" in await audit_actions(world)


async def test_unknown_outcome_and_unmapped_approver_are_refused(world):
    world.workflow.add("777", "adele")
    world.graph.get_user = _none  # nobody in Entra ID
    notes = await world.work_item_event("777", "adele", mention=False)
    assert any("not mapped" in n for n in notes)
    approval = await world.store.get_approval(ENV, "777")
    assert approval.assignee_object_id is None
    answer = await world.service.on_submit(submit(ADELE, wid="777", personal=True))
    assert "cannot be decided in Teams" in answer
    world.workflow.add(WI)
    await world.work_item_event()
    answer = await world.service.on_execute(execute(MEGAN, "escalate"))
    assert answer == "'escalate' is not an outcome of work item 5637169327."


async def _none(key):
    return None


async def test_refresh_gives_each_viewer_their_view(world):
    await world.work_item_event()
    mine = await world.service.on_execute(execute(MEGAN, "refresh"))
    theirs = await world.service.on_execute(execute(ADELE, "refresh"))
    assert [a["verb"] for a in buttons(mine)] == ["approve", "reject"]
    assert [a["title"] for a in kinds(mine, "Action.Submit")] == ["Approve", "Reject"]  # fallback for old clients
    assert buttons(theirs) == []
    assert "Waiting for a decision by Megan Bowen" in text_of(theirs)
    assert mine["refresh"]["action"]["verb"] == "refresh"
    # Megan's press taught us her MRI: from now on the refresh names her
    assert mine["refresh"]["userIds"] == [f"29:{MEGAN.id}"]


def test_delivery_helpers():
    from connector.approvals import add_refresh, is_workflow_progress_event
    assert is_workflow_progress_event("Workflow_VendInvoiceReview_000123_VendInvoiceApproval")
    assert is_workflow_progress_event("Workflow_VendInvoiceReview_000123")
    assert not is_workflow_progress_event("Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem")
    assert not is_workflow_progress_event("PurchaseOrderConfirmedBusinessEvent")
    card = add_refresh({"type": "AdaptiveCard"}, {"approval": {"workItemId": "1"}, "environment": {"name": "e"},
                                                  "event": {"EventId": "E"}})
    assert card["refresh"] == {"action": {"type": "Action.Execute", "title": "Refresh", "verb": "refresh",
                                          "data": {"action": "refresh", "workItemId": "1", "eventId": "E",
                                                   "environment": "e"}}}
    assert "refresh" not in add_refresh({}, {"event": {}})


async def test_every_view_is_a_valid_teams_card(world):
    from cards import validate_card
    from connector.store import Approval
    await world.work_item_event()
    copies = world.approvals.deps.copies
    copies.learn_mri(MEGAN.id, f"29:{MEGAN.id}")
    base = await world.store.get_approval(ENV, WI)
    states = [base, Approval(**{**base.__dict__, "status": "submitting", "outcome": "Approve", "decided_at": 1.0,
                                "decided_by_name": "Megan Bowen"}),
              Approval(**{**base.__dict__, "status": "decided", "outcome": "Reject", "fo_status": "Completed"}),
              Approval(**{**base.__dict__, "status": "closed", "fo_status": "Recalled"}),
              Approval(**{**base.__dict__, "status": "superseded", "superseded_by": "9", "fo_status": "Delegated"})]
    for approval in states:
        for view in ("approver", "status", "base"):
            card = await copies.render(approval, view=view)
            assert validate_card(card) == [], (approval.status, view)
            assert ("refresh" in card) == (approval.status in ("pending", "submitting"))
    base_card = await copies.render(base, view="base")
    assert base_card["refresh"]["userIds"] == [f"29:{MEGAN.id}"] and buttons(base_card) == []


async def test_f_and_o_refusing_validation_of_a_pending_item_sends_the_approver_to_dynamics(world):
    await world.work_item_event()

    async def refuse(wid):  # e.g. F&O lets only the assignee validate, and we call as the service user
        world.workflow.validations.append(wid)
        return False

    world.workflow.validate = refuse
    await world.service.on_submit(submit(MEGAN))
    await world.run_pipeline()
    assert world.workflow.completions == []
    card = world.poster.last_card(WI)
    assert "please decide in Dynamics" in text_of(card) and buttons(card) == []


async def test_a_decision_f_and_o_refuses_reopens_the_buttons(world):
    from dynamics import ODataBadRequest
    await world.work_item_event()
    world.workflow.fail_complete.append(ODataBadRequest(400, "", "Outcome 'Approve' is not allowed now."))
    await world.service.on_submit(submit(MEGAN))
    await world.run_pipeline()
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "pending" and approval.outcome is None
    audit = await world.store.list_audit(work_item_id=WI)
    assert audit[0].action == "failed" and "not allowed now" in audit[0].detail
    personal = [c for c in await world.store.cards_for_event(world.records[WI].id) if c.kind == "personal"][0]
    assert [a["verb"] for a in buttons(world.poster.last_card(personal.activity_id))] == ["approve", "reject"]
    # in the channel, Megan's client refreshes to her buttons (her press told us her MRI); others see the status
    channel = world.poster.last_card(WI)
    assert channel["refresh"]["userIds"] == [f"29:{MEGAN.id}"] and "Waiting for a decision" in text_of(channel)
    # the approver tries again: a new decision job (keyed on the new press), completed once
    world.clock.now += 60
    await world.service.on_submit(submit(MEGAN, "reject"))
    await world.run_pipeline()
    assert [c[1] for c in world.workflow.completions] == ["Reject"]


async def test_every_copy_is_rendered_in_the_environments_locale(world):
    """A decision re-renders every copy of an approval card: it stays in the environment's card locale."""
    import json
    world.workflow.add(WI, DueDateTime="2026-03-05T10:00:00Z")
    await world.work_item_event()
    copies = world.approvals.deps.copies
    approval = await world.store.get_approval(ENV, WI)
    english = json.dumps(await copies.render(approval, view="status"), ensure_ascii=False)
    copies.locales[ENV] = "de-DE"
    german = json.dumps(await copies.render(approval, view="status"), ensure_ascii=False)
    assert "05 Mar 2026" in english and "05 März 2026" in german, german
