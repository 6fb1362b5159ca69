"""Approvals: click-to-updated-card latency end to end, and what the reconciler costs in F&O calls.

1. Latency. The sandbox and `ml-connector serve` each in their own process (bench/_harness.Rig), 20 ms added
   latency on the F&O and Teams stand-ins. N work items are created (scenario `submit_to_workflow`, one per pending
   vendor invoice), their cards posted; then, one at a time, the assignee presses Approve on the channel card (Teams
   stand-in `emit submit` as the assignee's object id). Measured from just before the emit call to:
     ack      the first PUT of that channel card (the "sending the decision to Dynamics…" view, sent inside the bot's
              turn), and
     decided  the PUT that carries the decision (the approval-cards stage, after F&O's validate + complete).
   Times are the Teams stand-in's log times (CLOCK_MONOTONIC, shared with this process) of the PUT's arrival plus the
   stand-in's latency (it sleeps `latency_ms` before applying a request), i.e. when the new version is in its state.
   Afterwards /state is checked: every channel card's last version shows the decision, and F&O's stats show exactly
   one complete call per work item.

2. Reconciler cost. In-process, no network: 1,000 pending approvals in a real SQLite store with next_check_at
   spread evenly over one reconcile interval, `Reconciler.reconcile_once(now)` called every `background_tick`
   (as run_background does) with a fake clock through one simulated hour, against a counting fake F&O (every work
   item still valid). Counts F&O calls per hour, compares with F&O's user-based limit (6,000 requests per 5 minutes
   per user, per app, per web server = 72,000/hour; dynamics.md §5) and with `reconcile_per_minute`, and reports the
   re-check interval the approvals actually get.

    .venv/bin/python bench/bench_approvals.py                 # both parts, N=40
    .venv/bin/python bench/bench_approvals.py --items 40 --only latency
    .venv/bin/python bench/bench_approvals.py --only reconcile --open 1000

Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import CpuProbe, Rig, command_line, percentile  # noqa: E402

from connector.approvals import ApprovalDeps, ApprovalSettings, FoEnvironment, Reconciler  # noqa: E402
from connector.store import Approval, open_store  # noqa: E402

LATENCY_MS = 20
FNO_USER_LIMIT_PER_HOUR = 6_000 * 12  # 6,000 requests per 5-minute sliding window, per user / app / web server


# --- 1. click -> updated card -----------------------------------------------------------------------------------
def _decided(card_json: str) -> bool:
    return "in Microsoft Teams" in card_json and "Completed" in card_json


async def latency(items: int, keep: bool = False, gap: float = 1.25) -> dict[str, Any]:
    async with Rig(keep=keep) as rig:
        if keep:
            print(f"  workdir (kept): {rig.workdir}")
        store = open_store(rig.settings.store.url)  # read side of the connector's SQLite store
        await store.open()
        try:
            return await _latency(rig, store, items, gap)
        finally:
            await store.close()


async def _latency(rig: Rig, store: Any, items: int, gap: float) -> dict[str, Any]:
    teams, fno = rig.state["teams"]["admin_url"], rig.state["fno"]["admin_url"]
    pending = await rig.pending_approvals(store, items, LATENCY_MS)  # each tracked, its channel card posted
    presses = []
    for a in pending:
        cards = [c for c in await store.cards_for_event(a.event_id) if c.kind in ("thread", "reply")]
        if not cards or not a.assignee_object_id:
            raise RuntimeError(f"work item {a.work_item_id}: no channel card or no mapped approver")
        presses.append((a, cards[0]))
    await rig.post(f"{fno}/fno/stats/reset", {})

    # Teams allows a bot 7/1 s, 8/2 s, 60/30 s writes per thread (the whole channel here): let the window of the N
    # card posts pass, then press at most one card per `gap` seconds (2 writes each: ack + decided).
    posts = [e["time"] for e in (await rig.get(f"{teams}/log"))["requests"] if e["method"] in ("POST", "PUT")]
    while posts and time.monotonic() < max(posts) + 31:
        await asyncio.sleep(0.2)
    throttled_before = await _teams_429(rig)

    rows: list[dict[str, float]] = []
    failed: list[str] = []
    assert rig.sandbox is not None
    probe = CpuProbe(rig.pid, rig.sandbox.pid).start()
    next_at = time.monotonic()
    for a, card in presses:
        while time.monotonic() < next_at:
            await asyncio.sleep(0.01)
        seq = max([e["seq"] for e in (await rig.get(f"{teams}/log"))["requests"]] or [0])
        value = {"action": "approve", "workItemId": a.work_item_id}
        t0 = time.monotonic()
        next_at = t0 + gap
        out = await rig.post(f"{teams}/emit", {"kind": "submit", "conversation": card.conversation_id,
                                               "reply_to": card.activity_id, "value": value,
                                               "user": a.assignee_object_id, "inputs": {"comment": "bench"}})
        t_emit = time.monotonic()
        ok = out.get("status") in (200, 201, 202)
        if not ok:
            failed.append(f"{a.work_item_id}: bot answered {out.get('status')}")
        end = time.monotonic() + 60
        while True:
            log = (await rig.get(f"{teams}/log?since={seq}"))["requests"]
            puts = [e for e in log if e["method"] == "PUT" and e["path"].endswith(f"/{card.activity_id}")
                    and e["status"] == 200]
            if len(puts) >= (2 if ok else 1):
                latest = await store.get_approval(a.environment, a.work_item_id)
                if latest is not None and latest.status == "decided":
                    break
            if time.monotonic() > end:
                raise RuntimeError(f"work item {a.work_item_id}: {len(puts)} card update(s) after 60 s")
            await asyncio.sleep(0.005)
        applied = [e["time"] + LATENCY_MS / 1000 for e in puts]
        if ok:
            rows.append({"emit": t_emit - t0, "ack": applied[0] - t0, "decided": applied[1] - t0})

    cpu = probe.stop()
    # the card really shows the decision, and F&O completed each work item exactly once
    state = await rig.get(f"{teams}/state")
    by_id = {m["id"]: m for t in state["teams"] for ch in t["channels"] for th in ch["threads"]
             for m in th["messages"]}
    wrong = [a.work_item_id for a, card in presses
             if not _decided(json.dumps(by_id.get(card.activity_id, {}).get("cards")))]
    stats = await rig.fno_stats()
    completes = stats.get("complete_calls") or {}
    not_once = {a.work_item_id: completes.get(a.work_item_id, 0) for a, _ in presses
                if completes.get(a.work_item_id, 0) != 1}
    versions = sorted({by_id.get(card.activity_id, {}).get("versions") for _, card in presses})
    return {"rows": rows, "failed": failed, "teams_429": await _teams_429(rig) - throttled_before, "gap": gap,
            "wrong_cards": wrong, "cpu": cpu, "complete_not_once": not_once, "versions": versions,
            "validate_calls": sum((stats.get("validate_calls") or {}).values()),
            "complete_calls": sum(completes.values())}


async def _teams_429(rig: Rig) -> int:
    stats = await rig.get(f"{rig.state['teams']['admin_url']}/stats")
    return int(stats.get("throttled", stats.get("status_429", 0)) or 0)


def print_latency(result: dict[str, Any], items: int) -> None:
    rows = result["rows"]
    print(f"\nclick -> updated card: {items} work items, pressed one at a time, one press per {result['gap']:g} s "
          f"(F&O and Teams stand-ins +{LATENCY_MS} ms each; connector = `ml-connector serve` subprocess)")
    print(f"  {'':<34}{'p50':>9}{'p99':>9}{'max':>9}")
    for key, label in (("emit", "emit round trip (bot answered)"), ("ack", "ack: press -> 'Submitting…' card"),
                       ("decided", "decided: press -> decided card")):
        vals = [r[key] * 1000 for r in rows]
        print(f"  {label:<34}{percentile(vals, 50):>7.0f}ms{percentile(vals, 99):>7.0f}ms{max(vals):>7.0f}ms")
    print(f"  F&O calls for the {items} decisions: validate {result['validate_calls']}, complete "
          f"{result['complete_calls']}; complete != 1: {result['complete_not_once'] or 'none'}")
    failed = result["failed"]
    print(f"  presses the bot answered with an error (left out of the figures above): {len(failed)}"
          f"{' (' + failed[0] + ', ...)' if failed else ''}; Teams 429s during the presses: {result['teams_429']}")
    c = result["cpu"]
    print(f"  during the presses: machine {c['machine_busy_pct']:.0f}% busy over {c['cores']} cores (other "
          f"processes included); connector {100 * c['connector'] / c['wall']:.0f}% of a core, sandbox "
          f"{100 * c['sandbox'] / c['wall']:.0f}%")
    print(f"  channel card versions after the press: {result['versions']}; cards not showing the decision: "
          f"{result['wrong_cards'] or 'none'}")


# --- 2. reconciler cost -----------------------------------------------------------------------------------------
class CountingFo:
    """WorkItemActions + WorkItemReader that count calls; every work item is still pending and valid."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"validate": 0, "complete": 0, "get": 0}
        self.times: list[float] = []
        self.clock = lambda: 0.0

    async def validate(self, work_item_id: str) -> bool:
        self.calls["validate"] += 1
        self.times.append(self.clock())
        return True

    async def complete(self, work_item_id: str, outcome: str, comment: str) -> dict[str, Any]:
        self.calls["complete"] += 1
        self.times.append(self.clock())
        return {}

    async def get(self, entity_set: str, *, company: str | None, key: dict[str, Any],
                  select: Any = None) -> dict[str, Any] | None:
        self.calls["get"] += 1
        self.times.append(self.clock())
        return {"Id": key.get("Id"), "Status": "Pending"}


