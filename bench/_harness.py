"""Shared rig for the end-to-end benchmarks: the sandbox and `ml-connector serve`, each in its own process.

The sandbox is started with connector.demo.start_sandbox_process; the connector is configured from the sandbox's
state file (connector.demo.demo_settings, then adjusted by the benchmark) and runs as `ml-connector serve` with the
settings as ML_* environment variables and a fresh ML_MASTER_KEY, so its CPU time and RSS are its own. CPU time is
read from /proc/<pid>/stat (utime + stime), memory from /proc/<pid>/status (VmRSS, VmHWM = peak RSS).
Not run by the test suite. Diagnostics: BENCH_PROFILE=<file> runs the connector under cProfile;
BENCH_WHATIF=msrest-retry runs it with msrest's retry-policy lists precomputed (see serve_whatif_msrest_retry).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from connector.config import Settings  # noqa: E402
from connector.demo import (  # noqa: E402
    TEAM,
    demo_settings,
    free_port,
    install_team,
    settings_environment,
    start_sandbox_process,
    store_demo_secrets,
)
from connector.secrets import MasterKey, generate_master_key  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BASELINE_SCHEMA = 5  # main's SQLite schema version; this tree's 5 -> 6 adds only the counts
# Keys this tree added, per section: a baseline refuses unknown keys, so they are left out of its settings
# (it then runs as it always did: the baselines before 9e7123a commit every pipeline write at once).
BASELINE_UNKNOWN_KEYS: dict[str, tuple[str, ...]] = {"store": ("commit_delay_ms",)}
# Both processes read CLOCK_MONOTONIC, which is system-wide on Linux: this turns the Teams stand-in's monotonic
# times into wall-clock times (the sender's times are wall clock).
MONO_TO_WALL = time.time() - time.monotonic()


# --- /proc -----------------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per thread (tid -> s); the main thread's tid is the pid (the asyncio loop in our processes)."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def runqueue_wait_seconds(pid: int, tid: int | None = None) -> float:
    """Seconds the threads of the process (or thread `tid` alone) spent runnable but waiting for a CPU
    (/proc/<pid>/task/*/schedstat, field 2): how much the machine's other work held this process back."""
    total = 0
    for task in [str(tid)] if tid is not None else os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuProbe:
    """CPU used between start() and stop(): the connector (all threads, and its main/event-loop thread), the
    sandbox, and the whole machine (busy share of all cores, to show contention from other processes)."""

    def __init__(self, connector_pid: int, sandbox_pid: int) -> None:
        self.connector_pid, self.sandbox_pid = connector_pid, sandbox_pid

    def start(self) -> "CpuProbe":
        self._t = time.perf_counter()
        self._c = cpu_seconds(self.connector_pid)
        self._main = thread_cpu_seconds(self.connector_pid).get(self.connector_pid, 0.0)
        self._s = cpu_seconds(self.sandbox_pid)
        self._m = machine_busy()
        self._wait = runqueue_wait_seconds(self.connector_pid)
        self._mwait = runqueue_wait_seconds(self.connector_pid, self.connector_pid)
        self._swait = runqueue_wait_seconds(self.sandbox_pid)
        return self

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t
        busy, total = machine_busy()
        return {"wall": wall, "connector": cpu_seconds(self.connector_pid) - self._c,
                "connector_main": thread_cpu_seconds(self.connector_pid).get(self.connector_pid, 0.0) - self._main,
                "sandbox": cpu_seconds(self.sandbox_pid) - self._s,
                "machine_busy_pct": 100 * (busy - self._m[0]) / max(1, total - self._m[1]),
                "connector_cpu_wait": runqueue_wait_seconds(self.connector_pid) - self._wait,
                "connector_main_wait": runqueue_wait_seconds(self.connector_pid, self.connector_pid) - self._mwait,
                "sandbox_cpu_wait": runqueue_wait_seconds(self.sandbox_pid) - self._swait,
                "cores": os.cpu_count() or 1}


def cpu_line(c: dict[str, float], events: int) -> str:
    return (f"CPU over {c['wall']:.1f} s: connector {1000 * c['connector'] / events:.1f} ms/event "
            f"({100 * c['connector'] / c['wall']:.0f}% of a core; event-loop thread "
            f"{100 * c['connector_main'] / c['wall']:.0f}%), sandbox {1000 * c['sandbox'] / events:.1f} ms/event "
            f"({100 * c['sandbox'] / c['wall']:.0f}%); machine {c['machine_busy_pct']:.0f}% busy over "
            f"{c['cores']} cores (other processes included); runnable but waiting for a CPU: connector "
            f"{c.get('connector_cpu_wait', 0):.1f} s (event-loop thread {c.get('connector_main_wait', 0):.1f} s = "
            f"{100 * c.get('connector_main_wait', 0) / c['wall']:.0f}% of the run), sandbox "
            f"{c.get('sandbox_cpu_wait', 0):.1f} s (all threads)")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def undo_schema_for_baseline(path: Path) -> None:
    """Undo this tree's migration 5 -> 6 (event_counts and its triggers) so the baseline connector opens the file."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for trigger in ("events_count_insert", "events_count_update", "events_count_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute("DROP TABLE IF EXISTS event_counts")
        conn.execute(f"PRAGMA user_version = {BASELINE_SCHEMA}")
    finally:
        conn.close()


def baseline_has_counts(code_dir: Path) -> bool:
    """Whether the baseline tree already has schema 6 (event_counts): then its database needs no undoing."""
    schema = code_dir / "connector" / "store" / "_sqlite_schema.py"
    return schema.exists() and "event_counts" in schema.read_text()


class RssSampler:
    """Samples VmRSS every `every` seconds while running; `peak_mb` also takes the kernel's VmHWM."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.max_rss_kb = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                self.max_rss_kb = max(self.max_rss_kb, memory_kb(self.pid).get("VmRSS", 0))
                self.samples += 1
            except OSError:
                return
            await asyncio.sleep(self.every)

    def start(self) -> "RssSampler":
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> dict[str, float]:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        hwm = memory_kb(self.pid).get("VmHWM", 0)
        return {"sampled_max_rss_mb": self.max_rss_kb / 1024, "vmhwm_mb": hwm / 1024}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# --- the rig ---------------------------------------------------------------------------------------------------
@dataclass
class Rig:
    """One sandbox process + one connector process. `adjust(settings) -> settings` customises the configuration."""

    adjust: Callable[[Settings], Settings] = lambda s: s
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ml-bench-")))
    keep: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    settings: Settings | None = None
    port: int = 0
    token: str = ""
    http: aiohttp.ClientSession | None = None
    sandbox: subprocess.Popen[bytes] | None = None
    connector: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=list)
    code_dir: Path | None = None  # run the connector from this source tree instead (a same-run baseline)

    @property
    def pid(self) -> int:
        assert self.connector is not None
        return self.connector.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.base}/api/dynamics/events/{self.token}"

    async def __aenter__(self) -> "Rig":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def start(self) -> None:
        self.sandbox, self.state = await asyncio.to_thread(start_sandbox_process, self.workdir)
        self.port, self.metrics_port = free_port(), free_port()
        settings = demo_settings(self.state, self.workdir, self.port, self.metrics_port)
        settings.ops.metrics_cache_seconds = 0.0  # health() reads the queue from /metrics: always fresh
        self.settings = self.adjust(settings)
        key_text = generate_master_key()
        self.token = await store_demo_secrets(self.settings, MasterKey.from_text(key_text), self.state)
        if self.code_dir is not None and not baseline_has_counts(self.code_dir):
            undo_schema_for_baseline(self.workdir / "demo.db")  # made by this tree: back to the baseline's schema
        env = dict(os.environ)
        env = {k: v for k, v in env.items() if not k.startswith("ML_")}
        env.update(settings_environment(self.settings))
        env["ML_MASTER_KEY"] = key_text
        if self.code_dir is not None:  # a baseline: another checkout's code (e.g. `git archive main`), same venv
            env["PYTHONPATH"] = str(self.code_dir)
            # Settings this tree added are unknown to the baseline, which refuses unknown keys: leave them out.
            for section, keys in BASELINE_UNKNOWN_KEYS.items():
                name = f"ML_{section.upper()}"
                values = json.loads(env.get(name, "{}"))
                for key in keys:
                    values.pop(key, None)
                env[name] = json.dumps(values)
        self.command = [str(ROOT / ".venv" / "bin" / "ml-connector"), "serve"]
        if os.environ.get("BENCH_WHATIF") == "msrest-retry":  # diagnostics: see serve_whatif_msrest_retry
            self.command = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
                            "from _harness import serve_whatif_msrest_retry; serve_whatif_msrest_retry()"]
        if os.environ.get("BENCH_PROFILE"):  # diagnostics: the connector's event loop under cProfile
            self.command = [sys.executable, "-m", "cProfile", "-o", os.environ["BENCH_PROFILE"], *self.command]
        log = open(self.workdir / "connector.log", "wb")
        self.connector = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        ssl_ctx = ssl.create_default_context(cafile=self.state["ca_cert"])
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=64),
                                          timeout=aiohttp.ClientTimeout(total=600))
        deadline = time.monotonic() + 60
        while True:
            if self.connector.poll() is not None:
                raise RuntimeError(f"the connector exited ({self.connector.returncode}); "
                                   f"see {self.workdir}/connector.log")
            try:
                async with self.http.get(f"{self.base}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the connector did not answer /healthz within 60 s")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None
        for proc in (self.connector, self.sandbox):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- HTTP helpers --------------------------------------------------------------------------------------
    async def post(self, url: str, body: dict[str, Any]) -> Any:
        assert self.http is not None
        async with self.http.post(url, json=body) as r:
            text = await r.text()
            if r.status >= 400:
                raise RuntimeError(f"POST {url} answered {r.status}: {text[:300]}")
            return json.loads(text) if text else {}

    async def get(self, url: str) -> Any:
        assert self.http is not None
        async with self.http.get(url) as r:
            text = await r.text()
            if r.status >= 400:
                raise RuntimeError(f"GET {url} answered {r.status}: {text[:300]}")
            return json.loads(text)

    async def health(self) -> dict[str, int]:
        """Events by state, from the loopback metrics listener (/healthz is liveness only, without data)."""
        from prometheus_client.parser import text_string_to_metric_families

        assert self.http is not None
        async with self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        return {s.labels["state"]: int(s.value) for f in text_string_to_metric_families(text)
                if f.name == "ml_connector_events" for s in f.samples}

    async def connect_sender(self) -> None:
        """Register the connector's events URL in the F&O sender and activate the scenario's events."""
        sender = self.state["sender"]["admin_url"]
        endpoint = await self.post(f"{sender}/endpoints", {"url": self.events_url, "name": "ml-connector"})
        await self.post(f"{sender}/activate", {"event_ids": self.state["scenario"]["event_ids"],
                                               "endpoint": endpoint["id"]})

    async def set_latency(self, fno_ms: int, teams_ms: int | None = None) -> None:
        await self.post(f"{self.state['fno']['admin_url']}/fno/config", {"latency_ms": fno_ms})
        if teams_ms is not None:
            await self.post(f"{self.state['teams']['admin_url']}/knobs", {"latency_ms": teams_ms})

    async def raise_fno_limits(self, requests: int = 1_000_000) -> dict[str, Any]:
        """Scale F&O's user-based service protection limits (default 6,000 requests and 1,200 s of execution per
        300 s per user) so that they do not bound the measurement; returns the limits now in force."""
        return await self.post(f"{self.state['fno']['admin_url']}/fno/limits",
                               {"requests": requests, "execution_seconds": float(requests)})

    async def fno_stats(self) -> dict[str, Any]:
        return await self.get(f"{self.state['fno']['admin_url']}/fno/stats")

    async def install_with_channels(self, channels: list[str], team: str = TEAM) -> None:
        """Create `channels` in `team` (before the install, so the install sees them), install the app, and wait
        until the connector has recorded the install with every channel."""
        admin = self.state["teams"]["admin_url"]
        for name in channels:
            await self.post(f"{admin}/emit", {"kind": "channel_created", "team": team, "name": name})
        await install_team(self.http, self.state, f"{self.base}/api/messages", team)  # type: ignore[arg-type]
        import sqlite3

        db = self.workdir / "demo.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    docs = [json.loads(d) for (d,) in conn.execute("SELECT doc FROM installs WHERE active = 1")]
            except sqlite3.Error:
                docs = []
            for doc in docs:
                names = set((doc.get("channels") or {}).values())
                if doc.get("team_name") == team and set(channels) <= names:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the connector did not record the install of {team} with {len(channels)} channels")

    async def pending_approvals(self, store: Any, items: int, latency_ms: int,
                                teams_knobs: dict[str, Any] | None = None) -> list[Any]:
        """The approvals rig of bench_approvals and bench_replies: the app installed, the F&O sender connected,
        `latency_ms` on both stand-ins, `items` vendor invoices submitted to workflow; returns the store's pending
        approvals once every one is tracked and the pipeline is idle (their channel cards posted)."""
        await self.install_with_channels([])
        await self.connect_sender()
        await self.set_latency(latency_ms, latency_ms)
        if teams_knobs:
            await self.post(f"{self.state['teams']['admin_url']}/knobs", teams_knobs)
        for _ in range(items):
            await self.post(f"{self.state['scenario']['url']}/submit_to_workflow", {"legal_entity": "usmf"})
        deadline = time.monotonic() + 300
        while True:
            pending = await store.list_approvals(status="pending", limit=10_000)
            counts = await self.health()
            if len(pending) >= items and counts.get("queued", 0) + counts.get("processing", 0) == 0:
                return pending
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pending)} of {items} approvals pending after 300 s: {counts}")
            await asyncio.sleep(0.2)

    async def wait_settled(self, expected: int, deadline_s: float, poll: float = 0.5,
                           stall_s: float = 120.0) -> tuple[float, dict[str, int]]:
        """Poll /healthz until at least `expected` events are done/failed and none is queued or processing.
        Returns (wall time when first seen settled, counts). Raises when nothing changed for `stall_s` seconds
        (naming the connector's CPU use over that time: ~100 % means a busy loop) or after `deadline_s`."""
        end = time.monotonic() + deadline_s
        last: dict[str, int] | None = None
        changed_at, cpu_at = time.monotonic(), cpu_seconds(self.pid)
        while True:
            try:
                counts = await asyncio.wait_for(self.health(), timeout=30)
            except asyncio.TimeoutError:
                counts = last or {}
            if counts != last:
                last, changed_at, cpu_at = counts, time.monotonic(), cpu_seconds(self.pid)
            elif time.monotonic() - changed_at > stall_s:
                busy = 100 * (cpu_seconds(self.pid) - cpu_at) / (time.monotonic() - changed_at)
                raise RuntimeError(f"no progress for {stall_s:.0f} s (connector CPU {busy:.0f}% of a core "
                                   f"meanwhile): {counts}")
            busy = counts.get("queued", 0) + counts.get("processing", 0)
            finished = counts.get("done", 0) + counts.get("failed", 0)
            if busy == 0 and finished >= expected:
                return time.time(), counts
            if time.monotonic() > end:
                raise RuntimeError(f"not settled after {deadline_s:.0f} s: {counts}")
            await asyncio.sleep(poll)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the connector's SQLite store (read-only)."""
        import sqlite3

        with sqlite3.connect(f"file:{self.workdir / 'demo.db'}?mode=ro", uri=True, timeout=30) as conn:
            return list(conn.execute(sql, args))


def serve_whatif_msrest_retry() -> None:
    """`ml-connector serve` with msrest's ClientRetryPolicy built from precomputed status lists: what the Teams path
    would cost if botbuilder did not rebuild them (list membership over range(999), ~5 ms) for the ConnectorClient and
    UserTokenClient it creates on every post. Diagnostics only (BENCH_WHATIF=msrest-retry); behaviour is unchanged:
    the same Retry settings, computed once."""
    import msrest.universal_http.requests as msrest_requests

    safe = set(msrest_requests.ClientRetryPolicy.safe_codes)
    retry_codes = [i for i in range(999) if i not in safe]
    methods = ["HEAD", "TRACE", "GET", "PUT", "OPTIONS", "DELETE", "POST", "PATCH"]

    def __init__(self: Any) -> None:
        self.policy = msrest_requests.Retry()
        self.policy.total = 3
        self.policy.connect = 3
        self.policy.read = 3
        self.policy.backoff_factor = 0.8
        self.policy.BACKOFF_MAX = 90
        self.policy.status_forcelist = list(retry_codes)
        self.policy.method_whitelist = list(methods)

    msrest_requests.ClientRetryPolicy.__init__ = __init__  # type: ignore[method-assign]
    from connector.cli import main

    sys.argv = ["ml-connector", "serve"]
    main()


def usmf_po_numbers(count: int = 40) -> list[str]:
    """The seeded usmf purchase orders (sandbox/seed.py numbers them USMF-000001..)."""
    return [f"USMF-{n:06d}" for n in range(1, count + 1)]


def command_line() -> str:
    return " ".join([".venv/bin/python", str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]])
