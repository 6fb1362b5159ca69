"""How the MongoDB store's documents map to base.py's dataclasses (and back, where it is not a plain dict)."""

from __future__ import annotations

from typing import Any

from connector.store import _common as c
from connector.store.base import EventRecord, EventStatus, Install, SecretRecord


def entry(at: float, step: str, outcome: str, detail: str) -> dict[str, Any]:
    return {"at": at, "step": step, "outcome": outcome, "detail": detail}


def event_record(doc: dict[str, Any]) -> EventRecord:
    return EventRecord(
        id=doc["_id"],
        environment=doc["environment"],
        business_event_id=doc["business_event_id"],
        control_number=int(doc["control_number"]),
        event_id=doc["event_id"],
        legal_entity=doc.get("legal_entity"),
        payload=doc["payload"],
        status=EventStatus(doc["status"]),
        stage=doc["stage"],
        attempts=doc["attempts"],
        received_at=doc["received_at"],
        updated_at=doc["updated_at"],
        next_attempt_at=doc["next_attempt_at"],
        data=doc.get("data") or {},
        last_error=doc.get("last_error"),
        lease_id=doc.get("lease_id"),
        lease_expires_at=doc.get("lease_expires_at"),
    )


def secret_record(doc: dict[str, Any]) -> SecretRecord:
    return SecretRecord(
        name=doc["_id"],
        ciphertext=bytes(doc["ciphertext"]),
        key_id=doc["key_id"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


def install_record(doc: dict[str, Any]) -> Install:
    values = dict(doc)
    values["id"] = values.pop("_id")
    values["channels"] = {channel_id: name for channel_id, name in values.get("channels") or []}
    return c.install_from_dict(values)
