"""Helpers both store implementations share: ids, the history vocabulary, and dataclass <-> dict conversion.

Nothing here knows SQL or MongoDB.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import asdict, fields
from typing import Any

from connector.store.base import (Approval, AuditEntry, EventStatus, Install, Instance, PostedCard,
                                  SummarySubscription, UserMapping)

# History vocabulary (HistoryEntry.step / .outcome) written by the stores themselves; stages write their own.
STEP_RECEIVED = "received"  # outcome "ok", "ignored" or "duplicate"
STEP_DONE = "done"  # outcome "ok"
STEP_PARK = "park"  # outcome "parked"
STEP_REPLAY = "replay"  # outcome "ok"
STEP_RECOVER = "recover"  # outcome "released": the instance that held the lease is gone
OUTCOME_RELEASED = "released"
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
        # Seeded once: os.urandom per id would let go of the GIL on every enqueue and claim (a hand-off to the
        # event loop and a wait to get it back); ids must be unique and ordered, not unpredictable.
        self._random = random.Random(os.urandom(32))
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
                    tail = self._random.getrandbits(self._TAIL_BITS - 1)
            else:
                tail = self._random.getrandbits(self._TAIL_BITS - 1)  # leave room to count up
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
    return PostedCard(**{k: doc.get(k) for k in CARD_FIELDS if k in doc})  # type: ignore[arg-type]


def zero_counts() -> dict[EventStatus, int]:
    """count_by_status reports every status, zero included, so callers can index it without .get()."""
    return {status: 0 for status in EventStatus}


# --- approvals, audit, user mappings ----------------------------------------------------------------------------
APPROVAL_FIELDS = tuple(f.name for f in fields(Approval))
APPROVAL_KEY = ("environment", "work_item_id")
APPROVAL_CHANGEABLE = frozenset(APPROVAL_FIELDS) - frozenset(APPROVAL_KEY)
AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))
USER_MAPPING_FIELDS = tuple(f.name for f in fields(UserMapping))


def check_transition(from_status: tuple[str, ...], changes: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Validate a transition_approval call; returns the statuses as a list and the changes normalized.

    A bare string for from_status is refused (it would silently become a tuple of letters and never match), and so is
    an empty one. `changes` may name any Approval field but the key; outcomes become a plain list.
    """
    if isinstance(from_status, str) or not from_status:
        raise ValueError(f"from_status must be a non-empty tuple of statuses, got {from_status!r}")
    statuses = list(from_status)
    if not all(isinstance(s, str) for s in statuses):
        raise ValueError(f"from_status must hold strings, got {from_status!r}")
    key = sorted(set(changes) & set(APPROVAL_KEY))
    if key:
        raise ValueError(f"transition_approval cannot change the approval's key: {', '.join(key)}")
    unknown = sorted(str(name) for name in set(changes) - APPROVAL_CHANGEABLE)
    if unknown:
        raise ValueError(f"transition_approval: unknown Approval fields: {', '.join(unknown)}")
    normalized = dict(changes)
    if "outcomes" in normalized:
        normalized["outcomes"] = list(normalized["outcomes"] or [])
    return statuses, normalized


def approval_to_dict(approval: Approval) -> dict[str, Any]:
    doc = asdict(approval)
    doc["outcomes"] = list(approval.outcomes)
    return doc


def approval_from_dict(doc: dict[str, Any]) -> Approval:
    values = {k: doc[k] for k in APPROVAL_FIELDS if k in doc}
    values["outcomes"] = list(values.get("outcomes") or [])
    return Approval(**values)


def audit_from_dict(doc: dict[str, Any]) -> AuditEntry:
    return AuditEntry(**{k: doc[k] for k in AUDIT_FIELDS if k in doc})


def fo_user_key(fo_user: str) -> str:
    """User mappings are case-insensitive on the F&O user id: both stores key them on this folded form."""
    return fo_user.casefold()


def user_mapping_from_dict(doc: dict[str, Any]) -> UserMapping:
    return UserMapping(**{k: doc[k] for k in USER_MAPPING_FIELDS if k in doc})


def check_limit(limit: int) -> int:
    """MongoDB reads limit 0 as "no limit" and SQLite as "no rows": refuse it (and negatives) so both agree."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return limit


INSTANCE_FIELDS = tuple(f.name for f in fields(Instance))
RETIRING = 0.0  # an instance's expires_at while it is being retired: lapsed for everyone, never heartbeated again


def instance_from_dict(doc: dict[str, Any]) -> Instance:
    return Instance(**{k: doc[k] for k in INSTANCE_FIELDS})


def retired_detail(instance_id: str, reason: str) -> str:
    return f"instance {instance_id} is gone ({reason}): lease released"


# --- "my approvals" daily summary -----------------------------------------------------------------------------
SUMMARY_FIELDS = tuple(f.name for f in fields(SummarySubscription))


def summary_from_dict(doc: dict[str, Any]) -> SummarySubscription:
    values = {k: doc[k] for k in SUMMARY_FIELDS if k in doc}
    values["enabled"] = bool(values.get("enabled"))
    return SummarySubscription(**values)
