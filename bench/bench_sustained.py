"""Sustained enrichment throughput at F&O's DEFAULT service protection limit (performance issue: one request per event).

The sandbox and `ml-connector serve` run in their own processes (bench/_harness.py), Teams delivery off, product
defaults for [pipeline] and [odata]. F&O's user-based limits are set explicitly to their defaults (6,000 requests
and 1,200 s execution per 300 s sliding window per user, dynamics.md §5) and printed. The sender offers PO-confirmed
events (each enriched by the default plan: header + $expand of lines and vendor = 1 request) at `--rate` events/s
for `--duration` seconds (one burst of `rate` events per second, on a fixed schedule); the run ends when every
event is done or parked. Figures: events/s = events / max(duration, first POST .. last event settled), parked (failed)
events, F&O requests and 429 answers, requests per event, load average (the machine is shared).

Goal: >= 18 events/s per F&O app user over 5 minutes with 0 parked (20 events/s is the ceiling at 1 request/event).

    .venv/bin/python bench/bench_sustained.py [--rate 19] [--duration 300] [--concurrency 8]
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

from _harness import Rig, command_line, cpu_seconds  # noqa: E402

from connector.config import ODataSettings, PipelineSettings, Settings  # noqa: E402

GOAL_EVENTS_PER_S = 18.0
F_AND_O_DEFAULTS = {"requests": 6000, "execution_seconds": 1200.0, "concurrent": 52, "window_seconds": 300.0,
                    "user_limits": True}


def no_teams(settings: Settings) -> Settings:
    return settings.model_copy(update={"bot": {}, "routes": [], "pipeline": PipelineSettings(),
                                       "odata": ODataSettings()})


async def run(rate: int, duration: int, concurrency: int) -> dict[str, Any]:
    async with Rig(no_teams) as rig:
        await rig.connect_sender()
        await rig.set_latency(0)
        limits = await rig.post(f"{rig.state['fno']['admin_url']}/fno/limits", F_AND_O_DEFAULTS)
        scenario = rig.state["scenario"]["url"]
        await rig.post(f"{scenario}/burst", {"count": 20, "concurrency": 4})  # warm-up (counts in F&O's window)
        await rig.wait_settled(20, 120, poll=0.2)
        before = await rig.health()
        fno0 = await rig.fno_stats()
        settled0 = before.get("done", 0) + before.get("failed", 0)
        load0 = os.getloadavg()
        cpu0, t0 = cpu_seconds(rig.pid), time.perf_counter()
        late = 0.0
        for second in range(duration):
            due = t0 + second
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)
            else:
                late = max(late, now - due)
            await rig.post(f"{scenario}/burst", {"count": rate, "concurrency": min(rate, concurrency)})
        t_offered = time.perf_counter()
        events = rate * duration
        await rig.wait_settled(settled0 + events, 600, poll=0.25)
        t1, cpu1 = time.perf_counter(), cpu_seconds(rig.pid)
        counts = await rig.health()
        fno = await rig.fno_stats()
        requests = fno.get("requests", 0) - fno0.get("requests", 0)
        return {
            "rate": rate, "duration": duration, "events": events, "limits": limits,
            "offered_s": t_offered - t0, "elapsed_s": t1 - t0,
            # never more than offered: the last burst starts at duration - 1 s, so divide by at least duration
            "events_per_s": events / max(t1 - t0, float(duration)),
            "late_s": late, "parked": counts.get("failed", 0) - before.get("failed", 0),
            "done": counts.get("done", 0) - before.get("done", 0),
            "requests": requests, "per_event": requests / events,
            "throttled": fno.get("throttled", 0) - fno0.get("throttled", 0),
            "cpu_ms_per_event": 1000 * (cpu1 - cpu0) / events,
            "load_start": load0, "load_end": os.getloadavg(),
        }


def report(r: dict[str, Any]) -> None:
    lim = r["limits"]
    print(f"\nF&O limit in force: {lim['requests']:,} requests and {lim['execution_seconds']:,.0f} s execution per "
          f"{lim['window_seconds']:.0f} s per user, {lim['concurrent']} concurrent, user limits "
          f"{'on' if lim['user_limits'] else 'OFF'} (F&O's defaults, not raised)")
    print(f"offered                  {r['rate']} events/s for {r['duration']} s = {r['events']} PO-confirmed events "
          f"(offered in {r['offered_s']:.1f} s; worst burst start {r['late_s']:.2f} s late)")
    ok = "met" if r["events_per_s"] >= GOAL_EVENTS_PER_S and r["parked"] == 0 else "NOT met"
    print(f"sustained                {r['events_per_s']:6.2f} events/s ({r['done']} done in {r['elapsed_s']:.1f} s), "
          f"parked {r['parked']}: goal >= {GOAL_EVENTS_PER_S:.0f}/s with 0 parked {ok}")
    print(f"F&O requests             {r['requests']} ({r['per_event']:.2f}/event), {r['throttled']} answered 429")
    print(f"connector CPU            {r['cpu_ms_per_event']:.2f} ms/event (wall-clock run, idle included)")
    print("load average             start {:.2f} {:.2f} {:.2f}, end {:.2f} {:.2f} {:.2f} (2 cores, shared)".format(
        *r["load_start"], *r["load_end"]))


async def main(args: argparse.Namespace) -> None:
    print(f"command: {command_line()}")
    for n in range(args.runs):
        print(f"\nrun {n + 1} of {args.runs}")
        report(await run(args.rate, args.duration, args.concurrency))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=19, help="events offered per second")
    ap.add_argument("--duration", type=int, default=300, help="seconds of offered load")
    ap.add_argument("--concurrency", type=int, default=8, help="sender POSTs in flight within a second's burst")
    ap.add_argument("--runs", type=int, default=1)
    asyncio.run(main(ap.parse_args()))
