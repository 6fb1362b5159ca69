"""`ml-connector demo`: the whole product on one machine, against the sandbox, with no configuration.

It starts the sandbox (Entra ID, F&O, Bot Framework/Teams, Graph) in its own process, configures the connector
from the sandbox's state file with generated secrets and an embedded SQLite store in a temporary folder, installs
the app into the "Procurement" team, plays a month-end scenario through the F&O stand-in (POs confirmed,
invoices and a payment posted, a work item awaiting approval, duplicate deliveries, a throttling episode, a burst
that turns into digest cards), prints what became of each event, and keeps running until Ctrl-C so the sandbox
Teams page can be explored. With --once it checks that every event reached its card, and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp import web

import cards
from connector.approvals.config import ApprovalSettings
from connector.app import SERVICES, Services, create_app
from connector.carddata import summarize
from connector.config import (
    CloudSettings,
    EnvironmentSettings,
    IdentitySettings,
    LoggingSettings,
    ODataSettings,
    OpsSettings,
    PipelineSettings,
    ServerSettings,
    Settings,
    StoreSettings,
)
from connector.ops.wiring import start_metrics_listener
from connector.replies.config import ReplySettings
from connector.secrets import MasterKey, SecretBox, generate_master_key
from connector.store import EventStatus, open_store

TEAM = "Procurement"
STARTUP_DEADLINE = 90.0
SETTLE_DEADLINE = 300.0


class DemoFailed(Exception):
    """The demo could not run (a part did not start) or, with --once, an event did not reach its card."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_routes() -> list[dict[str, Any]]:
    return [
        {"name": "purchase-orders",
         "events": ["PurchaseOrderConfirmedBusinessEvent", "VendorInvoicePostedBusinessEvent"],
         "team": TEAM, "channel": "Purchase orders", "mention": ["initiator"], "threading": "document"},
        {"name": "invoices", "events": ["VendorInvoicePostedBusinessEvent"], "team": TEAM, "channel": "Invoices",
         "mention": ["initiator"]},
        {"name": "payments", "events": ["VendorPaymentPostedBusinessEvent"], "team": TEAM, "channel": "Payments",
         "mention": ["initiator"]},
        {"name": "approvals", "events": ["Workflow_*_WorkItem"], "team": TEAM, "channel": "Approvals",
         "mention": ["approver"], "personal": True},
    ]


def demo_settings(state: dict[str, Any], workdir: Path, port: int, metrics_port: int = 0, *,
                  act_as: str = "service") -> Settings:
    """The connector's settings against the sandbox. `act_as` is `[approvals] act_as` (the demo: "approver");
    `metrics_port` the loopback metrics listener (0: none)."""
    teams, graph, fno = state["teams"], state["graph"], state["fno"]
    return Settings(
        server=ServerSettings(host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}"),
        store=StoreSettings(url=f"sqlite:///{workdir / 'demo.db'}"),
        cloud=CloudSettings(
            name="custom",
            authority_host=state["entra"]["authority_host"],
            graph_url=graph["graph_url"],
            graph_resource=graph.get("resource"),
            bot_oauth_scope="https://api.botframework.com",
            bot_token_issuer=teams.get("token_issuer", "https://api.botframework.com"),
            bot_openid_metadata_url=teams["openid_metadata_url"],
            ca_bundle=Path(state["ca_cert"]),
        ),
        identity=IdentitySettings(tenant_id=state["tenant_id"], client_id=fno["client_id"],
                                  credential="fo-client-secret"),
        environments=[EnvironmentSettings(name=fno["environment"], base_url=fno["base_url"])],
        pipeline=PipelineSettings(poll_interval=0.2, backoff_base=0.5, backoff_max=5.0),
        odata=ODataSettings(max_inline_wait=5.0, default_retry_after=2.0),
        logging=LoggingSettings(level="WARNING"),
        bot={"app_id": teams["bot_app_id"], "tenant_id": teams.get("bot_tenant_id", state["tenant_id"]),
             "credential": "bot-app-secret", "digest_after": 8.0, "digest_max": 25,
             "teams_app_external_id": graph.get("teams_app_external_id")},
        routes=demo_routes(),
        approvals=ApprovalSettings.model_validate({"act_as": act_as}),
        ops=OpsSettings(metrics_port=metrics_port, metrics_cache_seconds=0.5),
        # typed replies through both sources: Graph change notifications and the bot's own channel feed (RSC)
        replies=ReplySettings(source="both"),
    )


