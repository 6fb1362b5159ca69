"""Ingest benchmark: durable events accepted per second and server CPU per event, vs a bare aiohttp handler.

Driven by `wrk` (Debian package `wrk`; a C client, so the client is not what saturates first), at 16 and 64
connections, the servers interleaved round by round (the order rotates), each in its own process (one core each at
most, like the service). Every request carries a unique PO-confirmed event (bench/ingest.lua numbers them), so the
durable servers store every one. Servers:

- `bare`: reads the body and answers 202 without a store (the denominator of every ratio).
- `durable`: the real front door (connector.web.events_app) on the real SQLite store (WAL, synchronous=FULL,
  group commit), plain HTTP on 127.0.0.1.
- `ops` (`--with-ops`): the same with what the service adds on that route: metrics, the access log middleware and
  JSON logs at INFO written to a file (the issue-12 side goal: ingest with them on >= 0.95x of off).
- `nostore` (`--with-nostore`): the same front door on a stand-in store that answers at once (no SQLite, no
  database thread): what the handler itself costs, i.e. the ceiling any store leaves it.
- `nofsync` (`--with-nofsync`): a what-if, not something the product may do: `durable` with its SQLite connection
  switched to `synchronous = OFF` (no fsync; an acknowledged event could be lost on power loss): the floor of an
  in-process durable front door once the fsync's cost is gone.
- `writerproc` (`--with-writer-process`): a what-if, not product code (bench/_whatif_writer_process.py): the same
  front door with its enqueue done by a separate SQLite writer process (same COMMIT before the answer), to measure
  what taking the writes off the service's interpreter lock would buy. Its CPU includes the writer's.
- `baseline` (`--baseline DIR`): `durable` run from another source tree (e.g. main unpacked with git archive).
- `pipeline` (`--with-pipeline`): the real `ml-connector serve` (bench/_harness.py: its ops middlewares, metrics,
  logs) with its pipeline enriching every accepted event from the sandbox's F&O at the same time (Teams delivery
  off; F&O's per-user limit raised, printed). Events name the sandbox's seeded POs so enrichment succeeds. Its CPU
  per event includes the enrichment done during the round, so read its throughput ratio. After each of its rounds
  it is left to enrich its backlog before the next server runs (printed), so it never eats another round's CPU.

Server CPU per event = the server process's utime+stime (and its child processes') over the round / requests
answered; "loop" is its main (event-loop) thread, the rest its other threads (SQLite's) and child processes.
Figures are same-run ratios: the machine is shared, so absolute rates vary with its load (printed).

    .venv/bin/python bench/bench_ingest.py [--seconds 5] [--rounds 2] [--connections 16,64]
                                           [--baseline DIR] [--with-ops] [--with-pipeline] [--with-nostore]
                                           [--with-writer-process] [--with-nofsync]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-" + "k" * 40
LUA = Path(__file__).resolve().parent / "ingest.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FNO_REQUESTS = 1_000_000  # F&O's per-user limit in the pipeline rig (default 6,000 per 300 s would park events)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu(pid: int) -> tuple[float, float]:
    """(whole process and its child processes, its main thread) utime+stime in seconds."""
    def read(path: str) -> float:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += f.read().split()
    return (read(f"/proc/{pid}/stat") + sum(thread_cpu(int(c))[0] for c in children),
            read(f"/proc/{pid}/task/{pid}/stat"))


class _NoStore:
    """Answers every enqueue at once with a new id (the `nostore` server: the handler's own cost)."""

    def __init__(self) -> None:
        self._n = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(self, event: Any, *, first_stage: str, now: float) -> tuple[Any, str]:
        from connector.store import EnqueueResult

        self._n += 1
        return EnqueueResult.NEW, f"{self._n:022x}"


def serve(mode: str, port: int, db: str, code_dir: str) -> None:
    import logging

    from aiohttp import web

    if mode == "bare":
        async def handler(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"result": "new"}, status=202)

        app = web.Application()
        app.router.add_post("/api/dynamics/events/{token}", handler)
    else:
        sys.path.insert(0, code_dir)
        from connector.store.factory import open_store
        from connector.web import EventEndpoints, EventEnvironment, events_app

        if mode == "nostore":
            store: Any = _NoStore()
        elif mode == "writerproc":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from _whatif_writer_process import WriterProcessStore

            store = WriterProcessStore(db)
        else:
            store = open_store(f"sqlite:///{db}")
        if mode == "ops":
            from connector.app import JsonFormatter
            from connector.ops import logctx
            from connector.ops.access import access_middleware
            from connector.ops.metrics import Metrics

            app = events_app(store, EventEndpoints([EventEnvironment("bench", TOKEN)]), metrics=Metrics())
            app.middlewares.insert(0, access_middleware())
            log_handler = logging.FileHandler(db + ".log.jsonl")
            log_handler.setFormatter(JsonFormatter())
            log_handler.addFilter(logctx.ContextFilter())
            logging.getLogger().addHandler(log_handler)
            logging.getLogger().setLevel(logging.INFO)
        else:
            app = events_app(store, EventEndpoints([EventEnvironment("bench", TOKEN)]))

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            await store.open()
            if mode == "nofsync":  # the what-if: the store's own connection, without the fsync of each commit
                await store._db.call(lambda conn: conn.execute("PRAGMA synchronous = OFF"))
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


