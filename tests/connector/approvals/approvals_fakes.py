"""Fakes and a world for the approvals tests: a recording TeamsPoster, an F&O workflow, Graph; a real SQLite store."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from bot import CardExecute, CardSubmit, GraphForbidden, GraphUser, PostedRef, TeamsForbidden
from cards import Catalog
from connector.approvals import ApprovalSettings, Approvals, FoEnvironment
from connector.pipeline import Pipeline, RetryPolicy
from connector.store import Install, NewEvent, PostedCard, Store, open_store

ENV = "contoso-sandbox"
SU = "https://smba.example/amer/"
TENANT = "7d3c1e2a-5b64-4f0e-9a1d-2c7b8e4f6a10"
CHANNEL = "19:approvals@thread.tacv2"
THREAD = f"{CHANNEL};messageid=1001"
WI = "5637169327"
MEGAN = GraphUser("0b5e0003-3c2d-4e1f-8a9b-000000000003", "Megan Bowen", "megan.bowen@contoso.example",
                  "megan.bowen@contoso.example")
ADELE = GraphUser("0b5e0001-3c2d-4e1f-8a9b-000000000001", "Adele Vance", "adele.vance@contoso.example",
                  "adele.vance@contoso.example")
ALEX = GraphUser("0b5e0002-3c2d-4e1f-8a9b-000000000002", "Alex Wilber", "alex.wilber@contoso.example",
                 "alex.wilber@contoso.example")
USERS = {u.upn: u for u in (MEGAN, ADELE, ALEX)} | {u.id: u for u in (MEGAN, ADELE, ALEX)}
FO_USERS = {"megan": MEGAN, "adele": ADELE, "alex": ALEX}


class Clock:
    def __init__(self, now: float = 1_795_700_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakePoster:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, dict]] = []
        self.replies: list[tuple[str, Any, str | None]] = []
        self.personal: list[tuple[str, dict]] = []
        self.personal_forbidden: set[str] = set()  # object ids the app is not installed for
        self.fail_updates: list[Exception] = []
        self._ids = itertools.count(5000)

    async def update(self, service_url, conversation_id, activity_id, card) -> None:
        if self.fail_updates:
            raise self.fail_updates.pop(0)
        self.updates.append((conversation_id, activity_id, card))

    async def reply(self, service_url, conversation_id, card, *, text=None) -> PostedRef:
        self.replies.append((conversation_id, card, text))
        return PostedRef(conversation_id, str(next(self._ids)), service_url)

    async def create_personal(self, service_url, tenant_id, user_aad_object_id, card, *, text=None) -> PostedRef:
        if user_aad_object_id in self.personal_forbidden:
            raise TeamsForbidden(403, "ForbiddenOperationException", "Bot is not installed in user's personal scope")
        self.personal.append((user_aad_object_id, card))
        return PostedRef(chat_of(user_aad_object_id), str(next(self._ids)), service_url)

    def last_card(self, activity_id: str) -> dict:
        return [c for (_, a, c) in self.updates if a == activity_id][-1]


def chat_of(oid: str) -> str:
    return f"a:chat-{oid}"


class FakeWorkflow:
    """F&O's WorkflowWorkItems: validate/complete and the row, with knobs for latency and failures."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.validations: list[str] = []
        self.completions: list[tuple[str, str, str]] = []
        self.gate: asyncio.Event | None = None  # complete blocks on it when set
        self.entered = asyncio.Event()
        self.fail_complete: list[Exception] = []

    def add(self, wid: str, user: str = "megan", outcomes: str = "Approve,Reject", **extra: Any) -> dict:
        row = {"Id": wid, "Status": "Pending", "UserId": user, "Subject": f"Approve vendor invoice {wid}",
               "Outcomes": outcomes, "DocumentType": "VendorInvoice", "DocumentId": "APINV-1", "CompanyId": "usmf",
               "Outcome": "", "Comment": "", "CompletedBy": "", **extra}
        self.rows[wid] = row
        return row

    async def validate(self, wid: str) -> bool:
        self.validations.append(wid)
        row = self.rows.get(wid)
        return bool(row) and row["Status"] == "Pending"

    async def complete(self, wid: str, outcome: str, comment: str) -> dict:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_complete:
            raise self.fail_complete.pop(0)
        self.completions.append((wid, outcome, comment))
        self.rows[wid].update(Status="Completed", Outcome=outcome, Comment=comment, CompletedBy="svc")
        return {"value": True}

    async def get(self, entity_set, *, company, key, select=None):
        assert entity_set == "WorkflowWorkItems" and company is None
        row = self.rows.get(key["Id"])
        return dict(row) if row else None


