""""My approvals" in the 1:1 chat: the caller's list (only theirs), decisions from it through the channel card's
press path, pages within the size limit, items decided in F&O meanwhile, and the morning summary's schedule.
Fakes for Teams and F&O, the real SQLite store."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from approvals_fakes import (ADELE, CHANNEL, ENV, MEGAN, SU, TENANT, Clock, FakeWorkflow, chat_of, kinds,
                             make_world, personal_install, text_of)
from bot import CardExecute, IncomingMessage
from cards.limits import card_size
from cards.validate import validate_card
from connector.approvals import ApprovalSettings
from connector.approvals.config import CommandWords
from connector.approvals.my.commands import Command, parse
from connector.approvals.my.summary import next_send, to_iana
from connector.teams_bot import ConnectorBotHandlers

BERLIN = "Europe/Berlin"
MONDAY_0600_UTC = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.timezone.utc).timestamp()  # 07:00 in Berlin


class Workflow(FakeWorkflow):
    """F&O with the vendor invoice headers the list reads vendor and amount from."""

    async def get(self, entity_set, *, company, key, select=None):
        if entity_set == "VendorInvoiceHeaders":
            ref = key["HeaderReference"]
            return {"dataAreaId": company, "HeaderReference": ref, "VendorName": f"Vendor of {ref}",
                    "ImportedAmount": 1234.5, "Currency": "USD"}
        return await super().get(entity_set, company=company, key=key, select=select)


@pytest.fixture
async def world(tmp_path):
    w = await make_world(str(tmp_path / "my.db"), workflow=Workflow())
    for user in (MEGAN, ADELE):
        await w.store.upsert_install(personal_install(user.id))
    yield w
    await w.service.aclose()
    await w.store.close()


def message(user, text: str, *, personal: bool = True) -> IncomingMessage:
    return IncomingMessage(text=text, conversation_id=chat_of(user.id) if personal else f"{CHANNEL};messageid=9",
                           service_url=SU, tenant_id=TENANT, conversation_type="personal" if personal else "channel",
                           user_id=f"29:{user.id}", user_aad_object_id=user.id, user_name=user.display_name)


def press(user, data: dict, verb: str | None = None) -> CardExecute:
    return CardExecute(verb=verb or data.get("action") or "myApprovals", data=data, conversation_id=chat_of(user.id),
                       service_url=SU, tenant_id=TENANT, trigger="manual", reply_to_id="list-1",
                       conversation_type="personal", user_id=f"29:{user.id}", user_aad_object_id=user.id,
                       user_name=user.display_name)


def handlers(world) -> ConnectorBotHandlers:
    return ConnectorBotHandlers(None, world.service, world.approvals.my)  # type: ignore[arg-type]


def rows(card: dict) -> list[str]:
    """The work item ids the list card offers, in order (from the rows' Approve buttons)."""
    return [a["data"]["workItemId"] for a in kinds(card, "Action.Execute")
            if a["data"].get("action") == "approve" and a["data"].get("list")]


def pager(card: dict, title_start: str) -> dict | None:
    return next((a["data"] for a in kinds({k: v for k, v in card.items() if k != "refresh"}, "Action.Execute")
                 if a["title"].startswith(title_start)), None)


async def items(world, n: int, user: str = "megan", first: int = 5637170000) -> list[str]:
    ids = []
    for i in range(n):
        wid = str(first + i)
        await world.work_item_event(wid, user)
        world.clock.now += 1  # a defined order: oldest first
        ids.append(wid)
    return ids


# --- commands ----------------------------------------------------------------------------------------------------
def test_commands_are_configurable_words_per_language():
    words = CommandWords()
    assert parse("My  Approvals!", words).command is Command.MY_LIST
    assert parse("<at>ML Connector</at> meine Genehmigungen", words).command is Command.MY_LIST
    assert parse("my approvals daily on", words).command is Command.DAILY_ON
    assert parse("meine genehmigungen täglich aus", words).command is Command.DAILY_OFF
    assert parse("help", words).command is Command.HELP
    assert parse("what is the weather", words).command is Command.UNKNOWN
    assert parse("my approvals please", words).command is Command.UNKNOWN
    mine = CommandWords(my_approvals=["mis aprobaciones"], daily=["diario"], on=["sí"], off=["no"])
    assert parse("Mis aprobaciones", mine).command is Command.MY_LIST
    assert parse("mis aprobaciones diario sí", mine).command is Command.DAILY_ON
    assert parse("my approvals", mine).command is Command.UNKNOWN


async def test_one_to_one_commands_answer_with_the_list_or_help(world):
    await items(world, 2)
    bot = handlers(world)
    card = await bot.on_message(message(MEGAN, "my approvals"))
    assert isinstance(card, dict) and len(rows(card)) == 2 and "2 approvals wait for you" in text_of(card)
    assert card["refresh"]["userIds"] == [f"29:{MEGAN.id}"]  # refreshes for the caller only
    assert card["refresh"]["action"]["verb"] == "myApprovals"
    helped = await bot.on_message(message(MEGAN, "good morning"))
    assert isinstance(helped, dict) and "my approvals" in text_of(helped) and "did not understand" in text_of(helped)
    assert "did not understand" not in text_of(await bot.on_message(message(MEGAN, "help")))
    # in a channel the list is never shown (it is private): the usual pointer to the cards
    channel = await bot.on_message(message(MEGAN, "my approvals", personal=False))
    assert isinstance(channel, str) and "Open in Dynamics" in channel


# --- only the caller's items -------------------------------------------------------------------------------------
async def test_the_list_shows_only_the_callers_items_also_after_delegation(world):
    mine = await items(world, 3, "megan")
    [adeles] = await items(world, 1, "adele", first=5637180000)
    bot = handlers(world)
    assert rows(await bot.on_message(message(MEGAN, "my approvals"))) == mine
    assert rows(await bot.on_message(message(ADELE, "my approvals"))) == [adeles]
    # F&O delegates Megan's oldest item to Adele: the old item becomes Delegated, a new one is Adele's
    delegated = world.workflow.rows[mine[0]]
    delegated.update(Status="Delegated", ReassignedWorkItemId="5637190000")
    world.clock.now += world.settings.reconcile_every + 1  # older than the reconciler's interval: re-checked
    after = await bot.on_message(message(MEGAN, "my approvals"))
    assert rows(after) == mine[1:]
    assert (await world.store.get_approval(ENV, mine[0])).status == "superseded"
    await world.run_pipeline()  # the card update the re-check enqueued
    await world.work_item_event("5637190000", "adele", previous=mine[0])
    assert rows(await bot.on_message(message(ADELE, "my approvals"))) == [adeles, "5637190000"]
    assert mine[0] not in rows(await bot.on_message(message(ADELE, "my approvals")))
    # a button of Megan's list pressed by Adele (a forwarded card) is refused by the press path
    data = {"action": "approve", "workItemId": mine[1], "eventId": f"E-{mine[1]}", "environment": ENV,
            "list": "my-approvals", "after": ""}
    answer = await bot.on_execute(press(ADELE, data))
    assert "Only Megan Bowen can decide" in text_of(answer) and mine[1] not in rows(answer)
    await world.run_pipeline()
    assert world.workflow.completions == []


# --- a decision from the list --------------------------------------------------------------------------------------
async def test_a_decision_from_the_list_completes_once_updates_every_copy_and_refreshes_the_list(world):
    first, second = await items(world, 2)
    bot = handlers(world)
    card = await bot.on_message(message(MEGAN, "my approvals"))
    approve = next(a for a in kinds(card, "Action.Execute") if a["data"].get("workItemId") == first
                   and a["data"]["action"] == "approve")
    assert approve["verb"] == "approve"  # the channel card's verb and data shape
    assert {"action", "workItemId", "eventId", "environment"} <= set(approve["data"])
    box = approve["data"]["commentInput"]
    assert [i["id"] for i in kinds(card, "Input.Text")] == ["comment_1", "comment_2"]  # unique input ids
    answer = await bot.on_execute(press(MEGAN, {**approve["data"], box: "Checked against the contract"}))
    assert rows(answer) == [second]  # the list, refreshed: the decided item is gone
    assert "Approved work item" in text_of(answer) and "sending the decision to Dynamics" in text_of(answer)
    assert world.workflow.completions == []  # the press itself never calls F&O
    await world.run_pipeline()
    assert world.workflow.completions == [(first, "Approve", "Approved in Microsoft Teams by Megan Bowen "
                                           f"({MEGAN.upn}): Checked against the contract")]
    copies = {c.activity_id for c in await world.store.cards_for_event(world.records[first].id)}
    assert {a for _, a, _ in world.poster.updates} >= copies and len(copies) == 2  # channel card and 1:1 copy
    actions = [e.action for e in reversed(await world.store.list_audit(environment=ENV, work_item_id=first))]
    assert actions[-3:] == ["press", "submitted", "completed"]
    # the same button again (an old copy of the list): no second decision
    again = await bot.on_execute(press(MEGAN, approve["data"]))
    assert "already approved" in text_of(again).lower()
    await world.run_pipeline()
    assert len(world.workflow.completions) == 1
    # the refresh Teams sends when Megan views the list later
    refreshed = await bot.on_execute(press(MEGAN, card["refresh"]["action"]["data"], verb="myApprovals"))
    assert rows(refreshed) == [second]


# --- paging ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_bytes", [28_000, 9_000])
async def test_sixty_items_page_within_the_size_limit_and_none_is_lost(tmp_path, max_bytes):
    w = await make_world(str(tmp_path / "sixty.db"), workflow=Workflow())
    try:
        await w.store.upsert_install(personal_install(MEGAN.id))
        w.approvals.my.max_bytes = max_bytes
        ids = await items(w, 60)
        bot = handlers(w)
        seen: list[str] = []
        card = await bot.on_message(message(MEGAN, "my approvals"))
        for _ in range(61):
            assert card_size(card) <= max_bytes and validate_card(card) == []
            assert "60 approvals wait for you" in text_of(card)
            page = rows(card)
            assert page and len(page) <= 10
            seen += page
            nxt = pager(card, "Next")
            if nxt is None:
                break
            card = await bot.on_execute(press(MEGAN, nxt, verb="myApprovals"))
        assert seen == ids  # every item once, oldest first
        if max_bytes == 28_000:
            assert len(rows(await bot.on_message(message(MEGAN, "my approvals")))) == 10
    finally:
        await w.service.aclose()
        await w.store.close()


async def test_a_decision_between_pages_shifts_nothing_off_the_next_page(world):
    ids = await items(world, 15)
    bot = handlers(world)
    card = await bot.on_message(message(MEGAN, "my approvals"))
    nxt = pager(card, "Next")
    approve = next(a for a in kinds(card, "Action.Execute") if a["data"].get("workItemId") == ids[0])
    await bot.on_execute(press(MEGAN, approve["data"]))
    second = await bot.on_execute(press(MEGAN, nxt, verb="myApprovals"))
    assert rows(second) == ids[10:]
    assert "Oldest first · 10–14 of 14" in text_of(second)


# --- decided in F&O meanwhile ----------------------------------------------------------------------------------------
async def test_an_item_decided_in_dynamics_meanwhile_is_not_offered_and_not_completed(world):
    first, second = await items(world, 2)
    bot = handlers(world)
    card = await bot.on_message(message(MEGAN, "my approvals"))
    world.workflow.rows[first].update(Status="Completed", Outcome="Approve", CompletedBy="megan")
    world.clock.now += world.settings.reconcile_every + 1
    fresh = await bot.on_message(message(MEGAN, "my approvals"))
    assert rows(fresh) == [second] and "1 approval waits for you" in text_of(fresh)
    assert (await world.store.get_approval(ENV, first)).status == "closed"
    # a press from the list Megan still had open: refused by the once-only rule, no complete
    approve = next(a for a in kinds(card, "Action.Execute") if a["data"].get("workItemId") == first)
    answer = await bot.on_execute(press(MEGAN, approve["data"]))
    assert rows(answer) == [second]
    await world.run_pipeline()
    assert world.workflow.completions == []


async def test_rows_show_document_vendor_amount_waiting_and_a_deep_link_to_the_channel_card(world):
    [wid] = await items(world, 1)
    world.clock.now += 3 * 86400
    card = await handlers(world).on_message(message(MEGAN, "my approvals"))
    shown = text_of(card)
    for expected in ("Vendor invoice APINV-1", "Vendor of APINV-1", "1,234.50 USD", "3 days", "USMF"):
        assert expected in shown, expected
    [link] = [a["url"] for a in kinds(card, "Action.OpenUrl")]
    parts = urlsplit(link)
    assert parts.netloc == "teams.microsoft.com"
    assert parts.path == f"/l/message/{CHANNEL.replace(':', '%3A').replace('@', '%40')}/{wid}"
    query = parse_qs(parts.query)
    assert query["parentMessageId"] == [wid] and query["tenantId"] == [TENANT] and query["channelName"] == ["Approvals"]


# --- the morning summary ---------------------------------------------------------------------------------------------
def test_next_send_is_the_local_morning_of_the_next_working_day():
    s = ApprovalSettings().summary
    friday_evening = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.timezone.utc).timestamp()
    assert dt.datetime.fromtimestamp(next_send(friday_evening, BERLIN, s), dt.timezone.utc) == dt.datetime(
        2026, 12, 7, 7, 0, tzinfo=dt.timezone.utc)  # Monday 08:00 in Berlin
    assert to_iana("W. Europe Standard Time") == BERLIN and to_iana(BERLIN) == BERLIN and to_iana("Mars") is None


