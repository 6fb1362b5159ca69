"""Operations benchmark: what metrics and logging cost on ingest, and what a /metrics scrape costs on a big store.

1. Ingest throughput of the real front door (connector.web.events_app on the real SQLite store) with metrics, the
   access log and JSON logs at INFO on (written to a file, as a container's stdout would be), as a ratio to the
   same run with them off. Goal: >= 0.95. Each server runs in its own process; the runs alternate (off, on, off,
   on) and the best of each is compared, so one noisy neighbour on the shared cores does not decide it.
2. /metrics scrape time with 100,000 events stored (the store-derived gauges read fresh on every scrape, i.e. the
   cache disabled: the worst case), median and max of 20 scrapes.

    .venv/bin/python bench/bench_ops.py [--events 5000] [--concurrency 32] [--stored 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from bench_ingest import TOKEN, drive, event, free_port, wait_listening  # noqa: E402


def serve(mode: str, port: int, db: str, log_file: str) -> None:
    import logging

    from aiohttp import web

    from connector.app import JsonFormatter
    from connector.ops import logctx
    from connector.ops.access import access_middleware
    from connector.ops.metrics import Metrics
    from connector.store.factory import open_store
    from connector.web import EventEndpoints, EventEnvironment, events_app

    store = open_store(f"sqlite:///{db}")
    on = mode == "on"
    app = events_app(store, EventEndpoints([EventEnvironment("bench", TOKEN)]), metrics=Metrics() if on else None)
    if on:
        app.middlewares.insert(0, access_middleware())
        handler = logging.FileHandler(log_file)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(logctx.ContextFilter())
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await store.open()
        yield
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (all its threads), from /proc: steadier than wall time on shared cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def ingest(mode: str, events: int, concurrency: int, tmp: str, run: int) -> tuple[float, float]:
    """(events per second, server CPU microseconds per event)."""
    port = free_port()
    db = os.path.join(tmp, f"{mode}-{run}.db")
    proc = subprocess.Popen([sys.executable, __file__, "serve", mode, str(port), db, os.path.join(tmp, "log.jsonl")])
    try:
        await wait_listening(port)
        await drive(port, [event(10_000_000 + i) for i in range(200)], concurrency)  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        seconds, statuses = await drive(port, [event(i) for i in range(events)], concurrency)
        cpu = cpu_seconds(proc.pid) - cpu0
        assert statuses == {202: events}, statuses
        return events / seconds, cpu / events * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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


async def main(events: int, concurrency: int, stored: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rates: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for run in range(runs):
            for mode in ("off", "on"):
                rate, us = await ingest(mode, events, concurrency, tmp, run)
                rates[mode].append(rate)
                cpu[mode].append(us)
        off, on = max(rates["off"]), max(rates["on"])
        cpu_off, cpu_on = min(cpu["off"]), min(cpu["on"])
        print(f"ingest: events={events} concurrency={concurrency}, best of {runs} runs each")
        for mode, rate, us in (("off", off, cpu_off), ("on ", on, cpu_on)):
            print(f"  metrics and logging {mode}: {rate:8.0f} events/s, server CPU {us:6.0f} us/event  "
                  f"(runs {', '.join(f'{r:.0f}' for r in rates[mode.strip()])} events/s)")
        print(f"  throughput on / off = {on / off:.2f}; CPU-bound throughput on / off = {cpu_off / cpu_on:.2f} "
              "(goal >= 0.95)")
        times = await scrape(stored, tmp)
        print(f"/metrics with {stored} events stored (cache off): median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms over {len(times)} scrapes")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--events", type=int, default=5000)
        ap.add_argument("--concurrency", type=int, default=32)
        ap.add_argument("--stored", type=int, default=100_000)
        ap.add_argument("--runs", type=int, default=3)
        a = ap.parse_args()
        asyncio.run(main(a.events, a.concurrency, a.stored, a.runs))
