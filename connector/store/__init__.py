"""The durable store: one Protocol (base.py), SQLite (embedded default) and MongoDB implementations."""

from connector.store.factory import open_store
from connector.store.base import (
    Approval,
    AuditEntry,
    UserMapping,
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
    "Approval",
    "AuditEntry",
    "UserMapping",
    "open_store",
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