class FakeGraph:
    def __init__(self, store: Store | None = None, clock: Clock | None = None) -> None:
        self.lookups: list[str] = []
        self.installs: list[tuple[str, str]] = []
        self.forbid_install = False
        self.store, self.clock = store, clock

    async def get_user(self, key: str):
        self.lookups.append(key)
        return USERS.get(key.lower())

    async def find_teams_app(self, external_id: str):
        return "catalog-app-1"

    async def install_app_for_user(self, oid: str, app_id: str) -> None:
        if self.forbid_install:
            raise GraphForbidden(403, "Forbidden", "no", permission="TeamsAppInstallation.ReadWriteSelfForUser.All")
        self.installs.append((oid, app_id))
        if self.store is not None:  # Teams then sends installationUpdate; the recorder writes the install
            await self.store.upsert_install(personal_install(oid))


def personal_install(oid: str) -> Install:
    return Install(id=f"personal:{oid}", scope="personal", tenant_id=TENANT, service_url=SU, bot_id="28:bot",
                   conversation_id=chat_of(oid), user_aad_object_id=oid)


@dataclass
class World:
    store: Store
    clock: Clock
    poster: FakePoster
    workflow: FakeWorkflow
    graph: FakeGraph
    settings: ApprovalSettings
    path: str
    approvals: Approvals = None  # type: ignore[assignment]
    pipeline: Pipeline = None  # type: ignore[assignment]
    records: dict[str, Any] = field(default_factory=dict)

    def build(self) -> "World":
        self.approvals = Approvals.build(
            store=self.store, settings=self.settings, poster=self.poster, graph=self.graph,
            catalog=Catalog.builtin(), environments={ENV: ("https://fno.example", self.workflow)}, clock=self.clock,
            fo={ENV: FoEnvironment(ENV, self.workflow, self.workflow)}, sleep=self.fake_sleep)
        self.pipeline = Pipeline(self.store, dict(self.approvals.stages()), clock=self.clock, rng=lambda: 0.0,
                                 policy=RetryPolicy(max_attempts=5))
        self.approvals.set_wake(self.pipeline.wake)
        return self

    async def fake_sleep(self, seconds: float) -> None:
        self.clock.now += seconds
        await asyncio.sleep(0)

    @property
    def service(self):
        return self.approvals.service

    async def run_pipeline(self) -> int:
        n = 0
        while await self.pipeline.run_once():
            n += 1
            assert n < 50, "pipeline does not settle"
        return n

    async def work_item_event(self, wid: str = WI, user: str = "megan", *, route_personal: bool = True,
                              previous: str | None = None, post: bool = True,
                              mention: bool = True) -> list[str]:
        """A `_WorkItem` event enriched and posted into the channel (what enrich + deliver did), then the hook."""
        row = self.workflow.rows.get(wid) or self.workflow.add(wid, user, **(
            {"PreviousWorkItemId": previous} if previous else {}))
        person = FO_USERS[user]
        payload = {"BusinessEventId": "Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem",
                   "ControlNumber": int(wid), "EventId": f"E-{wid}", "LegalEntity": "usmf",
                   "InitiatingUserAADObjectId": "{" + ALEX.id.upper() + "}",
                   "WorkflowWorkItemInstanceId": wid, "WorkflowWorkItemSubject": row["Subject"],
                   "WorkflowUserEmail": person.upn, "WorkItemOwner": user, "WorkflowDocument": "Vendor invoice",
                   "WorkflowDocumentId": "APINV-1", "WorkflowWorkItemOutcomes": row["Outcomes"].split(",")}
        _, eid = await self.store.enqueue(NewEvent(ENV, payload["BusinessEventId"], int(wid), payload["EventId"],
                                                   "usmf", payload), first_stage="enrich", now=self.clock())
        claim = await self.store.claim("test", now=self.clock(), lease_seconds=60)
        assert claim is not None and claim.event.id == eid
        user_row = {"UserID": user, "UserName": person.display_name, "Alias": person.upn, "Email": person.upn}
        claim = await self.store.record_step(claim, step="enrich", outcome="ok", next_stage="", now=self.clock(),
                                             data={"enrichment": {"record": {"workItem": dict(row), "user": user_row},
                                                                  "missing": []}})
        await self.store.complete(claim, now=self.clock())
        record = await self.store.get_event(eid)
        self.records[wid] = record
        posted = []
        if post:
            card = PostedCard(event_id=eid, route="approvals-channel", conversation_id=f"{CHANNEL};messageid={wid}",
                              activity_id=wid, service_url=SU, kind="thread", channel_id=CHANNEL,
                              posted_at=self.clock())
            await self.store.record_card(card)
            posted.append(card)
        from connector.carddata import build_card_data
        data = build_card_data(record, environment_name=ENV, base_url="https://fno.example")
        data["mentions"] = {"approver": {"id": person.id, "name": person.display_name}} if mention else {}
        return await self.service.on_work_item_posted(record, data, posted, route_personal)


