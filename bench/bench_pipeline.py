"""Pipeline benchmark (issue 2): CPU per event through validation, store and enrichment; peak RSS with a backlog.

The sandbox and `ml-connector serve` run in their own processes (bench/_harness.py). Teams delivery is off (no
[bot] app_id), so the pipeline stops after enrichment. Events come from the F&O stand-in's sender (scenario
`burst`: PO re-confirmations of the seeded usmf POs, `--concurrency` POSTs in flight), i.e. the real path:
F&O POST -> validate -> durable store (SQLite, synchronous=FULL) -> lease -> enrich (1 OData request for a PO:
the header with `$expand` of lines and vendor) -> done. Product defaults for [pipeline] and [odata].

1. Enrichment overhead: N events (default 2,000) with no added F&O latency. CPU = utime+stime of the connector
   process from just before the burst to when /healthz shows every event done (idle baseline reported apart);
   events/s = N / (first POST .. last event done). F&O's user-based service protection limit (6,000 requests per
   300 s per user, which alone caps a 3-call plan at 6.7 events/s sustained) is raised in the sandbox for this
   measurement (`--fno-requests`, 0 = keep F&O's default), so that the figure is the connector's own.
2. Peak memory with a backlog: M events (default 10,000) ingested while the pipeline cannot progress, then the
   connector's VmHWM. Two ways to hold the pipeline back: `throttled` (F&O answers 429 Retry-After 3600 to every
   OData call: each event is claimed once, rescheduled, and waits in the store) and `slow` (F&O answers after
   `--slow-ms`: the pipeline keeps its full in-flight window of events waiting on OData). Goal: < 150 MB.

    .venv/bin/python bench/bench_pipeline.py [--events 2000] [--backlog 10000] [--concurrency 16]
                                             [--modes throttled,slow] [--slow-ms 5000] [--skip-cpu] [--skip-memory]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import CpuProbe, Rig, RssSampler, command_line, cpu_line, cpu_seconds, memory_kb  # noqa: E402

from connector.config import ODataSettings, PipelineSettings, Settings  # noqa: E402

MB_GOAL = 150.0


def no_teams(settings: Settings) -> Settings:
    """Teams delivery off (no bot.app_id, no routes); product defaults for the pipeline and OData."""
    return settings.model_copy(update={"bot": {}, "routes": [], "pipeline": PipelineSettings(),
                                       "odata": ODataSettings()})


async def cpu_run(events: int, concurrency: int, fno_requests: int,
                  code_dir: Path | None = None) -> dict[str, float]:
    async with Rig(no_teams, code_dir=code_dir) as rig:
        await rig.connect_sender()
        await rig.set_latency(0)
        if fno_requests:
            await rig.raise_fno_limits(fno_requests)
        scenario = rig.state["scenario"]["url"]
        # warm-up: tokens, TLS sessions, first OData metadata, SQLite pages (not counted)
        await rig.post(f"{scenario}/burst", {"count": 50, "concurrency": concurrency})
        await rig.wait_settled(50, 120, poll=0.2)
        before = await rig.health()
        load0 = os.getloadavg()[0]
        done_before = before.get("done", 0) + before.get("failed", 0)
        idle0, t_idle = cpu_seconds(rig.pid), time.perf_counter()
        await asyncio.sleep(3.0)
        idle_rate = (cpu_seconds(rig.pid) - idle0) / (time.perf_counter() - t_idle)  # CPU s per s when idle
        sampler = RssSampler(rig.pid).start()
        assert rig.sandbox is not None
        probe = CpuProbe(rig.pid, rig.sandbox.pid).start()
        cpu0, t0, sb0 = cpu_seconds(rig.pid), time.perf_counter(), cpu_seconds(rig.sandbox.pid)
        await rig.post(f"{scenario}/burst", {"count": events, "concurrency": concurrency})
        t_ingested, cpu_ingested = time.perf_counter(), cpu_seconds(rig.pid)
        await rig.wait_settled(done_before + events, 600, poll=0.25)
        t1, cpu1, sb1 = time.perf_counter(), cpu_seconds(rig.pid), cpu_seconds(rig.sandbox.pid)
        probe_result = probe.stop()
        mem = await sampler.stop()
        counts = await rig.health()
        fno = await rig.fno_stats()
        elapsed = t1 - t0
        cpu = cpu1 - cpu0
        return {
            "events": events, "elapsed_s": elapsed, "ingest_s": t_ingested - t0,
            "cpu_s": cpu, "cpu_ms_per_event": 1000 * cpu / events,
            "cpu_ms_per_event_minus_idle": 1000 * (cpu - idle_rate * elapsed) / events,
            "cpu_during_ingest_ms_per_event": 1000 * (cpu_ingested - cpu0) / events,
            "events_per_s": events / elapsed, "ingest_events_per_s": events / (t_ingested - t0),
            "idle_cpu_pct": 100 * idle_rate, "cpu_util_pct": 100 * cpu / elapsed,
            "sandbox_cpu_pct": 100 * (sb1 - sb0) / elapsed, "probe": probe_result,
            "odata_concurrency": rig.settings.odata.concurrency,
            "failed": counts.get("failed", 0), "odata_requests": fno.get("requests", 0),
            "fno_429": fno.get("throttled", 0),
            "peak_rss_mb": mem["vmhwm_mb"], "load_start": load0, "load_end": os.getloadavg()[0],
            "fno_limit": fno_requests or 6000,
        }


async def memory_run(backlog: int, concurrency: int, mode: str, slow_ms: int) -> dict[str, float]:
    async with Rig(no_teams) as rig:
        await rig.connect_sender()
        await rig.raise_fno_limits()
        fno_admin = rig.state["fno"]["admin_url"]
        scenario = rig.state["scenario"]["url"]
        await rig.post(f"{scenario}/burst", {"count": 20, "concurrency": 4})  # warm-up: everything initialised
        await rig.wait_settled(20, 120, poll=0.2)
        start_mem = memory_kb(rig.pid)
        if mode == "throttled":
            await rig.post(f"{fno_admin}/fno/throttle", {"seconds": 3600, "retry_after": 3600})
        else:
            await rig.set_latency(slow_ms)
        sampler = RssSampler(rig.pid).start()
        cpu0, t0 = cpu_seconds(rig.pid), time.perf_counter()
        await rig.post(f"{scenario}/burst", {"count": backlog, "concurrency": concurrency})
        t_ingested, cpu1 = time.perf_counter(), cpu_seconds(rig.pid)
        await asyncio.sleep(5.0)  # let the claimer take what it can, then read the peak
        counts = await rig.health()
        mem = await sampler.stop()
        fno = await rig.fno_stats()
        return {
            "mode": mode, "fno_429": fno.get("throttled", 0), "odata_requests": fno.get("requests", 0),
            "backlog": backlog, "ingest_s": t_ingested - t0,
            "ingest_events_per_s": backlog / (t_ingested - t0),
            "cpu_ingest_ms_per_event": 1000 * (cpu1 - cpu0) / backlog,
            "rss_before_mb": start_mem.get("VmRSS", 0) / 1024,
            "peak_rss_mb": mem["vmhwm_mb"], "sampled_max_rss_mb": mem["sampled_max_rss_mb"],
            "rss_after_mb": memory_kb(rig.pid).get("VmRSS", 0) / 1024,
            "queued": counts.get("queued", 0), "processing": counts.get("processing", 0),
            "done": counts.get("done", 0),
        }


def print_cpu(r: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n1) enrichment overhead: {r['events']} PO-confirmed events, F&O latency 0 ms, sender burst "
          f"concurrency {args.concurrency}; F&O limit {r['fno_limit']:,} requests per 300 s per user"
          f"{' (raised: F&O, not the connector, would bind at its default 6,000)' if r['fno_limit'] > 6000 else ''}")
    print(f"   load average             {r['load_start']:.2f} at start, {r['load_end']:.2f} at end (shared machine)")
    print(f"   connector CPU            {r['cpu_ms_per_event']:7.2f} ms/event  "
          f"({r['cpu_ms_per_event_minus_idle']:.2f} without the idle baseline of {r['idle_cpu_pct']:.1f}% CPU)")
    print(f"   of which while ingesting {r['cpu_during_ingest_ms_per_event']:7.2f} ms/event  "
          f"(enrichment runs concurrently with ingest)")
    print(f"   throughput               {r['events_per_s']:7.0f} events/s end to end  "
          f"(ingest alone {r['ingest_events_per_s']:.0f}/s; {r['elapsed_s']:.1f} s in all)")
    print(f"   CPU use                  {r['cpu_util_pct']:7.0f} % of one core (connector), "
          f"{r['sandbox_cpu_pct']:.0f} % (sandbox: sender + F&O OData); [odata] concurrency "
          f"{r['odata_concurrency']} per environment")
    if r["sandbox_cpu_pct"] >= 85:
        print(f"   NOTE: the sandbox used {r['sandbox_cpu_pct']:.0f} % of a core: it (one process: sender + F&O), "
              "not the connector, is the bottleneck of this run's throughput; CPU per event is still the connector's")
    print("   " + cpu_line(r["probe"], r["events"]))
    per_event = r["odata_requests"] / (r["events"] + 50)  # the 50 warm-up events are in F&O's count
    print(f"   OData requests           {r['odata_requests']:7d} ({per_event:.1f}/event, {r['fno_429']} answered "
          f"429); failed {r['failed']}; peak RSS {r['peak_rss_mb']:.0f} MB")


async def compare(args: argparse.Namespace) -> None:
    """Same-run ratio: the baseline tree's connector and this tree's, interleaved, `--rounds` each."""
    base = Path(args.baseline).resolve()
    print(f"\n1) connector CPU per event, baseline {base} vs this tree, interleaved, {args.rounds} rounds of "
          f"{args.events} events")
    pairs = []
    for n in range(args.rounds):
        b = await cpu_run(args.events, args.concurrency, args.fno_requests, code_dir=base)
        t = await cpu_run(args.events, args.concurrency, args.fno_requests)
        pairs.append((b, t))
        ratio = t["cpu_ms_per_event"] / b["cpu_ms_per_event"]
        print(f"   round {n + 1}: baseline {b['cpu_ms_per_event']:.2f} ms/event (minus idle "
              f"{b['cpu_ms_per_event_minus_idle']:.2f}, load {b['load_start']:.2f}->{b['load_end']:.2f}), "
              f"this tree {t['cpu_ms_per_event']:.2f} ms/event (minus idle "
              f"{t['cpu_ms_per_event_minus_idle']:.2f}, load {t['load_start']:.2f}->{t['load_end']:.2f}): "
              f"ratio {ratio:.2f}x; failed {b['failed']}/{t['failed']}; sandbox CPU "
              f"{b['sandbox_cpu_pct']:.0f}/{t['sandbox_cpu_pct']:.0f} %; F&O limit {t['fno_limit']:,}/300 s")
        print("     baseline  " + cpu_line(b["probe"], b["events"]))
        print("     this tree " + cpu_line(t["probe"], t["events"]))
        print(f"     per event by thread: baseline {split(b)}; this tree {split(t)}")
    ratios = [t["cpu_ms_per_event"] / b["cpu_ms_per_event"] for b, t in pairs]
    met = sum(r <= 0.5 for r in ratios)  # the printed ratio is rounded: 0.504 shows as 0.50 and is not met
    print(f"   goal 3 (CPU per event halved, ratio <= 0.50): ratios {', '.join(f'{r:.3f}x' for r in ratios)} -> "
          f"met in {met} of {len(ratios)} rounds{'' if met == len(ratios) else ' (NOT met in every round)'} "
          "(same-run ratios; the machine is shared, see the load averages)")


def split(r: dict[str, Any]) -> str:
    """Connector CPU per event on its event-loop thread and on its other threads (SQLite's database thread)."""
    probe, events = r["probe"], r["events"]
    loop_ms = 1000 * probe["connector_main"] / events
    return f"event loop {loop_ms:.2f} ms, other threads {1000 * probe['connector'] / events - loop_ms:.2f} ms"


async def main(args: argparse.Namespace) -> None:
    print(f"command: {command_line()}")
    print("connector: `ml-connector serve` subprocess, SQLite store (WAL, synchronous=FULL), no [bot] app_id "
          "(Teams delivery off), [pipeline]/[odata] defaults; sandbox in its own process")
    if not args.skip_cpu and args.baseline:
        await compare(args)
    elif not args.skip_cpu:
        r = await cpu_run(args.events, args.concurrency, args.fno_requests)
        print_cpu(r, args)
    if not args.skip_memory:
        for mode in args.modes.split(","):
            r = await memory_run(args.backlog, args.concurrency, mode, args.slow_ms)
            how = ("F&O throttled (429, Retry-After 3600) for every OData call" if mode == "throttled"
                   else f"F&O answers every OData call after {args.slow_ms} ms")
            ok = "met" if r["peak_rss_mb"] < MB_GOAL else "NOT met"
            print(f"\n2) peak memory, {r['backlog']} events queued [{mode}]: {how}")
            print(f"   peak RSS (VmHWM)         {r['peak_rss_mb']:7.1f} MB   goal < {MB_GOAL:.0f} MB: {ok}  "
                  f"(before the burst {r['rss_before_mb']:.1f} MB, after {r['rss_after_mb']:.1f} MB)")
            print(f"   ingest                   {r['ingest_events_per_s']:7.0f} events/s, "
                  f"{r['cpu_ingest_ms_per_event']:.2f} ms CPU/event; store: queued {r['queued']}, "
                  f"processing {r['processing']}, done {r['done']}; F&O: {r['odata_requests']} requests, "
                  f"{r['fno_429']} answered 429")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--backlog", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16, help="sender POSTs in flight during bursts")
    ap.add_argument("--modes", default="throttled,slow")
    ap.add_argument("--slow-ms", type=int, default=5000)
    ap.add_argument("--fno-requests", type=int, default=1_000_000,
                    help="F&O per-user request limit per 300 s for the CPU run (F&O's default 6000 caps a 3-call "
                         "plan at 6.7 events/s; 0 keeps the default)")
    ap.add_argument("--baseline", default="",
                    help="another source tree (e.g. `git archive main | tar -x -C /tmp/base`): run its connector and "
                         "this tree's alternately and print the same-run CPU ratio")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    asyncio.run(main(ap.parse_args()))
