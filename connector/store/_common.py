"""Helpers both store implementations share: ids, the history vocabulary, and dataclass <-> dict conversion.

Nothing here knows SQL or MongoDB.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, fields
from typing import Any

from connector.store.base import EventStatus, Install, PostedCard

# History vocabulary (HistoryEntry.step / .outcome) written by the stores themselves; stages write their own.
STEP_RECEIVED = "received"  # outcome "ok", "ignored" or "duplicate"
STEP_DONE = "done"  # outcome "ok"
STEP_PARK = "park"  # outcome "parked"
STEP_REPLAY = "replay"  # outcome "ok"
OUTCOME_OK = "ok"
OUTCOME_IGNORED = "ignored"
OUTCOME_DUPLICATE = "duplicate"
OUTCOME_RETRY = "retry"  # reschedule: step is the stage that will be retried
OUTCOME_PARKED = "parked"

REPLAYABLE = (EventStatus.FAILED, EventStatus.DONE)


class IdGenerator:
    """Short, printable ids that sort by creation time: 12 hex digits of milliseconds + 10 random hex digits.

    Monotonic within a process (the random tail is incremented when the clock has not moved), so ids created
    by one process sort in creation order, like a ULID. Thread-safe.
    """

    _TAIL_BITS = 40

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_tail = 0

    def __call__(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                tail = self._last_tail + 1
                if tail >> self._TAIL_BITS:  # tail exhausted within one millisecond: borrow the next one
                    ms += 1
                    tail = int.from_bytes(os.urandom(5), "big") >> 1
            else:
                tail = int.from_bytes(os.urandom(5), "big") >> 1  # leave room to count up
            self._last_ms, self._last_tail = ms, tail
        return f"{ms:012x}{tail:010x}"


new_id = IdGenerator()


def check_data_keys(data: dict[str, Any]) -> None:
    """Top-level data keys become field names in MongoDB: keep them plain in both stores."""
    for key in data:
        if not isinstance(key, str) or not key or "." in key or key.startswith("$") or "\x00" in key:
            raise ValueError(f"data keys must be non-empty strings without '.', '$' prefix or NUL: {key!r}")


def install_to_dict(install: Install) -> dict[str, Any]:
    return asdict(install)


def install_from_dict(doc: dict[str, Any]) -> Install:
    names = {f.name for f in fields(Install)}
    values = {k: v for k, v in doc.items() if k in names}
    values["channels"] = dict(values.get("channels") or {})
    return Install(**values)


CARD_FIELDS = tuple(f.name for f in fields(PostedCard))


def card_from_dict(doc: dict[str, Any]) -> PostedCard:
    return PostedCard(**{k: doc.get(k) for k in CARD_FIELDS if k in doc})


def zero_counts() -> dict[EventStatus, int]:
    """count_by_status reports every status, zero included, so callers can index it without .get()."""
    return {status: 0 for status in EventStatus}