async def reconcile_cost(open_count: int, settings: ApprovalSettings, hours: float = 1.0) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="ml-bench-reconcile-"))
    store = open_store(f"sqlite:///{workdir / 'r.db'}")
    await store.open()
    try:
        t0 = 1_800_000_000.0
        now = [t0]
        fo = CountingFo()
        fo.clock = lambda: now[0]
        every = settings.reconcile_every
        for i in range(open_count):  # tracked at various times: the next checks spread over one interval
            await store.upsert_approval(Approval(
                environment="bench", work_item_id=f"WI-{i:05d}", event_id=f"ev-{i}", status="pending",
                assignee_fo_user="adele", outcomes=["Approve", "Reject"], fo_status="Pending",
                next_check_at=t0 + every * i / open_count, created_at=t0 - every, updated_at=t0 - every))
        fo_envs = {"bench": FoEnvironment("bench", fo, fo)}
        deps = ApprovalDeps(store, settings, fo_envs, copies=None, clock=lambda: now[0])  # type: ignore[arg-type]
        reconciler = Reconciler(deps, poster=None)
        rounds = 0
        wall = time.perf_counter()
        end = t0 + hours * 3600
        while now[0] < end:  # run_background: a round every background_tick
            await reconciler.reconcile_once(now[0])
            rounds += 1
            now[0] += settings.background_tick
        wall = time.perf_counter() - wall
        overdue = await store.list_approvals(status="pending", due_before=end, limit=open_count)
        checked_at = {a.work_item_id: a.updated_at for a in await store.list_approvals(status="pending",
                                                                                          limit=open_count)}
        never = sum(1 for v in checked_at.values() if v < t0)
        calls = sum(fo.calls.values())
        per_minute = [0] * int(hours * 60)
        for t in fo.times:
            per_minute[min(len(per_minute) - 1, int((t - t0) // 60))] += 1
        return {"calls": calls, "by_kind": dict(fo.calls), "rounds": rounds, "wall": wall,
                "per_hour": calls / hours, "max_per_minute": max(per_minute), "overdue_at_end": len(overdue),
                "never_checked": never, "settings": settings}
    finally:
        await store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def print_reconcile(results: list[dict[str, Any]], open_count: int) -> None:
    print(f"\nreconciler: {open_count} open approvals, next checks spread over one interval, reconcile_once every "
          "background_tick through 1 simulated hour, counting fake F&O (every item still valid)")
    print(f"  {'configuration':<40}{'F&O calls/h':>12}{'max/min':>9}{'% of 72k/h':>12}{'% of cap':>10}"
          f"{'re-check every':>16}{'never checked':>15}")
    for r in results:
        s: ApprovalSettings = r["settings"]
        cap = s.reconcile_per_minute * 60
        cap_text = f"{s.reconcile_per_minute}/min" if s.reconcile_per_minute < 10_000 else "none"
        label = f"every {s.reconcile_every / 60:g} min, cap {cap_text}, tick {s.background_tick:g}s"
        interval = open_count / r["per_hour"] * 60 if r["per_hour"] else float("inf")
        of_cap = f"{100 * r['per_hour'] / cap:.0f}%" if s.reconcile_per_minute < 10_000 else "-"
        print(f"  {label:<40}{r['per_hour']:>12,.0f}{r['max_per_minute']:>9}"
              f"{100 * r['per_hour'] / FNO_USER_LIMIT_PER_HOUR:>11.1f}%{of_cap:>10}"
              f"{interval:>13.1f} min{r['never_checked']:>15}")
    demand = open_count * 3600 / results[0]["settings"].reconcile_every
    print(f"  demand at the interval alone: {open_count} x 3600/{results[0]['settings'].reconcile_every:g} s = "
          f"{demand:,.0f} validate calls/h ({demand / 60:.0f}/min: more than the default cap, so the cap sets the "
          f"re-check interval); calls by kind, first row: {results[0]['by_kind']}; {results[0]['rounds']} rounds "
          f"in {results[0]['wall']:.1f} s wall")
    print("  (re-check every = open approvals / calls per hour; never checked = approvals not validated once in "
          "the hour; 72k/h = F&O's 6,000 requests per 5 min per user/app/web server, shared with enrichment reads)")


# --- main -------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=40, help="work items to press (latency part)")
    parser.add_argument("--open", type=int, default=1000, help="open approvals (reconciler part)")
    parser.add_argument("--only", choices=("latency", "reconcile"))
    parser.add_argument("--gap", type=float, default=1.25,
                        help="seconds between presses (Teams: 60 writes per 30 s per thread, 2 writes a press)")
    parser.add_argument("--keep", action="store_true", help="keep the latency run's workdir (logs, store)")
    args = parser.parse_args()
    print(f"$ {command_line()}")
    if args.only in (None, "latency"):
        print_latency(asyncio.run(latency(args.items, args.keep, args.gap)), args.items)
    if args.only in (None, "reconcile"):
        default = ApprovalSettings()
        uncapped = default.model_copy(update={"reconcile_per_minute": 1_000_000})
        results = [asyncio.run(reconcile_cost(args.open, s)) for s in (default, uncapped)]
        print_reconcile(results, args.open)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
