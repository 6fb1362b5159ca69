"""The durable store: one Protocol (base.py), SQLite (embedded default) and MongoDB implementations."""

from connector.store.base import (
    Claim,
    EnqueueResult,
    EventRecord,
    EventStatus,
    HistoryEntry,
    Install,
    LeaseLost,
    NewEvent,
    NotFound,
    PostedCard,
    SecretRecord,
    Store,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "Claim",
    "EnqueueResult",
    "EventRecord",
    "EventStatus",
    "HistoryEntry",
    "Install",
    "LeaseLost",
    "NewEvent",
    "NotFound",
    "PostedCard",
    "SecretRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
]
