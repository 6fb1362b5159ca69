"""The checklist as text (one line per item, ✗ lines followed by their fix) or JSON."""

from __future__ import annotations

import json
import sys
from typing import IO

from connector.check.model import CheckResult, Status

MARK = {Status.OK: "✓", Status.FAIL: "✗", Status.WARN: "!"}


def render_text(results: list[CheckResult]) -> str:
    lines: list[str] = []
    group = None
    for res in results:
        if res.group != group:
            if group is not None:
                lines.append("")
            group = res.group
            lines.append(group)
        text = f"  {MARK[res.status]} {res.item}"
        if res.detail:
            text += f": {res.detail}"
        lines.append(text)
        if res.fix and res.status is not Status.OK:
            lines.append(f"      fix: {res.fix}")
    counts = {s: sum(1 for r in results if r.status is s) for s in Status}
    lines += ["", f"{counts[Status.FAIL]} failed, {counts[Status.WARN]} warning(s), {counts[Status.OK]} passed"]
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    return json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False)


class ProgressLine:
    """`[n] group: item…` rewritten in place on a terminal; silent when `stream` is not a TTY."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.count = 0

    def __call__(self, text: str) -> None:
        if not self.enabled:
            return
        self.count += 1
        self.stream.write(f"\r\x1b[2K[{self.count}] checking {text}…"[:200])
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self.count:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
