"""What one check line is, and the reporter a group of checks writes its lines to."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")
Progress = Callable[[str], None]


class Status(str, Enum):
    OK = "ok"
    FAIL = "fail"
    WARN = "warn"


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist; `fix` is one sentence saying what to do (fail and warn only)."""

    group: str
    item: str
    status: Status
    detail: str = ""
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


class CheckTimeout(Exception):
    """A check got no answer within its time budget."""


class Reporter:
    """Collects one group's lines and announces each check before it runs (the progress line)."""

    def __init__(self, group: str, results: list[CheckResult], progress: Progress | None, timeout: float) -> None:
        self.group, self._results, self._progress, self.timeout = group, results, progress, timeout

    def starting(self, item: str) -> None:
        if self._progress:
            self._progress(f"{self.group}: {item}")

    def ok(self, item: str, detail: str = "") -> None:
        self._results.append(CheckResult(self.group, item, Status.OK, detail))

    def warn(self, item: str, detail: str, fix: str = "") -> None:
        self._results.append(CheckResult(self.group, item, Status.WARN, detail, fix))

    def fail(self, item: str, detail: str, fix: str) -> None:
        self._results.append(CheckResult(self.group, item, Status.FAIL, detail, fix))

    async def bounded(self, item: str, call: Awaitable[T]) -> T:
        """Await `call` within the check timeout (CheckTimeout otherwise)."""
        self.starting(item)
        try:
            return await asyncio.wait_for(call, self.timeout)
        except asyncio.TimeoutError:
            raise CheckTimeout(f"no answer within {self.timeout:g} s") from None


def unreachable(url: str, reason: str) -> tuple[str, str]:
    """(detail, fix) for a host we could not reach."""
    return (f"cannot reach {url}: {reason}; check the URL, DNS, proxy",
            "check the URL in the configuration, that its host resolves from here, and any proxy "
            "(HTTPS_PROXY/NO_PROXY) or firewall in between.")
