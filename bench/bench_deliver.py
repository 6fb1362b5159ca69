"""The Teams side of a burst, alone: connector CPU per event from "enriched" to "recorded as posted" (issue 11 goal 4).

What bench_teams' drain cannot show on a shared machine: the CPU the deliver stage, the outbox, the digest render
and the store's posted-card records cost per event, in process CPU time (the database thread included), without
the pipeline, F&O, HTTP or Teams' pace. Each measurement runs in a fresh child process: the real deliver stage
(connector.delivery), the real outbox and pacer (with a clock that never waits, so pacing costs its CPU and no time),
a real SQLite store in a temporary directory (WAL, synchronous=FULL: the fsyncs are real) and the built-in card
catalog. Only the poster is in-process: it keeps the card and answers at once.

Two cases: `burst` (--events PO confirmations of --lines lines each into one channel while the store holds a backlog:
they fold into digests of 50) and `singles` (one at a time, no backlog: each goes out as its own card). With
`--baseline DIR` the other tree's connector (e.g. `git archive main | tar -x -C DIR`) runs the same cases in the
same run, interleaved, and the ratio is printed. Figures are printed, never asserted.

    .venv/bin/python bench/bench_deliver.py [--events 2000] [--lines 15] [--rounds 2] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PO_EVENT = "PurchaseOrderConfirmedBusinessEvent"


async def child(case: str, events: int, lines: int) -> dict[str, Any]:
    """Runs with `connector` from whichever tree PYTHONPATH names."""
    from bot import PostedRef
    from cards import Catalog
    from connector.delivery import DeliveryDeps, make_deliver_stage, make_digest_renderer
    from connector.outbox import Outbox
    from connector.pacing import Pacer
    from connector.routes import routes_from_config
    from connector.store import EventRecord, EventStatus, Install, open_store

    skew = [0.0]  # the pacer's waits are skipped: its clock jumps ahead instead (and runs on with real time)

    def clock() -> float:
        return time.monotonic() + skew[0]

    async def sleep(seconds: float) -> None:
        skew[0] += max(seconds, 0.0)
        await asyncio.sleep(0)

    class Poster:
        posts = 0

        async def create_channel_thread(self, service_url: str, tenant_id: str, channel_id: str,
                                        card: dict[str, Any], *, text: str | None = None) -> PostedRef:
            Poster.posts += 1
            return PostedRef(f"{channel_id};messageid={Poster.posts}", str(Poster.posts), service_url)

        async def reply(self, service_url: str, conversation_id: str, card: dict[str, Any], *,
                        text: str | None = None) -> PostedRef:
            Poster.posts += 1
            return PostedRef(conversation_id, str(Poster.posts), service_url)

    po_lines = [{"LineNumber": i, "ItemNumber": f"A{i:04d}", "LineDescription": f"Widget {i}",
                 "OrderedPurchaseQuantity": 5, "PurchasePrice": 12.5, "LineAmount": 62.5,
                 "PurchaseUnitSymbol": "ea", "RequestedDeliveryDate": "2026-01-01T00:00:00Z"}
                for i in range(1, lines + 1)]

    def record(n: int) -> EventRecord:
        payload = {"BusinessEventId": PO_EVENT, "PurchaseOrderNumber": f"PO-{n:05d}", "PurchaseJournal": f"J{n}",
                   "TransactionCurrencyAmount": 62.5 * lines, "TransactionCurrencyCode": "USD",
                   "VendorAccount": "US-104", "EventTime": "/Date(1772668800000)/"}
        enrichment = {"record": {"order": {"PurchaseOrderNumber": f"PO-{n:05d}", "OrderVendorAccountNumber":
                                           "US-104"}, "lines": po_lines,
                                 "vendor": {"VendorOrganizationName": "Contoso", "VendorAccountNumber": "US-104"}}}
        return EventRecord(id=f"ev-{n}", environment="contoso-prod", business_event_id=PO_EVENT, control_number=n,
                           event_id=f"E-{n}", legal_entity="USMF", payload=payload, status=EventStatus.PROCESSING,
                           stage="deliver", attempts=0, received_at=0.0, updated_at=0.0, next_attempt_at=0.0,
                           data={"enrichment": enrichment})

    workdir = tempfile.mkdtemp(prefix="ml-bench-deliver-")
    store = open_store(f"sqlite:///{workdir}/ml.db")
    await store.open()
    await store.upsert_install(Install(id="team:19:t", scope="team", tenant_id="tenant",
                                       service_url="https://smba.example/", bot_id="28:bot", team_id="19:t",
                                       team_name="Finance", channels={"19:c": "General"}))
    deps = DeliveryDeps(store=store, outbox=None,  # type: ignore[arg-type]  # set below
                        catalog=Catalog.builtin(),
                        routes=routes_from_config([{"name": "po", "events": [PO_EVENT], "team": "Finance",
                                                    "mention": []}]),
                        graph=None, environments={"contoso-prod": "https://contoso.example"}, clock=time.time)
    delivered, in_burst = [0], [False]

    async def backlog() -> int:  # what the store would count unfinished: the burst's events not yet delivered
        return events - delivered[0] if in_burst[0] else 0

    async def deliver_one(r: EventRecord) -> None:
        await deliver(r)
        delivered[0] += 1

    deps.outbox = Outbox(Poster(), Pacer(clock=clock, sleep=sleep), make_digest_renderer(deps), backlog=backlog,
                         clock=clock)
    deliver = make_deliver_stage(deps)
    records = [record(n) for n in range(1, events + 1)]
    await deliver(record(events + 1))  # warm, alone: templates prepared, store statements cached
    in_burst[0] = case == "burst"
    Poster.posts, skew[0] = 0, skew[0] + 3600.0  # and the warm-up's post out of every window
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if case == "burst":
        await asyncio.gather(*(deliver_one(r) for r in records))
    else:
        for r in records:
            await deliver_one(r)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await store.close()
    return {"cpu_ms_per_event": 1000 * cpu / events, "wall_s": wall, "posts": Poster.posts}


def measure(case: str, events: int, lines: int, code_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", case, "--events", str(events),
                          "--lines", str(lines)], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{code_dir}: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> None:
    print(f"command: .venv/bin/python bench/bench_deliver.py {' '.join(sys.argv[1:])}")
    print(f"in-process: deliver stage + outbox + pacer (clock that never waits) + digest render + SQLite posted-card "
          f"records; {args.events} PO confirmations of {args.lines} lines; CPU = process time incl. the database "
          f"thread; load average at start {os.getloadavg()[0]:.2f}")
    trees = [("this tree", ROOT)]
    if args.baseline:
        trees.insert(0, ("baseline", Path(args.baseline).resolve()))
    for case in ("burst", "singles"):
        what = ("into one channel, store backlog = the burst: folded into digests" if case == "burst"
                else "one at a time, no backlog: each posted as its own card")
        print(f"\n{case}: {what}")
        for n in range(args.rounds):
            figures = {label: measure(case, args.events, args.lines, tree) for label, tree in trees}
            line = "; ".join(f"{label} {f['cpu_ms_per_event']:.3f} ms/event ({f['posts']} posts)"
                             for label, f in figures.items())
            if args.baseline:
                ratio = figures["this tree"]["cpu_ms_per_event"] / figures["baseline"]["cpu_ms_per_event"]
                line += f"; this tree / baseline = {ratio:.2f}x"
            print(f"   round {n + 1}: {line}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--lines", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline", default="", help="another tree's connector, same run, interleaved")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    parsed = ap.parse_args()
    if parsed.child:
        print(json.dumps(asyncio.run(child(parsed.child, parsed.events, parsed.lines))))
    else:
        main(parsed)