async def make_world(path: str, *, settings: ApprovalSettings | None = None, clock: Clock | None = None,
                     workflow: FakeWorkflow | None = None) -> World:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    clock = clock or Clock()
    await store.upsert_install(Install(id=f"team:{CHANNEL}", scope="team", tenant_id=TENANT, service_url=SU,
                                       bot_id="28:bot", team_id=CHANNEL, channels={CHANNEL: "Approvals"}))
    graph = FakeGraph(store, clock)
    s = settings or ApprovalSettings(teams_app_external_id="manifest-1")
    return World(store, clock, FakePoster(), workflow or FakeWorkflow(), graph, s, path).build()


def submit(user: GraphUser, action: str = "approve", *, wid: str = WI, comment: str = "", personal: bool = False,
           conversation: str | None = None, activity: str | None = None) -> CardSubmit:
    conv = conversation or (chat_of(user.id) if personal else f"{CHANNEL};messageid={wid}")
    return CardSubmit(value={"action": action, "workItemId": wid, "eventId": f"E-{wid}", "comment": comment},
                      reply_to_id=activity or wid, conversation_id=conv, service_url=SU, tenant_id=TENANT,
                      conversation_type="personal" if personal else "channel", user_id=f"29:{user.id}",
                      user_aad_object_id=user.id, user_name=user.display_name)


def execute(user: GraphUser, verb: str = "approve", *, wid: str = WI, comment: str = "", personal: bool = False,
            activity: str | None = None) -> CardExecute:
    conv = chat_of(user.id) if personal else f"{CHANNEL};messageid={wid}"
    return CardExecute(verb=verb, data={"action": verb, "workItemId": wid, "eventId": f"E-{wid}",
                                        "environment": ENV, "comment": comment},
                       conversation_id=conv, service_url=SU, tenant_id=TENANT, trigger="manual",
                       reply_to_id=activity or wid, conversation_type="personal" if personal else "channel",
                       user_id=f"29:{user.id}", user_aad_object_id=user.id, user_name=user.display_name)


def kinds(card: dict | None, kind: str) -> list[dict]:
    found: list[dict] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == kind:
                found.append(node)
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(card)
    return found


def text_of(card: dict | None) -> str:
    import json
    return json.dumps(card, ensure_ascii=False)


def buttons(card: dict | None) -> list[dict]:
    """The Action.Execute buttons a card offers (not its refresh action)."""
    return [a for a in kinds({k: v for k, v in (card or {}).items() if k != "refresh"}, "Action.Execute")]