async def test_summary_is_sent_once_per_working_day_and_survives_a_restart(tmp_path):
    path = str(tmp_path / "summary.db")
    clock = Clock(MONDAY_0600_UTC)
    fno = Workflow()  # F&O outlives our restarts

    async def start():
        w = await make_world(path, clock=clock, workflow=fno)

        async def zone(oid):
            return "W. Europe Standard Time"  # what Graph's mailboxSettings says

        w.graph.get_mailbox_time_zone = zone
        return w

    w = await start()
    await w.store.upsert_install(personal_install(MEGAN.id))
    bot = handlers(w)
    said = await bot.on_message(message(MEGAN, "my approvals daily on"))
    assert "Daily summary on" in said and BERLIN in said and "Outlook" in said
    summary = w.approvals.my.summary
    assert await summary.run_once(clock()) == []  # 07:00 in Berlin: not yet
    clock.now += 3600 + 60  # 08:01 in Berlin, nothing waits
    await summary.run_once(clock())
    assert w.poster.replies == []  # not sent when nothing waits
    await items(w, 2)
    clock.now += 86400  # Tuesday 08:01
    await summary.run_once(clock())
    [(conv, card, _)] = w.poster.replies
    assert conv == chat_of(MEGAN.id) and len(rows(card)) == 2 and "Good morning" in text_of(card)
    await summary.run_once(clock())
    await w.service.aclose()
    await w.store.close()
    # a restart the same morning: the schedule is in the store, the day is taken
    clock.now += 600
    w2 = await start()
    await w2.approvals.my.summary.run_once(clock())
    assert w2.poster.replies == []
    clock.now += 86400  # Wednesday
    await w2.approvals.my.summary.run_once(clock())
    await w2.approvals.my.summary.run_once(clock())
    assert len(w2.poster.replies) == 1
    clock.now += 3 * 86400  # Saturday: not a working day
    await w2.approvals.my.summary.run_once(clock())
    assert len(w2.poster.replies) == 1
    said = await handlers(w2).on_message(message(MEGAN, "my approvals daily off"))
    assert said == "Daily summary off."
    clock.now += 2 * 86400  # Monday
    await w2.approvals.my.summary.run_once(clock())
    assert len(w2.poster.replies) == 1
    await w2.service.aclose()
    await w2.store.close()