def run_wrk(url: str, connections: int, seconds: float, offset: int, seeded_pos: bool = False,
            lua: Path = LUA) -> dict[str, Any]:
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", str(lua), url,
                          "--", str(offset), "usmf" if seeded_pos else ""],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    latency = re.search(r"Latency\s+(\S+)", out)
    return {"requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "none", "latency": latency.group(1) if latency else "?",
            "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]


class Server:
    """One server process; `measure` runs wrk against it and reads its CPU around the run."""

    def __init__(self, mode: str, url: str, pid: int, seeded_pos: bool = False,
                 settle: Callable[[], Awaitable[float]] | None = None, lua: Path = LUA) -> None:
        self.mode, self.url, self.pid, self.seeded_pos, self.lua = mode, url, pid, seeded_pos, lua
        # Waits (returning the seconds waited) until the server is idle again after its round: the pipeline server
        # goes on enriching what its round stored, and must not eat the CPU of the next server's round.
        self.settle = settle

    def warm_up(self) -> None:
        run_wrk(self.url, 8, 1, 900_000_000 + 1_000_000 * len(self.mode), self.seeded_pos, self.lua)  # not counted

    def measure(self, connections: int, seconds: float, offset: int) -> dict[str, Any]:
        (cpu0, loop0), t0 = thread_cpu(self.pid), time.perf_counter()
        r = run_wrk(self.url, connections, seconds, offset, self.seeded_pos, self.lua)
        (cpu1, loop1), wall = thread_cpu(self.pid), time.perf_counter() - t0
        n = max(1, r["requests"])
        return {**r, "cpu_ms_per_event": 1000 * (cpu1 - cpu0) / n, "loop_ms_per_event": 1000 * (loop1 - loop0) / n,
                "other_ms_per_event": 1000 * (cpu1 - cpu0 - (loop1 - loop0)) / n,
                "server_cpu_pct": 100 * (cpu1 - cpu0) / wall}


@contextlib.asynccontextmanager
async def local_server(mode: str, tmp: str, code_dir: Path = ROOT, *, script: str = __file__,
                       path: str = f"/api/dynamics/events/{TOKEN}", lua: Path = LUA) -> AsyncIterator[Server]:
    """`script serve MODE PORT DB CODE_DIR` in its own process (bench_replies.py serves its endpoint the same way),
    warmed up, stopped on exit."""
    port = free_port()
    db = os.path.join(tmp, f"{mode}.db")
    proc = subprocess.Popen([sys.executable, script, "serve", mode, str(port), db, str(code_dir)])
    try:
        await wait_listening(port)
        server = Server(mode, f"http://127.0.0.1:{port}{path}", proc.pid, lua=lua)
        server.warm_up()
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def pipeline_server() -> AsyncIterator[Server]:
    sys.path.insert(0, str(ROOT / "bench"))
    from _harness import Rig  # noqa: E402 - only this mode needs the sandbox

    from connector.config import ODataSettings, PipelineSettings, Settings

    def no_teams(settings: Settings) -> Settings:
        return settings.model_copy(update={"bot": {}, "routes": [], "pipeline": PipelineSettings(),
                                           "odata": ODataSettings()})

    async with Rig(no_teams) as rig:
        limits = await rig.raise_fno_limits(FNO_REQUESTS)
        print(f"pipeline server: ml-connector serve (pid {rig.pid}), Teams delivery off, product [pipeline] and "
              f"[odata] defaults; F&O per-user limit raised to {limits}")
        async def drained() -> float:
            started = time.perf_counter()
            while True:
                counts = await rig.health()
                if counts.get("queued", 0) + counts.get("processing", 0) == 0:
                    return time.perf_counter() - started
                await asyncio.sleep(0.5)

        server = Server("pipeline", rig.events_url, rig.pid, seeded_pos=True, settle=drained)
        server.warm_up()
        await drained()
        yield server
        counts = await rig.health()
        print(f"pipeline server at the end: events by state {counts}")


def line(r: dict[str, Any]) -> str:
    return (f"{r['rate']:7.0f}/s, {r['cpu_ms_per_event']:.3f} ms CPU/event (loop {r['loop_ms_per_event']:.3f}, "
            f"other threads {r['other_ms_per_event']:.3f}), {r['server_cpu_pct']:.0f}% of a core, latency "
            f"{r['latency']}, non-2xx {r['non_2xx']}, socket errors {r['socket_errors']}")


async def main(seconds: float, rounds: int, connections: list[int], baseline: Path | None, with_ops: bool,
               with_pipeline: bool, with_nostore: bool = False, with_writer_process: bool = False,
               with_nofsync: bool = False) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (Debian package)")
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores, shared with other work; load average at start {os.getloadavg()[0]:.2f}")
    print(f"client: wrk ({rounds} rounds x {seconds:g} s per server and connection count; servers interleaved, "
          "the order rotating each round)")
    ratios: dict[tuple[str, int], list[float]] = {}
    offset = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            servers = [await stack.enter_async_context(local_server("bare", tmp)),
                       await stack.enter_async_context(local_server("durable", tmp))]
            if baseline is not None:
                servers.append(await stack.enter_async_context(local_server("baseline", tmp, baseline)))
            if with_nostore:
                servers.append(await stack.enter_async_context(local_server("nostore", tmp)))
            if with_writer_process:
                servers.append(await stack.enter_async_context(local_server("writerproc", tmp)))
            if with_nofsync:
                servers.append(await stack.enter_async_context(local_server("nofsync", tmp)))
            if with_ops:
                servers.append(await stack.enter_async_context(local_server("ops", tmp)))
            if with_pipeline:
                servers.append(await stack.enter_async_context(pipeline_server()))
            for n in range(rounds):
                for c in connections:
                    order = servers[n % len(servers):] + servers[:n % len(servers)]
                    results: dict[str, dict[str, Any]] = {}
                    settled: list[str] = []
                    for server in order:
                        offset += 100_000_000
                        results[server.mode] = server.measure(c, seconds, offset)
                        if server.settle is not None:
                            settled.append(f"{server.mode} drained its backlog in {await server.settle():.0f} s")
                    bare = results["bare"]
                    print(f"round {n + 1}, {c} connections (load {os.getloadavg()[0]:.2f})"
                          + (f"; after its round the {'; '.join(settled)} before the next server ran" if settled
                             else "") + ":")
                    for s in servers:
                        r = results[s.mode]
                        ratio = r["rate"] / bare["rate"]
                        ratios.setdefault((s.mode, c), []).append(ratio)
                        print(f"  {s.mode:8s} {line(r)}" + ("" if s.mode == "bare" else f": {ratio:.2f}x bare"))
                    if "ops" in results:
                        ratios.setdefault(("ops/durable", c), []).append(results["ops"]["rate"]
                                                                          / results["durable"]["rate"])
        if os.path.exists(os.path.join(tmp, "durable.db")):
            stored = subprocess.run([sys.executable, "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                                     ".execute('select count(*) from events').fetchone()[0])",
                                     os.path.join(tmp, "durable.db")], capture_output=True, text=True).stdout.strip()
            print(f"events stored by the durable server: {stored}")
    for (mode, c), values in ratios.items():
        if mode == "bare":
            continue
        what = "ops on / off (durable)" if mode == "ops/durable" else f"{mode}/bare throughput"
        goal = {"durable": " (goal >= 0.5)", "ops/durable": " (goal >= 0.95)",
                "writerproc": " (what-if, not the product)",
                "nofsync": " (what-if: no fsync, which the product must not do)"}.get(mode, "")
        print(f"{c:3d} connections: {what} {min(values):.2f}-{max(values):.2f}x{goal}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--seconds", type=float, default=5.0)
        ap.add_argument("--rounds", type=int, default=2)
        ap.add_argument("--connections", default="16,64")
        ap.add_argument("--baseline", type=Path, help="another source tree: its durable server joins the rounds")
        ap.add_argument("--with-ops", action="store_true", help="also the front door with metrics and logs on")
        ap.add_argument("--with-nostore", action="store_true",
                        help="also the front door on a store that answers at once (the handler's own ceiling)")
        ap.add_argument("--with-writer-process", action="store_true",
                        help="what-if: also the front door with its enqueue in a separate SQLite writer process")
        ap.add_argument("--with-nofsync", action="store_true",
                        help="what-if: also the front door with SQLite's fsync off (synchronous = OFF)")
        ap.add_argument("--with-pipeline", action="store_true",
                        help="also `ml-connector serve` with its pipeline enriching from the sandbox's F&O")
        a = ap.parse_args()
        asyncio.run(main(a.seconds, a.rounds, [int(x) for x in a.connections.split(",")], a.baseline, a.with_ops,
                         a.with_pipeline, a.with_nostore, a.with_writer_process, a.with_nofsync))
