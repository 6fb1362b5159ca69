"""Ingest benchmark: durable events accepted per second on the SQLite default vs a bare aiohttp handler.

Both servers run in their own process (one core each at most, like the service), and one client process
drives them the same way: N unique PO-confirmed events, C requests in flight, keep-alive connections. The
durable server is the real front door (connector.web.events_app) on the real SQLite store (WAL,
synchronous=FULL, group commit); the bare one answers 202 without reading the store.

    .venv/bin/python bench/bench_ingest.py [--events 5000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-" + "k" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(n: int) -> bytes:
    return json.dumps({
        "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf",
        "ContextRecordSubject": "", "ControlNumber": 5637144576 + n,
        "EventId": f"9C091AF1-5BAF-4CA9-B0A4-{n:012X}", "EventTime": "/Date(1697470966000)/",
        "EventTimeIso8601": "2023-10-16T15:42:46.3440655Z",
        "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "LegalEntity": "usmf",
        "MajorVersion": 0, "MinorVersion": 0, "ParentContextRecordSubjects": [],
        "PurchaseJournal": f"{n:08d}-1", "PurchaseOrderDate": "/Date(1697414400000)/",
        "PurchaseOrderNumber": f"{n:08d}", "PurchaseType": "Purch", "TransactionCurrencyAmount": 1250.0 + n,
        "TransactionCurrencyCode": "USD", "VendorAccount": "US-101",
    }).encode()


def serve(mode: str, port: int, db: str) -> None:
    from aiohttp import web

    if mode == "bare":
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"result": "new"}, status=202)

        app = web.Application()
        app.router.add_post("/api/dynamics/events/{token}", handler)
    else:
        sys.path.insert(0, str(ROOT))
        from connector.store.factory import open_store
        from connector.web import EventEndpoints, EventEnvironment, events_app

        store = open_store(f"sqlite:///{db}")
        app = events_app(store, EventEndpoints([EventEnvironment("bench", TOKEN)]))

        async def lifecycle(app: web.Application):
            await store.open()
            yield
            await store.close()

        app.cleanup_ctx.append(lifecycle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_listening(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


async def drive(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, dict[int, int]]:
    url = f"http://127.0.0.1:{port}/api/dynamics/events/{TOKEN}"
    statuses: dict[int, int] = {}
    it = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            for body in it:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, statuses


async def run_mode(mode: str, bodies: list[bytes], concurrency: int, db: str) -> tuple[float, dict[int, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "serve", mode, str(port), db])
    try:
        await wait_listening(port)
        await drive(port, [event(10_000_000 + i) for i in range(200)], concurrency)  # warm-up
        return await drive(port, bodies, concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def main(events: int, concurrency: int) -> None:
    bodies = [event(i) for i in range(events)]
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        bare_s, bare_st = await run_mode("bare", bodies, concurrency, db)
        durable_s, durable_st = await run_mode("durable", bodies, concurrency, db)
    bare_rate, durable_rate = events / bare_s, events / durable_s
    print(f"events={events} concurrency={concurrency} (one client process, each server in its own process)")
    print(f"bare aiohttp handler (no store):   {bare_rate:8.0f} events/s  statuses {bare_st}")
    print(f"durable endpoint (SQLite, FULL):   {durable_rate:8.0f} events/s  statuses {durable_st}")
    print(f"durable / bare = {durable_rate / bare_rate:.2f} (goal >= 0.50)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--events", type=int, default=5000)
        ap.add_argument("--concurrency", type=int, default=32)
        a = ap.parse_args()
        asyncio.run(main(a.events, a.concurrency))
