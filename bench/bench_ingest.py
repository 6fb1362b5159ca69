"""Ingest benchmark: durable events accepted per second and server CPU per event, vs a bare aiohttp handler.

Driven by `wrk` (Debian package `wrk`; a C client, so the client is not what saturates first), at 16 and 64
connections, the bare and the durable server interleaved round by round, each in its own process (one core each at
most, like the service). Every request carries a unique PO-confirmed event (bench/ingest.lua numbers them), so the
durable server stores every one. The durable server is the real front door (connector.web.events_app) on the real
SQLite store (WAL, synchronous=FULL, group commit); the bare one reads the body and answers 202 without a store.
Server CPU per event = the server process's utime+stime over the run / requests answered (threads included).
Figures are same-run ratios: the machine is shared, so absolute rates vary with its load (printed).

    .venv/bin/python bench/bench_ingest.py [--seconds 5] [--rounds 2] [--connections 16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-" + "k" * 40
LUA = Path(__file__).resolve().parent / "ingest.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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


def run_wrk(port: int, connections: int, seconds: float, offset: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/api/dynamics/events/{TOKEN}"
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", str(LUA), url,
                          "--", str(offset)], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests": total, "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors
            else "none", "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore


class Server:
    def __init__(self, mode: str, db: str) -> None:
        self.mode, self.db, self.port = mode, db, free_port()
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", mode, str(self.port), db])

    async def __aenter__(self) -> "Server":
        await wait_listening(self.port)
        run_wrk(self.port, 8, 1, 900_000_000)  # warm-up: connections, SQLite pages, code paths (not counted)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def measure(self, connections: int, seconds: float, offset: int) -> dict[str, float]:
        cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
        r = run_wrk(self.port, connections, seconds, offset)
        cpu, wall = cpu_seconds(self.proc.pid) - cpu0, time.perf_counter() - t0
        return {**r, "cpu_ms_per_event": 1000 * cpu / max(1, r["requests"]), "server_cpu_pct": 100 * cpu / wall}


async def main(seconds: float, rounds: int, connections: list[int]) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (Debian package)")
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores, shared with other work; load average at start {os.getloadavg()[0]:.2f}")
    print(f"client: wrk ({rounds} rounds x {seconds:g} s per server and connection count; servers interleaved)")
    offset = 0
    ratios: dict[int, list[float]] = {c: [] for c in connections}
    cpu_ratios: dict[int, list[float]] = {c: [] for c in connections}
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        async with Server("bare", db) as bare, Server("durable", db) as durable:
            for n in range(rounds):
                for c in connections:
                    results = {}
                    for server in (bare, durable) if n % 2 == 0 else (durable, bare):
                        offset += 100_000_000
                        results[server.mode] = server.measure(c, seconds, offset)
                    b, d = results["bare"], results["durable"]
                    ratios[c].append(d["rate"] / b["rate"])
                    cpu_ratios[c].append(d["cpu_ms_per_event"] / b["cpu_ms_per_event"])
                    print(f"round {n + 1}, {c:3d} connections: bare {b['rate']:7.0f}/s "
                          f"({b['cpu_ms_per_event']:.3f} ms CPU/event, server {b['server_cpu_pct']:.0f}% of a core), "
                          f"durable {d['rate']:7.0f}/s ({d['cpu_ms_per_event']:.3f} ms CPU/event, server "
                          f"{d['server_cpu_pct']:.0f}%): durable/bare {d['rate'] / b['rate']:.2f}x; non-2xx "
                          f"{b['non_2xx']}/{d['non_2xx']}; load {os.getloadavg()[0]:.2f}")
        stored = subprocess.run([sys.executable, "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                                 ".execute('select count(*) from events').fetchone()[0])", db],
                                capture_output=True, text=True).stdout.strip()
    for c in connections:
        print(f"{c:3d} connections: durable/bare throughput {min(ratios[c]):.2f}-{max(ratios[c]):.2f}x (goal >= 0.5), "
              f"CPU per event durable/bare {min(cpu_ratios[c]):.1f}-{max(cpu_ratios[c]):.1f}x")
    print(f"events stored by the durable server: {stored}; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--seconds", type=float, default=5.0)
        ap.add_argument("--rounds", type=int, default=2)
        ap.add_argument("--connections", default="16,64")
        a = ap.parse_args()
        asyncio.run(main(a.seconds, a.rounds, [int(x) for x in a.connections.split(",")]))
