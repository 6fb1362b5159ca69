"""One thread that owns one sqlite3 connection, behind awaitables, with group commit for batchable work.

Every call is a job on a queue; the thread runs jobs one after another, so nothing blocks the event loop and the
connection is never shared. Jobs submitted with `call_batched` that are waiting together (typically because they
arrived while the previous transaction was committing) are handed to their batch function in one go, so one
transaction and one fsync serve them all: group commit. Each caller still gets its own result, and only after the
batch function returned (i.e. after its COMMIT).

Commit delay: work that nobody outside waits on (the pipeline's step records and completions) may be submitted as
deferrable. A transaction made only of deferrable work waits up to `commit_delay` for more of it to share its
commit, as PostgreSQL's commit_delay does, while the submitter says more is coming (`more_coming`, asked at each
loop turn that submits deferrable work: the store says whether any event it leased out is not already writing).
Anything else that arrives (an enqueue the front door waits on, a read) ends the wait at once, so the delay never
holds up an acknowledgement. Each commit costs the same fsync and index-page writes however many events share it.

Knows nothing of the schema: callers hand it functions of the connection.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

BatchFn = Callable[[sqlite3.Connection, Sequence[Any]], Sequence[Any]]
"""Runs many items in one transaction; returns one outcome per item: a value, or an exception instance (which is
mapped like a raised one and raised to that item's caller only)."""


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    fn: Callable[..., Any] | None = None  # solo job: fn(conn, *args)
    args: tuple[Any, ...] = ()
    batch_fn: BatchFn | None = None  # batched job: batch_fn(conn, [item, ...])
    item: Any = None
    deferrable: bool = False  # nobody outside waits on it: its commit may wait for others to share it


@dataclass(slots=True)
class _Turn:
    """The batched jobs of one event-loop turn. `may_wait`: all of them are deferrable and the submitter expects
    more deferrable work soon, so their commit may wait for it."""

    jobs: list[_Job]
    may_wait: bool


_STOP = object()


class DbThread:
    """The dedicated database thread.

    Args:
        connect: opens the connection; called on the thread.
        map_error: turns an exception raised by a job into the one its caller sees (sqlite3.Error -> StoreError).
        closed_error: builds the exception for calls made while the thread is not running.
        max_batch: most items one batch function receives.
        commit_delay: seconds a transaction of deferrable work alone may wait for more to share its commit.
        more_coming: asked on the loop at each turn that submits deferrable work: is more of it expected soon?
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        map_error: Callable[[BaseException], BaseException],
        closed_error: Callable[[], BaseException],
        name: str = "sqlite-store",
        max_batch: int = 512,
        commit_delay: float = 0.0,
        more_coming: Callable[[], bool] = lambda: False,
    ) -> None:
        self._connect = connect
        self._map_error = map_error
        self._closed_error = closed_error
        self._name = name
        self._max_batch = max_batch
        self._commit_delay = commit_delay
        self._more_coming = more_coming
        # While the thread waits out a commit delay it sleeps on _hurry, not on the queue: a turn that may wait too
        # is only queued (no wake-up, no GIL hand-off), and only a turn that ends the wait puts a token in _hurry
        # (a SimpleQueue: cheaper to signal than a threading.Event).
        self._lingering = False
        self._hurry: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._accepting = False
        # Batched jobs submitted during one turn of the event loop go to the thread as one queue item: one wake-up
        # of the thread (and one GIL hand-off) per turn instead of one per caller.
        self._pending: list[_Job] = []

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        """Start the thread and open the connection on it; raises what `connect` raised, mapped."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(loop, opened), name=self._name, daemon=True)
        self._thread.start()
        try:
            await opened
        except BaseException:
            await asyncio.shield(self._stopped)
            self._thread.join()
            self._thread = None
            raise
        self._accepting = True

    async def stop(self) -> None:
        """Run what is queued, close the connection and end the thread."""
        if self._thread is None or self._stopped is None:
            return
        self._accepting = False
        self._flush()  # batched jobs of this loop turn go before the stop
        self._queue.put(_STOP)
        self._hurry.put(None)
        await asyncio.shield(self._stopped)
        self._thread.join()
        self._thread = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) on the thread, alone."""
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), fn=fn, args=args)
        return await self._submit(job)

    async def call_batched(self, batch_fn: BatchFn, item: Any, *, deferrable: bool = False) -> Any:
        """Run item through batch_fn together with the other items waiting for the same batch_fn. A deferrable
        item's commit may wait up to commit_delay for more deferrable work (see the module's docstring)."""
        if not self._accepting:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        job = _Job(loop, loop.create_future(), batch_fn=batch_fn, item=item, deferrable=deferrable)
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(job)
        return await job.future

    def _flush(self) -> None:
        jobs, self._pending = self._pending, []
        if jobs:
            may_wait = self._commit_delay > 0 and all(job.deferrable for job in jobs) and self._more_coming()
            self._queue.put(_Turn(jobs, may_wait))
            if self._lingering and not may_wait:
                self._hurry.put(None)  # this turn ends the thread's commit delay

    async def _submit(self, job: _Job) -> Any:
        if not self._accepting:
            raise self._closed_error()
        self._queue.put(job)
        if self._lingering:
            self._hurry.put(None)  # somebody waits on this job: no commit delay for it
        return await job.future

    # --- on the thread ---------------------------------------------------------------------------------------
    def _main(self, loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            _deliver(loop, [(opened, False, self._map_error(exc))])
            _deliver(loop, [(self._stopped, True, None)])
            return
        _deliver(loop, [(opened, True, None)])
        try:
            self._serve(conn)
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                log.exception("closing the SQLite connection failed")
            _deliver(loop, [(self._stopped, True, None)])

    def _serve(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs: list[_Job] = []
            first_may_wait = _take(first, jobs)
            may_wait, stop = self._collect(jobs)  # whatever queued up while the last transaction committed
            if first_may_wait and may_wait and not stop:
                stop = self._linger(jobs)
            self._run(conn, jobs)
            if stop:
                return

    def _collect(self, jobs: list[_Job]) -> tuple[bool, bool]:
        """Move what is queued now into `jobs` (up to max_batch). Returns (every item taken may wait, a stop was
        taken)."""
        may_wait = True
        while len(jobs) < self._max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return may_wait, True
            may_wait = _take(nxt, jobs) and may_wait
        return may_wait, False

    def _linger(self, jobs: list[_Job]) -> bool:
        """Commit delay: wait (up to commit_delay in all) for more deferrable jobs to share the commit, until a
        queue item arrives that may not wait. Returns True when a stop arrived meanwhile."""
        deadline = time.monotonic() + self._commit_delay
        self._lingering = True
        try:
            while len(jobs) < self._max_batch:
                _drain(self._hurry)  # before looking: a turn queued after the look puts a token again
                may_wait, stop = self._collect(jobs)
                if stop:
                    return True
                if not may_wait:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    self._hurry.get(timeout=left)
                except queue.Empty:
                    pass
            return False
        finally:
            self._lingering = False

    def _run(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        batches: dict[BatchFn, list[_Job]] = {}
        for job in jobs:
            if job.batch_fn is not None:
                batches.setdefault(job.batch_fn, []).append(job)
        chunks = [
            (batch_fn, whole[i: i + self._max_batch])
            for batch_fn, whole in batches.items()
            for i in range(0, len(whole), self._max_batch)
        ]
        for batch_fn, group in chunks:
            try:
                outcomes = list(batch_fn(conn, [job.item for job in group]))
                results = [
                    (job.future, False, self._map_error(out))
                    if isinstance(out, BaseException)
                    else (job.future, True, out)
                    for job, out in zip(group, outcomes)
                ]
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                err = self._map_error(exc)
                results = [(job.future, False, err) for job in group]
            _deliver_by_loop(group, results)
        for job in jobs:
            if job.fn is None:
                continue
            try:
                result = (job.future, True, job.fn(conn, *job.args))
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                result = (job.future, False, self._map_error(exc))
            _deliver(job.loop, [result])


def _drain(tokens: queue.SimpleQueue[None]) -> None:
    try:
        while True:
            tokens.get_nowait()
    except queue.Empty:
        pass


def _take(item: Any, jobs: list[_Job]) -> bool:
    """Add a queue item's jobs to `jobs`; returns whether their commit may wait (see _Turn)."""
    if isinstance(item, _Turn):  # one event-loop turn's batched jobs
        jobs.extend(item.jobs)
        return item.may_wait
    jobs.append(item)  # a solo job
    return False


def _deliver_by_loop(jobs: list[_Job], results: list[tuple[Any, bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, bool, Any]]] = {}
    for job, result in zip(jobs, results):
        by_loop.setdefault(job.loop, []).append(result)
    for loop, items in by_loop.items():
        _deliver(loop, items)


def _deliver(loop: asyncio.AbstractEventLoop, results: list[tuple[Any, bool, Any]]) -> None:
    """One wake-up of the loop per batch, however many callers it answers."""
    try:
        loop.call_soon_threadsafe(_resolve, results)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _resolve(results: list[tuple[Any, bool, Any]]) -> None:
    for future, ok, value in results:
        if future is None or future.done():  # the caller was cancelled; the work is done regardless
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
