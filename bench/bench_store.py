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


def _bulk_fill(conn, start: int, n: int, now: float) -> None:  # type: ignore[no-untyped-def]
    """n finished (done) events straight into the table, one transaction (the count triggers fire per row)."""
    rows = ((f"fill-{i:09d}", "bench", "PurchaseOrderConfirmedBusinessEvent", i, f"fill-{i}", "usmf",
             '{"PurchaseOrderNumber": "%08d"}' % i, "done", "", "enrich", 0, now, now, now)
            for i in range(start, start + n))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO events (id, environment, business_event_id, control_number, event_id, legal_entity, payload, "
        "status, stage, first_stage, attempts, received_at, updated_at, next_attempt_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


async def growth_point(store: SQLiteStore, events: int) -> dict[str, float]:
    """CPU per operation (process time: every thread) with `events` already stored."""
    now = time.time()
    n = 2000
    cpu0 = time.process_time()
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            await store.enqueue(_event(), first_stage="enrich", now=now)

    await asyncio.gather(*(one() for _ in range(n)))
    enqueue_ms = 1000 * (time.process_time() - cpu0) / n
    cpu0 = time.process_time()
    done = 0
    while done < n:
        claims = await store.claim_batch("bench", now=now, lease_seconds=60, limit=16)
        await asyncio.gather(*(store.finish(c, step="enrich", now=now) for c in claims))
        done += len(claims)
    claim_ms = 1000 * (time.process_time() - cpu0) / n
    cpu0 = time.process_time()
    for _ in range(500):
        await store.count_by_status()
    count_ms = 1000 * (time.process_time() - cpu0) / 500
    return {"enqueue_ms": enqueue_ms, "claim_finish_ms": claim_ms, "count_ms": count_ms}


async def bench_growth(directory: str, sizes: list[int]) -> None:
    """Ingest, claim + finish and count_by_status at each stored size (same process, one database)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = SQLiteStore(os.path.join(tmp, "growth.db"))
        await store.open()
        try:
            stored = 0
            results = []
            for size in sizes:
                if size > stored:
                    await store._db.call(_bulk_fill, stored, size - stored, time.time())
                    stored = size
                r = await growth_point(store, size)
                results.append((size, r))
                print(f"  {size:>9,} events stored: enqueue {r['enqueue_ms']:.3f} ms CPU/event, claim+finish "
                      f"{r['claim_finish_ms']:.3f} ms CPU/event, count_by_status {r['count_ms']:.3f} ms")
                stored += 2000
            (small, a), (large, b) = results[0], results[-1]
            print(f"  {large:,} vs {small:,} stored: enqueue {b['enqueue_ms'] / a['enqueue_ms']:.2f}x, claim+finish "
                  f"{b['claim_finish_ms'] / a['claim_finish_ms']:.2f}x, count {b['count_ms'] / a['count_ms']:.2f}x "
                  f"(flat = 1.0x); load average {os.getloadavg()[0]:.2f}")
        finally:
            await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=os.getcwd(), help="where the database files go (default: cwd's disk)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--http", action="store_true", help="also compare with a bare aiohttp handler")
    parser.add_argument("--clients", type=int, default=64, help="concurrent HTTP clients (--http)")
    parser.add_argument("--growth", default="", help="only the growth check at these stored sizes, e.g. "
                        "1000,500000: CPU per event of enqueue, claim+finish and count_by_status at each")
    args = parser.parse_args()
    if args.growth:
        print(f"SQLite store growth, database in {args.dir}; load average {os.getloadavg()[0]:.2f} (shared machine)")
        await bench_growth(args.dir, [int(x) for x in args.growth.split(",")])
        return

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
