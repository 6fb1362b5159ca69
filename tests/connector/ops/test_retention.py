"""Retention: the service purges done events older than [ops] retention_days on its own, keeps everything else."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connector.ops.retention import run_retention
from connector.store import EventStatus, NewEvent
from connector.store.sqlite import SQLiteStore

DAY = 86_400.0
T0 = 2_000_000_000.0


async def test_the_background_purge_runs_each_interval_until_stopped(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    now = [T0]
    stop = asyncio.Event()
    sleeps: list[float] = []
    try:
        for n, at in enumerate((T0 - 100 * DAY, T0 - 10 * DAY)):
            await store.enqueue(NewEvent("e", "T", n, f"e{n}", None, {"big": "x" * 1000}), first_stage="a", now=at)
            claim = await store.claim("w", now=at, lease_seconds=60)
            assert claim is not None
            await store.complete(claim, now=at)

        async def sleep(seconds: float) -> None:  # the clock moves 85 days between runs; two runs, then stop
            sleeps.append(seconds)
            now[0] += 85 * DAY
            if len(sleeps) == 2:
                stop.set()

        await asyncio.wait_for(run_retention(store, days=90, interval=3600, clock=lambda: now[0], stop=stop,
                                             sleep=sleep), timeout=10)
        assert sleeps == [3600, 3600]
        assert (await store.count_by_status())[EventStatus.DONE] == 0  # the first run took one, the second the other
    finally:
        await store.close()

