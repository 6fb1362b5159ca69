"""Log context: the ids of what is being worked on, added to every log line written meanwhile.

The pipeline binds an event's ids when it claims it, delivery adds the card's, approvals the work item's; every
log line in that task (ours and the adapters') then carries them, so one grep follows an event from F&O to its
card and its decision. A contextvar, so concurrent events in their own tasks never mix.
"""

from __future__ import annotations

import contextvars
import logging
from types import MappingProxyType
from typing import Any, Mapping

# The fields a log line may carry, in the order the JSON formatter writes them.
FIELDS = ("event_id", "environment", "business_event_id", "control_number", "card_id", "work_item_id",
          "approval_id", "request_id")

# An immutable empty default (never mutated: bind() and bound() always set a new dict).
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "ml_connector_log_context", default=MappingProxyType({}))


def current() -> dict[str, Any]:
    """The fields bound in this task (a copy)."""
    return dict(_context.get())


def bind(**fields: Any) -> None:
    """Add fields for the rest of this task (None values are skipped). A task started from here inherits them."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v is not None and v != ""})
    _context.set(merged)


class bound:  # noqa: N801 - used as a function: `with bound(...)`
    """Fields for the duration of a block. A class rather than a @contextmanager generator: the access log binds
    the request id for every request the front door answers, and the generator machinery was most of its cost."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        fields = {k: v for k, v in self._fields.items() if v is not None and v != ""}
        self._token = _context.set({**_context.get(), **fields})

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (without overwriting an explicit `extra=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields a record carries (bound or passed with `extra=`)."""
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) not in (None, "")}
