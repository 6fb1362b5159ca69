"""Durable enqueue throughput of the SQLite store, with and without group commit; optionally behind aiohttp.

    .venv/bin/python bench/bench_store.py                     # store only: concurrency 1 and 64, batch on/off
    .venv/bin/python bench/bench_store.py --http              # also: bare aiohttp handler vs handler that enqueues
    .venv/bin/python bench/bench_store.py --dir /var/lib/x    # put the database on the disk you will deploy on

Prints events/s. Each run uses a fresh database file in --dir (default: a temp dir on the working directory's disk,
not tmpfs, so fsync costs what it costs). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time

from connector.store.base import NewEvent
from connector.store.sqlite import SQLiteStore

_numbers = itertools.count()


def _event() -> NewEvent:
    n = next(_numbers)
    payload = {
        "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent",
        "ControlNumber": n,
        "EventId": f"{n:032x}",
        "EventTime": "/Date(1732615200000)/",
        "LegalEntity": "usmf",
        "PurchaseOrderNumber": f"PO-{n:06d}",
        "VendorAccount": "US-104",
        "TransactionCurrencyAmount": 1234.5,
        "TransactionCurrencyCode": "USD",
    }
    return NewEvent("contoso-prod", "PurchaseOrderConfirmedBusinessEvent", n, payload["EventId"], "usmf", payload)


async def _drive(call, concurrency: int, seconds: float) -> float:
    """Run `call` from `concurrency` tasks for `seconds`; return completed calls per second."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def bench_store(directory: str, concurrency: int, max_batch: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.db"), max_batch=max_batch)
        await store.open()
        try:
            return await _drive(lambda: store.enqueue(_event(), first_stage="enrich", now=time.time()),
                                concurrency, seconds)
        finally:
            await store.close()


async def bench_http(directory: str, concurrency: int, seconds: float) -> tuple[float, float]:
    import json

    from aiohttp import ClientSession, TCPConnector, web

    body = json.dumps([_event().payload]).encode()

    async def bare(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.Response(status=202)

    async def rate(handler, store=None) -> float:
        app = web.Application()
        app.router.add_post("/events", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:
                async def post() -> None:
                    async with session.post(f"http://127.0.0.1:{port}/events", data=body) as resp:
                        await resp.read()

                return await _drive(post, concurrency, seconds)
        finally:
            await runner.cleanup()

    bare_rate = await rate(bare)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.db"))
        await store.open()

        async def durable(request: web.Request) -> web.Response:
            for item in json.loads(await request.read()):
                n = next(_numbers)  # a fresh control number: every event is new
                event = NewEvent("contoso-prod", item["BusinessEventId"], n, item["EventId"], "usmf", item)
                await store.enqueue(event, first_stage="enrich", now=time.time())
            return web.Response(status=202)

        try:
            durable_rate = await rate(durable)
        finally:
            await store.close()
    return bare_rate, durable_rate


def fsync_ms(directory: str) -> float:
    """What one durable commit costs at least: group commit exists to pay this once for many events."""
    samples = []
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        for _ in range(50):
            f.write(b"x" * 4096)
            f.flush()
            start = time.perf_counter()
            os.fsync(f.fileno())
            samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=os.getcwd(), help="where the database files go (default: cwd's disk)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--http", action="store_true", help="also compare with a bare aiohttp handler")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients (--http)")
    args = parser.parse_args()

    print(f"SQLite store, WAL, synchronous=FULL, database in {args.dir}")
    print(f"  fsync of a 4 KiB write on that disk: {fsync_ms(args.dir):.2f} ms (median of 50)")
    for concurrency, max_batch in ((1, 512), (64, 1), (64, 512)):
        per_s = await bench_store(args.dir, concurrency, max_batch, args.seconds)
        mode = "group commit" if max_batch > 1 else "one commit per event"
        print(f"  enqueue, {concurrency:3d} concurrent callers, {mode:20s}: {per_s:9.0f} events/s")
    if args.http:
        bare, durable = await bench_http(args.dir, args.clients, args.seconds)
        print(f"  aiohttp on loopback, {args.clients} concurrent clients: bare handler {bare:.0f} req/s, "
              f"handler + durable enqueue {durable:.0f} req/s ({durable / bare:.0%} of bare)")


if __name__ == "__main__":
    asyncio.run(main())
