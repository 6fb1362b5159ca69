"""Typed replies decide work items exactly like the buttons: the approval service's press path (approver check,
once-only, audit, card updates), fed by the bot's channel feed and the 1:1 chat through the reply inbox."""

from __future__ import annotations

import asyncio

from approvals_fakes import ADELE, CHANNEL, ENV, MEGAN, WI, chat_of, submit, text_of
from replies_kit import channel_reply, personal_reply, replies_for, settle

from connector.replies.config import ReplySettings
from connector.teams_bot import ConnectorBotHandlers


async def test_a_typed_reject_in_the_thread_completes_the_work_item_with_the_comment(world):
    await world.work_item_event()
    replies = replies_for(world)
    assert await replies.feed.offer(channel_reply(MEGAN, "<p>reject: wrong cost centre</p>")) is True
    await settle(world, replies)
    assert world.workflow.completions == [
        (WI, "Reject", f"Rejected in Microsoft Teams by Megan Bowen ({MEGAN.upn}): wrong cost centre")]
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "decided" and approval.outcome == "Reject"
    updated = {(conv, act) for conv, act, _ in world.poster.updates}  # every copy, like a press
    assert (f"{CHANNEL};messageid={WI}", WI) in updated and len(updated) == 2
    press = [e for e in await world.store.list_audit(environment=ENV, work_item_id=WI) if e.action == "press"]
    assert len(press) == 1 and press[0].detail.startswith("typed reply") and press[0].card.startswith("reply:")
    assert press[0].actor_object_id == MEGAN.id and press[0].comment == "wrong cost centre"
    assert world.poster.replies == []  # a decision is not chatted about: the cards say it


async def test_someone_else_typing_approve_is_refused_in_the_thread_and_f_and_o_is_untouched(world):
    await world.work_item_event()
    replies = replies_for(world)
    await replies.feed.offer(channel_reply(ADELE, "approve"))
    await settle(world, replies)
    assert world.workflow.completions == []
    assert (await world.store.get_approval(ENV, WI)).status == "pending"
    [(conv, card, text)] = world.poster.replies
    assert conv == f"{CHANNEL};messageid={WI}" and card is None and text.startswith("Only Megan Bowen can decide")
    refused = [e for e in await world.store.list_audit(environment=ENV, work_item_id=WI) if e.action == "refused"]
    assert len(refused) == 1 and refused[0].actor_object_id == ADELE.id and "typed reply" in refused[0].detail


async def test_an_ambiguous_reply_is_left_alone_unless_it_names_the_bot(world):
    await world.work_item_event()
    replies = replies_for(world)
    await replies.feed.offer(channel_reply(MEGAN, "maybe tomorrow"))
    await settle(world, replies)
    assert world.poster.replies == [] and world.workflow.completions == []
    await replies.feed.offer(channel_reply(MEGAN, "<at>ML Connector</at> maybe tomorrow", mention=True))
    await settle(world, replies)
    [(_, _, text)] = world.poster.replies
    assert "start your reply with" in text and '"approve"' in text
    assert (await world.store.get_approval(ENV, WI)).status == "pending"


async def test_replies_not_under_an_approval_card_and_the_bots_own_messages_are_not_taken(world):
    await world.work_item_event()
    replies = replies_for(world)
    assert await replies.feed.offer(channel_reply(MEGAN, "approve", wid="999")) is False  # another thread
    top = channel_reply(MEGAN, "approve", message_id=WI)  # the root itself: a top-level post
    assert await replies.feed.offer(top) is False
    bot = channel_reply(MEGAN, "approve")
    from dataclasses import replace
    assert await replies.feed.offer(replace(bot, from_bot=True)) is False
    await settle(world, replies)
    assert world.workflow.completions == [] and world.poster.replies == []


async def test_the_bot_answers_no_channel_traffic_that_is_not_for_it(world):
    replies = replies_for(world)
    handlers = ConnectorBotHandlers(installs=None, approvals=world.service, replies=replies.feed)  # type: ignore[arg-type]
    await world.work_item_event()
    assert await handlers.on_message(channel_reply(MEGAN, "lunch anyone?", wid="12345")) is None
    assert await handlers.on_message(channel_reply(MEGAN, "approve")) is None  # taken: the inbox decides
    assert "Dynamics" in await handlers.on_message(channel_reply(MEGAN, "hello", wid="12345", mention=True))


