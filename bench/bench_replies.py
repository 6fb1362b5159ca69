"""Typed approval replies: reply-to-complete latency end to end, the notification endpoint's throughput, and the
Graph calls it takes to keep channels subscribed.

1. Latency. The sandbox and `ml-connector serve` each in their own process (bench/_harness.Rig), 20 ms added
   latency on the F&O and Teams stand-ins. N work items are created and their cards posted; the app gets the RSC
   permission (Teams stand-in knob `rsc`), then, one at a time, the assignee types "approve" under the card
   (`ui/reply`): Teams delivers it to the bot, the bot feed stores it, the reply inbox decides it through the press
   path, the decision job calls F&O. Measured from just before the reply to F&O's `complete` having been counted
   (F&O stand-in stats, polled every 5 ms). Checked: exactly one complete per work item.
2. Notification endpoint throughput, driven by `wrk` (bench/graph.lua: a new reply per request): our
   `POST /api/graph/notifications` (clientState compared, the reply stored in a real SQLite store, 202) against a
   bare aiohttp handler that answers 202 at once, each in its own process, interleaved rounds at 10 and 64
   connections; requests/s, server CPU per request and the ratio. (It was an in-process Python client sharing the
   servers' event loop, which capped and skewed both.)
3. Graph calls per day for 500 channels: the real SubscriptionManager with a fake clock over 7 simulated days
   (sync every `tick`), against a counting stand-in for Graph; calls per day, by kind.

    .venv/bin/python bench/bench_replies.py                 # all parts, N=20
    .venv/bin/python bench/bench_replies.py --only latency --items 20
    .venv/bin/python bench/bench_replies.py --only throughput [--seconds 5] [--rounds 2] [--connections 10,64]
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Rig, command_line, percentile  # noqa: E402

from aiohttp import web  # noqa: E402

from bot.subscriptions import SubscriptionInfo  # noqa: E402
from connector.replies.config import ReplySettings  # noqa: E402
from connector.replies.endpoints import GraphEndpoints  # noqa: E402
from connector.replies.inbox import ReplyInbox  # noqa: E402
from connector.replies.manager import Channel, SubscriptionManager  # noqa: E402
from connector.store import GraphSubscription, open_store  # noqa: E402

LATENCY_MS = 20


# --- 1. typed reply -> F&O complete ----------------------------------------------------------------------------
async def latency(items: int, gap: float) -> dict[str, Any]:
    async with Rig() as rig:
        store = open_store(rig.settings.store.url)
        await store.open()
        try:
            return await _latency(rig, store, items, gap)
        finally:
            await store.close()


async def _latency(rig: Rig, store: Any, items: int, gap: float) -> dict[str, Any]:
    teams, fno = rig.state["teams"]["admin_url"], rig.state["fno"]["admin_url"]
    pending = await rig.pending_approvals(store, items, LATENCY_MS, teams_knobs={"rsc": True})
    targets = []
    for a in pending:
        cards = [c for c in await store.cards_for_event(a.event_id) if c.kind == "thread"]
        if cards and a.assignee_object_id:
            targets.append((a, cards[0]))
    await rig.post(f"{fno}/fno/stats/reset", {})
    await asyncio.sleep(31)  # let Teams' per-thread write window of the card posts pass
    rows: list[float] = []
    for a, card in targets:
        t0 = time.monotonic()
        await rig.post(f"{teams}/ui/reply", {"viewer": a.assignee_object_id, "conversation": card.conversation_id,
                                             "text": "approve – bench"})
        end = t0 + 60
        while (await rig.fno_stats()).get("complete_calls", {}).get(a.work_item_id, 0) < 1:
            if time.monotonic() > end:
                raise RuntimeError(f"work item {a.work_item_id}: no complete after 60 s")
            await asyncio.sleep(0.005)
        rows.append(time.monotonic() - t0)
        await asyncio.sleep(max(0.0, gap - (time.monotonic() - t0)))
    completes = (await rig.fno_stats()).get("complete_calls") or {}
    not_once = {a.work_item_id: completes.get(a.work_item_id, 0) for a, _ in targets
                if completes.get(a.work_item_id, 0) != 1}
    return {"rows": rows, "not_once": not_once}


def print_latency(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(f"\n1. typed reply -> F&O complete ({len(rows)} replies, {LATENCY_MS} ms on the F&O and Teams stand-ins)")
    print(f"   p50 {percentile(rows, 50) * 1000:7.1f} ms   p99 {percentile(rows, 99) * 1000:7.1f} ms   "
          f"max {max(rows) * 1000:7.1f} ms")
    print("   complete called exactly once per work item" if not result["not_once"] else
          f"   NOT once: {result['not_once']}")


# --- 2. notification endpoint throughput ---------------------------------------------------------------------
GRAPH_LUA = Path(__file__).resolve().parent / "graph.lua"
GRAPH_PATH = "/api/graph/notifications"


def serve_graph(mode: str, port: int, db: str) -> None:
    """One server process of part 2: `ours` (the real notification endpoint: clientState compared, the reply stored
    durably in a real SQLite store, then 202) or `bare` (reads the body, answers 202)."""
    app = web.Application()
    if mode == "bare":
        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=202)

        app.router.add_post(GRAPH_PATH, bare)
    else:
        store = open_store(f"sqlite:///{db}")
        inbox = ReplyInbox(store, None, fetch=None, owner="bench", clock=time.time)  # type: ignore[arg-type]

        async def state(_: Any) -> str:
            return "s" * 64

        async def lifecycle(*_: Any) -> None:
            return None

        endpoints = GraphEndpoints(store, inbox, client_state=state, on_lifecycle=lifecycle,
                                   spawn=lambda _c: None, clock=time.time)
        app.router.add_post(GRAPH_PATH, endpoints.notifications)

        async def opened(app: web.Application) -> AsyncIterator[None]:
            await store.open()
            await store.put_graph_subscription(GraphSubscription(
                resource="/teams/g/channels/c/messages", team_id="g", channel_id="c", status="active",
                subscription_id="sub-1"))
            yield
            await store.close()

        app.cleanup_ctx.append(opened)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def throughput(seconds: float, rounds: int, connections: list[int]) -> None:
    """Each server in its own process, driven by `wrk` (bench/graph.lua: a new reply per request), the two
    interleaved round by round with the order alternating; server CPU per request from /proc."""
    from bench_ingest import line, local_server

    print(f"\n2. notification endpoint: `wrk`, {rounds} rounds x {seconds:g} s per server and connection count, "
          "servers interleaved (order alternating), each in its own process; ours stores every reply in SQLite "
          f"(WAL, synchronous=FULL) before its 202; load average at start {os.getloadavg()[0]:.2f}")
    ratios: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            servers = [await stack.enter_async_context(local_server(mode, tmp, script=__file__, path=GRAPH_PATH,
                                                                    lua=GRAPH_LUA))
                       for mode in ("bare", "ours")]
            offset = 0
            for n in range(rounds):
                for c in connections:
                    results: dict[str, dict[str, Any]] = {}
                    for server in (servers if n % 2 == 0 else servers[::-1]):
                        offset += 100_000_000
                        results[server.mode] = server.measure(c, seconds, offset)
                    ratio = results["ours"]["rate"] / results["bare"]["rate"]
                    ratios.setdefault(c, []).append(ratio)
                    print(f"   round {n + 1}, {c} connections (load {os.getloadavg()[0]:.2f}):")
                    print(f"     bare {line(results['bare'])}")
                    print(f"     ours {line(results['ours'])}: {ratio:.2f}x bare")
    for c, values in ratios.items():
        print(f"   {c:3d} connections: ours/bare throughput {min(values):.2f}-{max(values):.2f}x "
              "(Graph wants the 202 within 3 s; it sends notifications for one subscription a few at a time)")


# --- 3. Graph calls per day ------------------------------------------------------------------------------------
class CountingGraph:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.calls: Counter[str] = Counter()
        self.n = 0

    async def create(self, resource: str, **kw: Any) -> SubscriptionInfo:
        self.calls["create"] += 1
        self.n += 1
        return SubscriptionInfo(f"s-{self.n}", resource, kw["expires_at"])

    async def renew(self, subscription_id: str, *, expires_at: float) -> SubscriptionInfo:
        self.calls["renew"] += 1
        return SubscriptionInfo(subscription_id, "", expires_at)

    async def delete(self, subscription_id: str) -> bool:
        self.calls["delete"] += 1
        return True


class MemorySecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def put(self, name: str, value: Any) -> None:
        self.values[name] = value

    async def get(self, name: str) -> Any:
        raise KeyError(name)

    async def delete(self, name: str) -> None:
        self.values.pop(name, None)


async def graph_calls(channels: int = 500, days: int = 7) -> dict[str, Any]:
    settings = ReplySettings(source="graph")
    now = [1_795_700_000.0]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        await store.open()
        try:
            wanted = [Channel(f"g-{i // 10}", f"19:c{i}@thread.tacv2") for i in range(channels)]

            async def listed() -> list[Channel]:
                return wanted

            graph = CountingGraph(lambda: now[0])
            inbox = ReplyInbox(store, None, fetch=None, owner="bench", clock=lambda: now[0])  # type: ignore[arg-type]
            manager = SubscriptionManager(store, MemorySecrets(), graph, settings,  # type: ignore[arg-type]
                                          public_url="https://connector.example", owner="bench", channels=listed,
                                          inbox=inbox, clock=lambda: now[0])
            await manager.sync()
            created = graph.calls["create"]
            graph.calls.clear()
            end = now[0] + days * 86400
            while now[0] < end:
                now[0] += settings.tick
                await manager.sync()
            expired = [s for s in await store.list_graph_subscriptions() if s.expires_at <= now[0]]
        finally:
            await store.close()
    return {"created": created, "per_day": {k: v / days for k, v in graph.calls.items()}, "expired": len(expired),
            "channels": channels, "days": days, "settings": settings}


def print_graph_calls(result: dict[str, Any]) -> None:
    s = result["settings"]
    per_day = result["per_day"]
    print(f"\n3. Graph calls to keep {result['channels']} channels subscribed ({result['days']} simulated days, "
          f"expiry {s.expiry_minutes} min, renewed with {s.renew_when_left:.0%} left, tick {s.tick:g} s)")
    print(f"   first day: {result['created']} creates; then per day: "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(per_day.items())) + f" (total {sum(per_day.values()):.0f})")
    print(f"   subscriptions expired: {result['expired']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.25, help="seconds between replies (Teams' thread limits)")
    parser.add_argument("--only", choices=("latency", "throughput", "graph"))
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput: seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="throughput: interleaved rounds")
    parser.add_argument("--connections", default="10,64", help="throughput: wrk connections, comma-separated")
    args = parser.parse_args()
    print(f"$ {command_line()}")
    if args.only in (None, "latency"):
        print_latency(asyncio.run(latency(args.items, args.gap)))
    if args.only in (None, "throughput"):
        asyncio.run(throughput(args.seconds, args.rounds, [int(c) for c in args.connections.split(",")]))
    if args.only in (None, "graph"):
        print_graph_calls(asyncio.run(graph_calls()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":  # a server process of part 2 (bench_ingest.local_server)
        serve_graph(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(main())
