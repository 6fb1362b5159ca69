"""What-if for bench_ingest (`--with-writer-process`), not product code: the front door's SQLite enqueue done by a
separate writer process instead of the service's database thread.

Why: the durable front door never uses more than one core, because the event loop and SQLite's thread take turns
on one interpreter lock (the sqlite3 module lets go of it around every statement step). A writer process has its
own. This measures what moving the writes out would buy before anyone builds it properly.

Same guarantee as the real store: an event is answered only after the COMMIT (WAL, synchronous=FULL) that holds
it; the writer runs the store's own `enqueue_batch` on a connection opened like the store's, and takes whatever
batches are already waiting into one transaction (group commit). Not handled, because a what-if does not need it:
a writer that dies, other store operations, shutdown ordering.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import pickle
import signal
import socket
from typing import Any


def _writer_main(sock: socket.socket, path: str) -> None:
    # Forked from a running aiohttp process: drop its signal plumbing (SIGTERM would only be written to the
    # parent loop's wake-up fd, and the writer would never end).
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from connector.store import _sqlite_ops as ops
    from connector.store.sqlite import SQLiteStore

    conn = SQLiteStore(path)._connect()  # WAL, synchronous=FULL, migrated: as the store opens it
    buf = bytearray()

    def complete() -> bool:
        return len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big")

    while True:
        while not complete():
            chunk = sock.recv(1 << 16)
            if not chunk:
                return
            buf += chunk
        sock.setblocking(False)  # whatever else already arrived joins this transaction
        try:
            while chunk := sock.recv(1 << 16):
                buf += chunk
        except BlockingIOError:
            pass
        sock.setblocking(True)
        batches = []
        while complete():
            n = int.from_bytes(buf[:4], "big")
            batches.append(pickle.loads(bytes(buf[4:4 + n])))
            del buf[:4 + n]
        outcomes = ops.enqueue_batch(conn, [item for batch in batches for item in batch])
        outcomes = [RuntimeError(str(o)) if isinstance(o, BaseException) else o for o in outcomes]
        out, k = bytearray(), 0
        for batch in batches:
            data = pickle.dumps(outcomes[k:k + len(batch)])
            k += len(batch)
            out += len(data).to_bytes(4, "big") + data
        sock.sendall(out)  # after the COMMIT: nobody is answered before their event is durable


class WriterProcessStore:
    """`enqueue` as the store has it; the calls of one event-loop turn go to the writer as one message."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._in_flight: collections.deque[list[asyncio.Future[Any]]] = collections.deque()

    async def open(self) -> None:
        from connector.store.sqlite import SQLiteStore

        store = SQLiteStore(self.path)
        await store.open()  # creates and migrates the database
        await store.close()
        ours, theirs = socket.socketpair()
        self._proc = multiprocessing.get_context("fork").Process(target=_writer_main, args=(theirs, self.path),
                                                                 daemon=True)
        self._proc.start()
        theirs.close()
        self._reader, self._writer = await asyncio.open_connection(sock=ours)
        self._answers = asyncio.create_task(self._read_answers())

    async def close(self) -> None:
        self._answers.cancel()
        self._writer.close()
        self._proc.terminate()
        await asyncio.to_thread(self._proc.join, 5)

    async def enqueue(self, event: Any, *, first_stage: str, now: float) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(((event, first_stage, now), future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        data = pickle.dumps([item for item, _ in batch])
        self._writer.write(len(data).to_bytes(4, "big") + data)
        self._in_flight.append([future for _, future in batch])

    async def _read_answers(self) -> None:
        while True:
            n = int.from_bytes(await self._reader.readexactly(4), "big")
            outcomes = pickle.loads(await self._reader.readexactly(n))
            for future, outcome in zip(self._in_flight.popleft(), outcomes):
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