async def test_a_typed_reply_under_the_1_1_copy_decides_it(world):
    await world.work_item_event()
    personal = [c for c in await world.store.cards_for_event(world.records[WI].id) if c.kind == "personal"][0]
    replies = replies_for(world)
    handlers = ConnectorBotHandlers(installs=None, approvals=world.service, replies=replies.feed)  # type: ignore[arg-type]
    assert "Dynamics" in await handlers.on_message(personal_reply(MEGAN, "approve", replied_to=None))
    assert await handlers.on_message(personal_reply(MEGAN, "approved – ok to pay",
                                                    replied_to=personal.activity_id)) is None
    await settle(world, replies)
    assert world.workflow.completions == [
        (WI, "Approve", f"Approved in Microsoft Teams by Megan Bowen ({MEGAN.upn}): ok to pay")]
    assert chat_of(MEGAN.id) == personal.conversation_id


async def test_typed_approve_and_a_button_press_at_the_same_moment_complete_once(world):
    await world.work_item_event()
    replies = replies_for(world)
    await replies.feed.offer(channel_reply(MEGAN, "approve"))
    answer, _ = await asyncio.gather(world.service.on_submit(submit(MEGAN, "approve")), replies.inbox.run_once())
    await settle(world, replies)
    assert len(world.workflow.completions) == 1
    presses = [e for e in await world.store.list_audit(environment=ENV, work_item_id=WI) if e.action == "press"]
    assert len([p for p in presses if "ignored" not in p.detail]) == 1
    assert isinstance(answer, dict) or "Already" in text_of(answer)


async def test_the_same_message_through_graph_and_the_bot_feed_is_decided_once(world):
    await world.work_item_event()
    replies = replies_for(world, ReplySettings(source="both"))
    message = channel_reply(MEGAN, "approve", message_id="8001")
    assert await replies.feed.offer(message) is True
    assert await replies.inbox.accept_notification("8001", {"team": "g", "channel": CHANNEL, "root": WI,
                                                            "reply": "8001"}) is False  # the same Teams message id
    assert await replies.feed.offer(message) is True  # redelivered by Teams: still ours, stored once
    await settle(world, replies)
    assert len(world.workflow.completions) == 1
    assert (await world.store.get_reply("8001")).outcome.startswith("decided")


async def test_a_reply_stored_before_a_crash_is_decided_once_after_the_restart(world, tmp_path):
    await world.work_item_event()
    first = replies_for(world, owner="i-dead")
    await first.feed.offer(channel_reply(MEGAN, "approve", message_id="8101"))
    claimed = await world.store.claim_replies("i-dead", now=world.clock(), lease_seconds=60)
    assert [r.key for r in claimed] == ["8101"]  # ... and the process dies holding it
    second = replies_for(world, owner="i-new")
    assert await second.inbox.run_once() == 0  # the lease still runs
    world.clock.now += 61
    await settle(world, second)
    assert len(world.workflow.completions) == 1
    world.clock.now += 600
    await settle(world, second)
    assert len(world.workflow.completions) == 1


class HeldSignIns:
    """The on-behalf-of cache as the gate sees it: which approvers have a recent sign-in."""

    def __init__(self) -> None:
        self.users: set[str] = set()

    def has_token(self, user_object_id: str, scope: str) -> bool:
        return user_object_id in self.users

    async def exchange(self, *args, **kwargs) -> str:
        raise AssertionError("a typed reply never exchanges a token")


async def test_with_act_as_approver_a_typed_reply_needs_the_approvers_recent_sign_in(world):
    from connector.approvals.actas import REPLY_TEXT, SignInGate
    from connector.approvals.config import ApprovalSettings

    held = HeldSignIns()
    world.service.gate = SignInGate(ApprovalSettings(act_as="approver"), validator=object(), obo=held,
                                    scopes={ENV: "https://fno.example/.default"}, app_id="a", app_id_uri="api://a",
                                    sign_in_url="https://fno.example/signin")
    await world.work_item_event()
    replies = replies_for(world)
    first = channel_reply(MEGAN, "approve")
    await replies.feed.offer(first)
    await settle(world, replies)
    assert world.workflow.completions == [] and (await world.store.get_approval(ENV, WI)).status == "pending"
    [(_, _, text)] = world.poster.replies
    assert text == REPLY_TEXT
    assert (await world.store.get_reply(first.activity_id)).outcome.startswith("stopped")
    held.users.add(MEGAN.id)  # Megan pressed a button a moment ago: Teams signed her in
    await replies.feed.offer(channel_reply(MEGAN, "approve – ok"))
    assert await replies.inbox.run_once() == 1
    approval = await world.store.get_approval(ENV, WI)
    assert approval.status == "submitting" and approval.decided_by_object_id == MEGAN.id
