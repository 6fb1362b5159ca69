"""Operations benchmark: what metrics and logging cost on ingest, and what a /metrics scrape costs on a big store.

1. Ingest throughput of the real front door (connector.web.events_app on the real SQLite store) with metrics, the
   access log middleware and JSON logs at INFO on (written to a file, as a container's stdout would be), as a ratio
   to the same front door with them off. Goal: >= 0.95. Driven by `wrk` (bench/bench_ingest.py's servers `ops` and
   `durable`, each in its own process) at 16 and 64 connections, the two interleaved round by round (the order
   alternating), server CPU per event printed for each round.
2. /metrics scrape time with 100,000 events stored (the store-derived gauges read fresh on every scrape, i.e. the
   cache disabled: the worst case), median and max of 20 scrapes.

    .venv/bin/python bench/bench_ops.py [--seconds 5] [--rounds 2] [--connections 16,64] [--stored 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_ingest import line, local_server  # noqa: E402


async def ingest(seconds: float, rounds: int, connections: list[int], tmp: str) -> None:
    """Metrics and logging on / off, same run, interleaved."""
    ratios: dict[int, list[float]] = {c: [] for c in connections}
    cpu_ratios: dict[int, list[float]] = {c: [] for c in connections}
    offset = 0
    async with local_server("durable", tmp) as off, local_server("ops", tmp) as on:
        for n in range(rounds):
            for c in connections:
                results = {}
                for server in (off, on) if n % 2 == 0 else (on, off):
                    offset += 100_000_000
                    results[server.mode] = server.measure(c, seconds, offset)
                o, d = results["ops"], results["durable"]
                ratios[c].append(o["rate"] / d["rate"])
                cpu_ratios[c].append(d["cpu_ms_per_event"] / o["cpu_ms_per_event"])
                print(f"round {n + 1}, {c} connections (load {os.getloadavg()[0]:.2f}):")
                print(f"  off {line(d)}")
                print(f"  on  {line(o)}: on/off {ratios[c][-1]:.2f}x")
    for c in connections:
        print(f"{c:3d} connections: throughput on / off {min(ratios[c]):.2f}-{max(ratios[c]):.2f}x; CPU-bound "
              f"throughput on / off (CPU per event off / on) {min(cpu_ratios[c]):.2f}-{max(cpu_ratios[c]):.2f}x "
              "(goal >= 0.95)")


async def scrape(stored: int, tmp: str) -> list[float]:
    from aiohttp.test_utils import TestClient, TestServer

    from connector.ops.metrics import Metrics
    from connector.ops.probes import ReadinessChecks
    from connector.ops.routes import OpsContext, metrics_app
    from connector.store import NewEvent
    from connector.store.sqlite import SQLiteStore

    store = SQLiteStore(os.path.join(tmp, "big.db"))
    await store.open()
    now = time.time()
    batch = 2000
    for start in range(0, stored, batch):  # group commit: concurrent enqueues share transactions
        await asyncio.gather(*(store.enqueue(NewEvent("bench", "PurchaseOrderConfirmedBusinessEvent", n, f"e{n}",
                                                      "usmf", {"n": n}), first_stage="enrich", now=now - n)
                               for n in range(start, min(stored, start + batch))))
    ctx = OpsContext(store=store, metrics=Metrics(), snapshot_seconds=0.0,
                     readiness=ReadinessChecks(store=store, pipeline=lambda: None, tokens=list))
    client = TestClient(TestServer(metrics_app(ctx)))
    await client.start_server()
    times = []
    try:
        for _ in range(20):
            t0 = time.perf_counter()
            async with client.get("/metrics") as r:
                assert r.status == 200
                await r.read()
            times.append(time.perf_counter() - t0)
    finally:
        await client.close()
        await store.close()
    return times


async def main(seconds: float, rounds: int, connections: list[int], stored: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (Debian package)")
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores, shared with other work; load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        await ingest(seconds, rounds, connections, tmp)
        times = await scrape(stored, tmp)
        print(f"/metrics with {stored} events stored (cache off): median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms over {len(times)} scrapes")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", default="16,64")
    ap.add_argument("--stored", type=int, default=100_000)
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.rounds, [int(x) for x in a.connections.split(",")], a.stored))
