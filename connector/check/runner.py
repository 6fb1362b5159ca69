"""Run every group of checks: the configuration first (the others need its secrets), then F&O per environment,
Graph, the bot and the public URL side by side. A group that crashes or overruns becomes one ✗ line; the others
carry on."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping

from connector.check import config_checks, fno_checks, server_checks, sso_checks, teams_checks
from connector.check.context import CheckContext, check_context
from connector.check.model import CheckResult, Progress, Reporter, Status
from connector.config import EnvironmentSettings, Settings
from connector.secrets import MasterKey

log = logging.getLogger(__name__)

GroupRun = Callable[[Reporter], Awaitable[None]]


class UnknownEnvironment(ValueError):
    """--environment names no configured environment."""


async def _group(name: str, run: GroupRun, results: list[CheckResult], progress: Progress | None,
                 timeout: float, budget: float) -> None:
    r = Reporter(name, results, progress, timeout)
    try:
        await asyncio.wait_for(run(r), budget)
    except asyncio.TimeoutError:
        r.fail("(group)", f"the checks did not finish within {budget:g} s", "check the network path to the "
               "hosts this group calls and run `ml-connector check` again.")
    except Exception as exc:  # noqa: BLE001 - one broken group must not hide the others
        log.debug("check group %s crashed", name, exc_info=True)
        r.fail("(group)", f"the check itself failed: {type(exc).__name__}: {exc}", "report this with the "
               "output of `ml-connector check --json`.")


def _fno_group(ctx: CheckContext, env: EnvironmentSettings) -> GroupRun:
    async def run(r: Reporter) -> None:
        await fno_checks.run(ctx, r, env)
    return run


async def run_checks(settings: Settings, *, environment: str | None = None, progress: Progress | None = None,
                     timeout: float = 15, environ: Mapping[str, str] | None = None,
                     master_key: MasterKey | None = None) -> list[CheckResult]:
    """Every check, in checklist order. `timeout` bounds each network call; a group gets a few of those."""
    envs = settings.environments
    if environment is not None:
        envs = [e for e in envs if e.name == environment]
        if not envs:
            known = ", ".join(e.name for e in settings.environments) or "none configured"
            raise UnknownEnvironment(f"no environment named {environment!r} (known: {known})")
    budget = timeout * 6
    async with check_context(settings, environ=environ, timeout=timeout, master_key=master_key,
                             environment=environment) as ctx:
        first: list[CheckResult] = []
        await _group(config_checks.GROUP, lambda r: config_checks.run(ctx, r), first, progress, timeout, budget)
        groups: list[tuple[str, GroupRun]] = []
        for env in envs:
            groups.append((fno_checks.group_name(env), _fno_group(ctx, env)))
        if ctx.teams is not None and ctx.teams.enabled:
            if ctx.teams.graph:
                groups.append((teams_checks.GRAPH, lambda r: teams_checks.run_graph(ctx, r)))
            groups.append((teams_checks.BOT, lambda r: teams_checks.run_bot(ctx, r)))
            if sso_checks.wanted(ctx):
                groups.append((sso_checks.GROUP, lambda r: sso_checks.run(ctx, r)))
        groups.append((server_checks.GROUP, lambda r: server_checks.run(ctx, r)))
        per_group: list[list[CheckResult]] = [[] for _ in groups]
        await asyncio.gather(*(_group(name, run, out, progress, timeout, budget)
                               for (name, run), out in zip(groups, per_group)))
    return first + [res for out in per_group for res in out]


def failed(results: list[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)