def settings_environment(settings: Settings) -> dict[str, str]:
    """The settings as ML_* environment variables (JSON per section), for `ml-connector serve` in a subprocess."""
    dumped = settings.model_dump(mode="json", exclude_none=True)
    return {f"ML_{key.upper()}": json.dumps(value) for key, value in dumped.items()}


def start_sandbox_process(workdir: Path, *,
                          extra_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `python -m sandbox serve` and wait for its state file (blocking; call it off the loop if needed)."""
    state_dir = workdir / "sandbox"
    renderer = Path(cards.__file__).resolve().parent / "vendor"
    log = open(workdir / "sandbox.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--state-dir", str(state_dir),
         "--teams-renderer-dir", str(renderer), *extra_args],
        stdout=log, stderr=subprocess.STDOUT,
    )
    state_file = state_dir / "sandbox.json"
    deadline = time.monotonic() + STARTUP_DEADLINE
    while not state_file.exists():
        if proc.poll() is not None:
            raise DemoFailed(f"the sandbox exited with code {proc.returncode}; see {workdir / 'sandbox.log'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise DemoFailed("the sandbox did not start within 90 s")
        time.sleep(0.1)
    return proc, json.loads(state_file.read_text())


async def store_demo_secrets(settings: Settings, key: MasterKey, state: dict[str, Any]) -> str:
    """Store the sandbox's client secrets and a fresh events-URL token; returns the token."""
    import secrets as pysecrets

    store = open_store(settings.store.url)
    await store.open()
    try:
        box = SecretBox(store, key)
        await box.put("fo-client-secret", state["fno"]["client_secret"])
        await box.put("bot-app-secret", state["teams"]["bot_app_password"])
        token = pysecrets.token_urlsafe(32)
        await box.put(settings.environments[0].event_secret_name, token)
    finally:
        await store.close()
    return token


async def connect_sender(http: aiohttp.ClientSession, state: dict[str, Any], url: str) -> str:
    """Register the connector's events URL in the F&O sender and activate the scenario's events."""
    sender = state["sender"]["admin_url"]
    endpoint = await _post(http, f"{sender}/endpoints", {"url": url, "name": "ml-connector"})
    await _post(http, f"{sender}/activate", {"event_ids": state["scenario"]["event_ids"], "endpoint": endpoint["id"]})
    return str(endpoint["id"])


async def install_team(http: aiohttp.ClientSession, state: dict[str, Any], messages_url: str,
                       team: str = TEAM) -> None:
    """Point the Teams stand-in at the bot and install the app into `team`."""
    admin = state["teams"]["admin_url"]
    await _post(http, f"{admin}/knobs", {"bot_endpoint": messages_url})
    await _post(http, f"{admin}/emit", {"kind": "install", "team": team})


@dataclass
class Demo:
    once: bool = False
    burst: int = 60
    out: Callable[[str], None] = print
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ml-connector-demo-")))
    keep: bool = False
    burst_numbers: set[int] = field(default_factory=set)

    async def run(self) -> int:
        sandbox = None
        runner = None
        try:
            sandbox, state = await self._start_sandbox()
            port, metrics_port = free_port(), free_port()
            # decisions are made in F&O as the approver (Teams SSO + on-behalf-of): F&O's history names them
            settings = demo_settings(state, self.workdir, port, metrics_port, act_as="approver")
            key = MasterKey.from_text(generate_master_key())
            token = await store_demo_secrets(settings, key, state)
            app = create_app(settings, master_key=key)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            services = app[SERVICES]
            self.out(f"connector listening on http://127.0.0.1:{port} (store: {settings.store.url})")
            await self._where_to_look(services, port, metrics_port)
            ssl_ctx = ssl.create_default_context(cafile=state["ca_cert"])
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as http:
                await self._install_app(http, state, port, services)
                await self._connect_fno(http, state, f"http://127.0.0.1:{port}/api/dynamics/events/{token}")
                await self._play(http, state, services)
                ok = await self._report(http, state, services)
                ok = await _approval_demo(self, http, state, services) and ok
                ok = await _my_approvals_demo(self, http, state, services) and ok
                ok = await _typed_reply_demo(self, http, state, services) and ok
            if self.once:
                self.out("\ndemo check: " + ("every event reached its card; the approval round trip worked; "
                                             "'my approvals' listed and decided; a typed reply decided"
                                             if ok else "FAILED (see above)"))
                return 0 if ok else 1
            self.out(f"\nOpen the sandbox Teams page to see the cards: {state['teams']['page_url']}")
            self.out("Press Ctrl-C to stop.")
            await wait_for_interrupt()
            return 0
        finally:
            metrics_runner = getattr(self, "_metrics_runner", None)
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            if runner is not None:
                await runner.cleanup()
            if sandbox is not None:
                sandbox.terminate()
                try:
                    sandbox.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    sandbox.kill()
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    # --- steps ----------------------------------------------------------------------------------------------
    async def _where_to_look(self, services: Services, port: int, metrics_port: int) -> None:
        """Start the loopback metrics listener, make an admin token (in a private file: never printed) and say
        where an operator looks."""
        assert services.ops is not None and services.secrets is not None
        self._metrics_runner = await start_metrics_listener(services.ops, "127.0.0.1", metrics_port)
        token_file = self.workdir / "admin-token"
        token = secrets.token_urlsafe(32)
        await services.secrets.put(services.settings.ops.admin_token_secret, token)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        self.out(f"metrics: http://127.0.0.1:{metrics_port}/metrics, readiness: http://127.0.0.1:{port}/readyz, "
                 f"status page: http://127.0.0.1:{port}/admin (sign in with the token in {token_file})")

    async def _start_sandbox(self) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        proc, state = await asyncio.to_thread(start_sandbox_process, self.workdir)
        self.out("sandbox up: Entra ID, F&O (OData + business events), Bot Framework/Teams, Graph")
        return proc, state

    async def _install_app(self, http: aiohttp.ClientSession, state: dict[str, Any], port: int,
                           services: Services) -> None:
        await install_team(http, state, f"http://127.0.0.1:{port}/api/messages")
        deadline = time.monotonic() + 30
        while True:
            installs = await services.store.list_installs(active_only=True)
            team = next((i for i in installs if i.team_name == TEAM), None)
            if team and len(team.channels) >= 5:
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"the bot did not record the install into {TEAM}")
            await asyncio.sleep(0.1)
        self.out(f"app installed in team '{TEAM}' with channels: {', '.join(sorted(team.channels.values()))}")
        manager = services.replies.manager if services.replies is not None else None
        if manager is not None:  # what `serve` does on its next tick after an install, now
            await manager.sync()
            subs = await services.store.list_graph_subscriptions()
            self.out("Graph subscriptions for typed replies: " + (", ".join(
                f"#{install_channel(team, s.channel_id)} {s.status}" for s in subs) or "none")
                + " (clientState stored encrypted; renewed before expiry)")

    async def _connect_fno(self, http: aiohttp.ClientSession, state: dict[str, Any], url: str) -> None:
        await connect_sender(http, state, url)
        self.out("F&O business events activated for the connector's endpoint (test message acknowledged)")

    async def _play(self, http: aiohttp.ClientSession, state: dict[str, Any], services: Services) -> None:
        scenario, sender, fno = state["scenario"]["url"], state["sender"]["admin_url"], state["fno"]["admin_url"]
        self.out("\nplaying month-end in F&O:")
        await _post(http, f"{sender}/config", {"duplicate_next": 3})
        self.out("  - the next 3 events are delivered twice (F&O delivers at least once)")
        await _post(http, f"{fno}/fno/throttle", {"count": 3, "retry_after": 2})
        self.out("  - F&O answers the next 3 OData calls with 429, Retry-After 2 s (service protection)")
        played = (await _post(http, f"{scenario}/month_end", {"legal_entity": "usmf"}))["events"]
        self.out(f"  - month-end: {_describe(played)}")
        burst = (await _post(http, f"{scenario}/burst", {"count": self.burst, "concurrency": 10}))["events"]
        self.burst_numbers = {e["ControlNumber"] for e in burst}
        self.out(f"  - a burst of {len(burst)} PO re-confirmations into one channel (more than Teams allows at once)")
        await _post(http, f"{sender}/drain", {})
        await self._settle(services)

    async def _settle(self, services: Services) -> None:
        deadline = time.monotonic() + SETTLE_DEADLINE
        tty = sys.stdout.isatty()
        last = ""
        while True:
            counts = await services.store.count_by_status()
            busy = counts.get(EventStatus.QUEUED, 0) + counts.get(EventStatus.PROCESSING, 0)
            outbox = services.outbox
            line = (f"  events: {sum(counts.values())} stored, {counts.get(EventStatus.DONE, 0)} done, "
                    f"{busy} in progress, {counts.get(EventStatus.FAILED, 0)} failed; Teams posts: "
                    f"{outbox.posts if outbox else 0} ({outbox.digests if outbox else 0} digests)")
            if tty:
                sys.stdout.write("\r" + line.ljust(len(last)))
                sys.stdout.flush()
            elif line != last and (busy == 0 or int(time.monotonic()) % 5 == 0):
                self.out(line)
            last = line
            if busy == 0:
                break
            if time.monotonic() > deadline:
                raise DemoFailed("events were still in progress after 5 minutes")
            await asyncio.sleep(0.25)
        if tty:
            sys.stdout.write("\n")

    async def _report(self, http: aiohttp.ClientSession, state: dict[str, Any], services: Services) -> bool:
        store = services.store
        records = list(reversed(await store.list_events(limit=100_000)))
        install = next(i for i in await store.list_installs() if i.team_name == TEAM)
        problems: list[str] = []
        self.out("\nevent -> card")
        digests: dict[str, int] = {}
        burst_single = burst_digested = 0
        for r in records:
            if r.status is EventStatus.IGNORED:
                continue
            posted = await store.cards_for_event(r.id)
            row = summarize({"event": r.payload, "eventType": r.business_event_id, "legalEntity": r.legal_entity,
                             "record": (r.data.get("enrichment") or {}).get("record") or {}})
            if r.status is not EventStatus.DONE:
                problems.append(f"{r.id} {r.business_event_id}: {r.status.value} ({r.last_error})")
            if not posted:
                problems.append(f"{r.id} {r.business_event_id}: no card")
            for c in posted:
                if c.kind == "digest" and c.digest_id:
                    digests[c.digest_id] = digests.get(c.digest_id, 0) + 1
            if r.control_number in self.burst_numbers:
                if any(c.kind == "digest" for c in posted):
                    burst_digested += 1
                else:
                    burst_single += 1
                continue
            amount = f"{row['amount']:,.2f} {row['currency']}" if isinstance(row["amount"], (int, float)) else ""
            where = "; ".join(
                "1:1 chat with the approver" if c.kind == "personal"
                else f"{c.kind} in {install.channels.get(c.channel_id or '', c.channel_id)}" for c in posted)
            what = (f"{row['title'][:69]:<69}" if r.business_event_id.endswith("_WorkItem") else
                    f"{row['title'][:26]:<26} {row['vendor'][:26]:<26} {amount:>15}")
            self.out(f"  {_short(r.business_event_id):<19} {what}  -> {where or 'no card'}")
        if self.burst_numbers:
            self.out(f"  burst of {len(self.burst_numbers)} PO confirmations -> {burst_single} posted one by one, "
                     f"{burst_digested} in digests ({len(digests)} digest card(s) carried {sum(digests.values())} "
                     f"events in all; Teams allows ~60 posts per 30 s per channel)")
        teams_stats = await _get(http, f"{state['teams']['admin_url']}/stats")
        sender_errors = await _get(http, f"{state['sender']['admin_url']}/errors")
        throttled = teams_stats.get("status_429", teams_stats.get("throttled", 0))
        ignored = sum(1 for r in records if r.status is EventStatus.IGNORED)
        dupes = 0
        for r in records:
            if r.status is not EventStatus.IGNORED:
                dupes += sum(1 for h in await store.history(r.id) if h.outcome == "duplicate")
        posts = services.outbox.posts if services.outbox else 0
        delivery_errors = len(sender_errors.get("errors", []) if isinstance(sender_errors, dict) else sender_errors)
        self.out(f"\n{len(records) - ignored} events stored once ({dupes} duplicate deliveries absorbed; "
                 f"F&O's test message recorded and ignored), {posts} Teams posts, "
                 f"{throttled} Teams 429s, {delivery_errors} F&O delivery errors")
        if problems:
            self.out("problems:\n  " + "\n  ".join(problems[:20]))
        return not problems


