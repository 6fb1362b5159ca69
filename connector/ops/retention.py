"""Retention: done (and ignored) events older than [ops] retention_days are deleted with their payloads, hourly.
Parked and unfinished events are never purged; the audit log only by `ml-connector audit purge`."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from connector.store import Store, StoreError

log = logging.getLogger(__name__)
DAY = 86_400.0


async def purge_once(store: Store, *, days: float, now: float) -> int:
    purged = await store.purge_events(before=now - days * DAY)
    if purged:
        log.info("retention: purged %d done events older than %g days", purged, days)
    return purged


async def run_retention(store: Store, *, days: float, interval: float, clock: Callable[[], float],
                        stop: asyncio.Event, sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
    """Purge now and then every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            await purge_once(store, days=days, now=clock())
        except StoreError as exc:
            log.warning("retention: purge failed (%s); trying again in %.0f s", exc, interval)
        if sleep is not None:
            await sleep(interval)
            continue
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