async def _until(predicate: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as r:
        text = await r.text()
        if r.status >= 400:
            raise DemoFailed(f"POST {url} answered {r.status}: {text[:300]}")
        return json.loads(text) if text else {}


async def _approval_demo(demo: "Demo", http: aiohttp.ClientSession, state: dict[str, Any],
                         services: Services) -> bool:
    store = services.store
    pending = await store.list_approvals(status="pending")
    if not pending:
        demo.out("\napproval: none pending (no work item card was posted)")
        return False
    approval = pending[0]
    cards_ = [c for c in await store.cards_for_event(approval.event_id) if c.kind in ("thread", "reply")]
    who = approval.assignee_name or "the approver"
    demo.out(f"\napproval: work item {approval.work_item_id} '{approval.subject}' waits for {who}")
    if not demo.once:
        demo.out(f"  In the Teams page open Procurement > Approvals, view as {who} and press Approve or Reject;\n"
                 "  view as anyone else to see the press refused (only the assigned approver can decide).")
        return True
    if not cards_ or not approval.assignee_object_id:
        demo.out("  cannot press: no channel card or no mapped approver")
        return False
    card = cards_[0]
    admin, fno = state["teams"]["admin_url"], state["fno"]["admin_url"]
    value = {"action": "approve", "workItemId": approval.work_item_id, "environment": approval.environment}
    # Action.Execute (Universal Actions): the press that can sign the approver in (act_as = "approver")
    press = {"kind": "execute", "conversation": card.conversation_id, "reply_to": card.activity_id, "data": value,
             "verb": "approve"}
    # Someone else presses Approve: refused, F&O untouched.
    other = "alex.wilber@contoso-distribution.example"
    if other.split("@")[0].replace(".", " ").lower() == (approval.assignee_name or "").lower():
        other = "patti.fernandez@contoso-distribution.example"
    await _post(http, f"{admin}/emit", {**press, "user": other, "inputs": {"comment": "looks fine to me"}})
    refused = await _until(lambda: _audited(store, approval, "refused"), 15)
    demo.out(f"  {other.split('@')[0]} pressed Approve: " + ("refused, F&O untouched" if refused else "NOT refused"))
    # The approver presses Approve with a comment: F&O's work item is completed once, every copy updated.
    await _post(http, f"{admin}/emit", {**press, "user": approval.assignee_object_id,
                                        "inputs": {"comment": "OK to pay, prices match the agreement"}})

    async def decided() -> bool:
        a = await store.get_approval(approval.environment, approval.work_item_id)
        return a is not None and a.status == "decided"

    ok = await _until(decided, 60)
    stats = await _get(http, f"{fno}/fno/stats")
    completes = (stats.get("complete_calls") or {}).get(approval.work_item_id, 0)
    final = await store.get_approval(approval.environment, approval.work_item_id)
    outcome = final.outcome if final else None
    signins = [s for s in (await _get(http, f"{admin}/state")).get("signins") or []
               if s.get("user", "").lower() == (approval.assignee_object_id or "").lower()]
    by = [c for c in stats.get("completions") or [] if c.get("work_item_id") == approval.work_item_id]
    as_approver = bool(by) and by[-1].get("via") == "delegated" and \
        str(by[-1].get("completed_by", "")).lower() == (approval.assignee_fo_user or "").lower()
    demo.out(f"  {who} pressed Approve: Teams signed them in ({signins[-1]['how'] if signins else 'no sign-in'}); "
             + (f"F&O work item completed ({outcome}, complete called {completes}x) as F&O user "
                f"{by[-1]['completed_by'] if by else '?'} ({by[-1]['via'] if by else '?'} token), cards updated"
                if ok else "no decision recorded"))
    return refused and ok and completes == 1 and as_approver


async def _my_approvals_demo(demo: "Demo", http: aiohttp.ClientSession, state: dict[str, Any],
                             services: Services) -> bool:
    """A new work item; its approver types "my approvals" in their 1:1 chat and approves from the list."""
    store = services.store
    scenario, sender = state["scenario"]["url"], state["sender"]["admin_url"]
    admin, fno = state["teams"]["admin_url"], state["fno"]["admin_url"]
    [event] = (await _post(http, f"{scenario}/submit_to_workflow", {"legal_entity": "usmf"}))["events"]
    await _post(http, f"{sender}/drain", {})
    wid = str(event.get("WorkflowWorkItemInstanceId") or "")

    async def tracked() -> Any:
        return next((a for a in await store.list_approvals(status="pending", limit=1000)
                     if a.work_item_id.lower() == wid.lower() and a.assignee_object_id), None)

    if not await _until(tracked, 60):
        demo.out(f"\nmy approvals: work item {wid} was not tracked")
        return False
    approval = await tracked()
    oid, who = approval.assignee_object_id, approval.assignee_name or "the approver"
    demo.out(f"\nmy approvals: work item {wid} '{approval.subject}' also waits for {who}")
    chats = (await _get(http, f"{admin}/state"))["chats"]
    if not any(c["user"].lower() == oid.lower() for c in chats):
        await _post(http, f"{admin}/emit", {"kind": "install_personal", "user": oid})
    if not demo.once:
        demo.out(f"  In the Teams page view as {who}, open the chat with the bot and type 'my approvals'\n"
                 "  (or 'my approvals daily on' for a morning summary); decide from the list.")
        return True
    await _post(http, f"{admin}/ui/say", {"viewer": oid, "text": "my approvals"})

    async def list_card() -> Any:
        chats = (await _get(http, f"{admin}/state"))["chats"]
        chat: dict[str, Any] = next((c for c in chats if c["user"].lower() == oid.lower()), {})
        for m in reversed(chat.get("messages", [])):
            for card in m["cards"] if m["sender"] == "bot" else []:
                if "MY APPROVALS" in json.dumps(card) and wid in json.dumps(card):
                    return chat["id"], m["id"], card
        return None

    if not await _until(list_card, 30):
        demo.out(f"  {who} typed 'my approvals': the list did not arrive")
        return False
    chat_id, message_id, card = await list_card()
    demo.out(f"  {who} typed 'my approvals': the list card shows work item {wid}")
    button = _list_button(card, wid)
    if button is None:
        demo.out("  the list has no Approve button for it")
        return False
    await _post(http, f"{admin}/ui/submit", {
        "viewer": oid, "conversation": chat_id, "messageId": message_id,
        "action": {"type": "Action.Execute", "verb": button["verb"], "data": button["data"]},
        "inputs": {button["data"]["commentInput"]: "Approved from my list"}})

    async def decided() -> bool:
        a = await store.get_approval(approval.environment, approval.work_item_id)
        return a is not None and a.status == "decided"

    ok = await _until(decided, 60)
    completes = ((await _get(http, f"{fno}/fno/stats")).get("complete_calls") or {}).get(wid, 0)
    demo.out(f"  {who} approved it from the list: " + (f"F&O work item completed (complete called {completes}x), "
                                                       "cards updated, the list refreshed" if ok
                                                       else "no decision recorded"))
    return ok and completes == 1


async def _typed_reply_demo(demo: "Demo", http: aiohttp.ClientSession, state: dict[str, Any],
                            services: Services) -> bool:
    """A new work item; its approver replies "reject: wrong cost centre" in the card's thread (the bot's channel
    feed: the app's RSC permission), and the work item is rejected exactly as with the button."""
    store = services.store
    scenario, sender = state["scenario"]["url"], state["sender"]["admin_url"]
    admin, fno = state["teams"]["admin_url"], state["fno"]["admin_url"]
    [event] = (await _post(http, f"{scenario}/submit_to_workflow", {"legal_entity": "usmf"}))["events"]
    await _post(http, f"{sender}/drain", {})
    wid = str(event.get("WorkflowWorkItemInstanceId") or "")

    async def carded() -> Any:
        for a in await store.list_approvals(status="pending", limit=1000):
            if a.work_item_id.lower() == wid.lower() and a.assignee_object_id:
                cards_ = [c for c in await store.cards_for_event(a.event_id) if c.kind == "thread"]
                if cards_:
                    return a, cards_[0]
        return None

    if not await _until(carded, 60):
        demo.out(f"\ntyped reply: work item {wid} has no channel card")
        return False
    approval, card = await carded()
    who = approval.assignee_name or "the approver"
    demo.out(f"\ntyped reply: work item {wid} '{approval.subject}' waits for {who}")
    await _post(http, f"{admin}/knobs", {"rsc": True})  # the team owner consented to ChannelMessage.Read.Group
    if not demo.once:
        demo.out(f"  In the Teams page view as {who} and reply under the card in Procurement > Approvals, e.g.\n"
                 "  'reject: wrong cost centre' or 'approve – ok to pay'.")
        return True
    await _post(http, f"{admin}/ui/reply", {"viewer": approval.assignee_object_id,
                                            "conversation": card.conversation_id,
                                            "text": "reject: wrong cost centre"})

    async def decided() -> bool:
        a = await store.get_approval(approval.environment, approval.work_item_id)
        return a is not None and a.status == "decided"

    ok = await _until(decided, 60)
    final = await store.get_approval(approval.environment, approval.work_item_id)
    completes = ((await _get(http, f"{fno}/fno/stats")).get("complete_calls") or {}).get(wid, 0)
    outcome = final.outcome if final else None
    demo.out(f"  {who} replied 'reject: wrong cost centre' in the thread: " + (
        f"F&O work item completed ({outcome}, comment '{final.comment}', complete called {completes}x), "
        "cards updated" if ok and final else "no decision recorded"))
    replies = services.replies
    if replies is not None and replies.endpoints is not None:
        seen = dict(replies.endpoints.counts)
        demo.out(f"  the reply reached the connector by the bot feed and by Graph "
                 f"({seen.get('accepted', 0) + seen.get('duplicate', 0)} notification(s)): decided once")
    return ok and completes == 1 and outcome == "Reject"


def install_channel(install: Any, channel_id: str) -> str:
    return str(install.channels.get(channel_id, channel_id))


def _list_button(card: Any, wid: str) -> dict[str, Any] | None:
    """The list card's Approve button for work item `wid`."""
    stack = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            data = node.get("data")
            if (node.get("type") == "Action.Execute" and isinstance(data, dict) and data.get("list")
                    and data.get("workItemId") == wid and data.get("action") == "approve"):
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


async def _audited(store: Any, approval: Any, action: str) -> bool:
    return any(e.action == action for e in await store.list_audit(environment=approval.environment,
                                                                  work_item_id=approval.work_item_id))


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return await r.json()


def _short(event_id: str) -> str:
    if event_id.endswith("_WorkItem"):
        return "approval requested"
    return {"PurchaseOrderConfirmedBusinessEvent": "PO confirmed", "VendorInvoicePostedBusinessEvent": "invoice posted",
            "VendorPaymentPostedBusinessEvent": "payment posted"}.get(event_id, event_id[:22])


def _describe(events: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        name = _short(e.get("BusinessEventId", "?"))
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items())


async def wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def run_demo(*, once: bool = False, burst: int = 60, keep: bool = False) -> int:
    demo = Demo(once=once, burst=burst, keep=keep)
    try:
        return asyncio.run(demo.run())
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
