"""Business Event bodies from F&O: validate the envelope, keep everything else. Pure: no I/O, no clock.

`parse_events(body)` accepts what the HTTPS endpoint receives (one JSON object, or a JSON array of objects) and
returns `BusinessEvent`s or raises `EventRejected` naming the field. It never raises anything else, whatever the
bytes (the fuzz tests hold it to that). Envelope facts: ../shared/reference/dynamics.md §1.1 and §2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dynamics.errors import EventRejected

__all__ = ["BusinessEvent", "TEST_EVENT_ID", "parse_events", "MAX_EVENTS", "MAX_DEPTH", "MAX_KEYS", "MAX_NODES"]

TEST_EVENT_ID = "BusinessEventsTestEndpointContract"

# Bounds on what one body may hold. Real payloads are flat objects of ~20 keys; these only stop abuse.
MAX_EVENTS = 500  # objects in one array body
MAX_DEPTH = 16  # nesting inside one event (the event object itself is depth 1)
MAX_KEYS = 1000  # keys in any one object
MAX_NODES = 100_000  # JSON values in the whole body
MAX_ID_LENGTH = 200  # BusinessEventId

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EXACT_FLOAT_INT = 2**53  # integral floats beyond this may already have lost digits

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# .NET "/Date(ms)/" with an optional, informational offset; the milliseconds are always UTC.
_MS_DATE = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The /Date(ms)/ values _EPOCH + timedelta(milliseconds=ms) can represent (years 1 to 9999), in whole milliseconds.
_MIN_MS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
_NIL_GUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class BusinessEvent:
    """One validated Business Event. `payload` is the object exactly as received (unknown fields kept)."""

    business_event_id: str
    control_number: int
    event_id: str  # GUID, upper-case, no braces
    legal_entity: str | None  # BusinessEventLegalEntity, else LegalEntity, as sent (casing varies)
    event_time: datetime  # aware, UTC
    initiating_user_object_id: str | None  # Entra object id, lower-case, no braces
    major_version: int
    minor_version: int
    payload: dict[str, Any] = field(hash=False, repr=False)

    @property
    def is_test_event(self) -> bool:
        """The message F&O sends when an endpoint is activated: acknowledge it, do nothing else."""
        return self.business_event_id == TEST_EVENT_ID

    @property
    def is_work_item(self) -> bool:
        """A workflow work-item event (`Workflow_<Type>_<n>_<Element>_WorkItem`)."""
        bid = self.business_event_id
        return bid.startswith("Workflow_") and bid.endswith("_WorkItem") and len(bid) > len("Workflow__WorkItem")


def parse_events(body: bytes | str) -> list[BusinessEvent]:
    """Parse an events request body.

    Args:
        body: the raw request body (UTF-8, a BOM tolerated) or its decoded text.

    Returns:
        The events, in body order (one for an object body).

    Raises:
        EventRejected: the body is not JSON, not an object or non-empty array of objects, breaks a size bound,
            or an event's envelope is invalid. `field` names the envelope field, `index` the array position.
    """
    doc = _load(body)
    if not _within_bounds_by_text(body):
        _check_bounds(doc)
    if isinstance(doc, dict):
        return [_event(doc, None)]
    if isinstance(doc, list):
        if not doc:
            raise EventRejected("body", "empty array: expected at least one event")
        if len(doc) > MAX_EVENTS:
            raise EventRejected("body", f"too many events in one body (more than {MAX_EVENTS})")
        return [_event(item, i) for i, item in enumerate(doc)]
    raise EventRejected("body", f"expected a JSON object or an array of objects, got {_json_type(doc)}")


# --- decoding -------------------------------------------------------------------------------------------------


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every body, as json.loads keeps one for its defaults: json.loads with options builds a decoder
# and its scanner per call. The scanner keeps nothing from one document to the next.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def _load(body: bytes | str) -> Any:
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            text = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise EventRejected("body", "not valid UTF-8") from None
    elif isinstance(body, str):
        text = body
    else:
        raise EventRejected("body", f"expected bytes or text, got {type(body).__name__}")
    if not text or text.isspace():  # (no stripped copy of the body)
        raise EventRejected("body", "empty body")
    try:
        return _DECODER.decode(text)
    except _Duplicate as exc:
        raise EventRejected("body", f"duplicate key {_clip(str(exc))!r}") from None
    except RecursionError:
        raise EventRejected("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers with too many digits
        raise EventRejected("body", f"not valid JSON: {_clip(str(exc))}") from None


def _within_bounds_by_text(body: bytes | str) -> bool:
    """True when the raw body alone proves every bound of `_check_bounds` holds, so the walk can be skipped (it was
    13% of the front door's CPU for an ordinary event). Counting in the text over-counts (brackets and colons inside
    strings count too), which only sends a body to the walk: never the other way round. Lone surrogates can only
    come from a `\\u` escape in UTF-8 bytes (decoding refuses encoded ones), so a body with an escape is walked."""
    if not isinstance(body, (bytes, bytearray)) or b"\\u" in body:
        return False
    return (len(body) < MAX_NODES  # every JSON value takes at least one character
            and body.count(b"{") + body.count(b"[") <= MAX_DEPTH  # every level opens a bracket
            and body.count(b":") <= MAX_KEYS)  # every key is followed by a colon


def _check_bounds(doc: Any) -> None:
    """Depth, key-count and size bounds, and no lone surrogates (they cannot be stored as UTF-8 later)."""
    # The array wrapper does not count as a level: depth 1 is the event object itself.
    stack: list[tuple[Any, int, int | None]]
    if isinstance(doc, list):
        stack = [(item, 1, i) for i, item in enumerate(doc)]
    else:
        stack = [(doc, 1, None)]
    nodes = 0
    while stack:
        value, depth, index = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise EventRejected("body", f"too large (more than {MAX_NODES} JSON values)")
        if isinstance(value, str):
            _check_text(value, index)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise EventRejected("body", f"nested deeper than {MAX_DEPTH} levels", index)
            if isinstance(value, dict):
                if len(value) > MAX_KEYS:
                    raise EventRejected("body", f"an object has more than {MAX_KEYS} keys", index)
                for key, item in value.items():
                    _check_text(key, index)
                    stack.append((item, depth + 1, index))
            else:
                stack.extend((item, depth + 1, index) for item in value)


def _check_text(text: str, index: int | None) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise EventRejected("body", "a string holds an unpaired surrogate escape", index) from None


# --- one event --------------------------------------------------------------------------------------------------


def _event(obj: Any, index: int | None) -> BusinessEvent:
    if type(obj) is dict:
        ordinary = _ordinary_event(obj)
        if ordinary is not None:
            return ordinary
    return _checked_event(obj, index)


def _ordinary_event(obj: dict[str, Any]) -> BusinessEvent | None:
    """The event `_checked_event` would return for an envelope as F&O sends it (integers as JSON integers, both
    times), in fewer steps: it is most of the front door's parsing CPU. None for anything else, including
    anything invalid, which `_checked_event` then judges and names the problem of."""
    get = obj.get
    bid, cn, eid, raw_iso, raw_ms = (get("BusinessEventId"), get("ControlNumber"), get("EventId"),
                                     get("EventTimeIso8601"), get("EventTime"))
    initiator, major, minor = get("InitiatingUserAADObjectId"), get("MajorVersion"), get("MinorVersion")
    if not (type(bid) is str and type(cn) is int and type(eid) is str and type(raw_iso) is str
            and (raw_ms is None or type(raw_ms) is str) and (initiator is None or type(initiator) is str)
            and (major is None or type(major) is int) and (minor is None or type(minor) is int)):
        return None
    if not (bid and len(bid) <= MAX_ID_LENGTH and not bid.isspace() and bid.isprintable()
            and INT64_MIN <= cn <= INT64_MAX
            and (major is None or INT64_MIN <= major <= INT64_MAX)
            and (minor is None or INT64_MIN <= minor <= INT64_MAX)):
        return None
    inner = eid[1:-1] if eid.startswith("{") and eid.endswith("}") else eid
    if not _GUID.fullmatch(inner):
        return None
    if raw_ms is not None:
        match = _MS_DATE.fullmatch(raw_ms)
        if not match or not _MIN_MS <= int(match.group(1)) <= _MAX_MS:
            return None
    if initiator:
        initiator = initiator[1:-1] if initiator.startswith("{") and initiator.endswith("}") else initiator
        if not _GUID.fullmatch(initiator):
            return None
        initiator = None if initiator == _NIL_GUID else initiator.lower()
    else:
        initiator = None
    try:
        event_time = _iso(raw_iso, EventRejected)
        legal_entity = _legal_entity(obj, EventRejected)
    except EventRejected:
        return None
    return BusinessEvent(
        business_event_id=bid,
        control_number=cn,
        event_id=inner.upper(),
        legal_entity=legal_entity,
        event_time=event_time,
        initiating_user_object_id=initiator,
        major_version=major or 0,
        minor_version=minor or 0,
        payload=obj,
    )


def _checked_event(obj: Any, index: int | None) -> BusinessEvent:
    if not isinstance(obj, dict):
        raise EventRejected("body", f"expected an event object, got {_json_type(obj)}", index)

    def reject(name: str, reason: str) -> EventRejected:
        return EventRejected(name, reason, index)

    business_event_id = obj.get("BusinessEventId")
    if business_event_id is None:
        raise reject("BusinessEventId", "missing")
    if not isinstance(business_event_id, str):
        raise reject("BusinessEventId", f"must be a string, got {_json_type(business_event_id)}")
    if not business_event_id.strip():
        raise reject("BusinessEventId", "must not be empty")
    if len(business_event_id) > MAX_ID_LENGTH:
        raise reject("BusinessEventId", f"longer than {MAX_ID_LENGTH} characters")
    if not business_event_id.isprintable():
        raise reject("BusinessEventId", "contains control characters")

    control_number = _int64(obj, "ControlNumber", reject, required=True)
    event_id = _guid(obj.get("EventId"), "EventId", reject, required=True)
    event_time = _event_time(obj, reject)
    legal_entity = _legal_entity(obj, reject)
    initiator = _guid(obj.get("InitiatingUserAADObjectId"), "InitiatingUserAADObjectId", reject, required=False)
    if initiator is not None:
        initiator = None if initiator == _NIL_GUID else initiator.lower()
    major = _int64(obj, "MajorVersion", reject, required=False)
    minor = _int64(obj, "MinorVersion", reject, required=False)

    return BusinessEvent(
        business_event_id=business_event_id,
        control_number=control_number,  # type: ignore[arg-type]
        event_id=event_id.upper(),  # type: ignore[union-attr]
        legal_entity=legal_entity,
        event_time=event_time,
        initiating_user_object_id=initiator,
        major_version=major or 0,
        minor_version=minor or 0,
        payload=obj,
    )


def _int64(obj: dict[str, Any], name: str, reject: Any, *, required: bool) -> int | None:
    """Integral JSON numbers only: `5637144576`, or `5637144576.0` while a float still holds it exactly."""
    value = obj.get(name)
    if value is None:
        if required:
            raise reject(name, "missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise reject(name, f"must be an integer, got {_json_type(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise reject(name, "must be an integer, got a number with a fraction")
        if abs(value) > _EXACT_FLOAT_INT:
            raise reject(name, "must be written as an integer (a float this large has lost digits)")
        value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise reject(name, "outside the 64-bit integer range")
    return value


def _guid(value: Any, name: str, reject: Any, *, required: bool) -> str | None:
    if value is None or (not required and value == ""):
        if required:
            raise reject(name, "missing")
        return None
    if not isinstance(value, str):
        raise reject(name, f"must be a GUID string, got {_json_type(value)}")
    inner = value[1:-1] if value.startswith("{") and value.endswith("}") else value
    if not _GUID.fullmatch(inner):
        raise reject(name, f"not a GUID: {_clip(value)!r}")
    return inner


def _event_time(obj: dict[str, Any], reject: Any) -> datetime:
    """EventTimeIso8601 when present (sub-second precision), else EventTime; both are checked when both sent."""
    raw_ms = obj.get("EventTime")
    from_ms: int | None = None
    if raw_ms is not None:
        if not isinstance(raw_ms, str):
            raise reject("EventTime", f"must be a /Date(ms)/ string, got {_json_type(raw_ms)}")
        match = _MS_DATE.fullmatch(raw_ms)
        if not match:
            raise reject("EventTime", f"not a /Date(ms)/ value: {_clip(raw_ms)!r}")
        from_ms = int(match.group(1))
        # The range check alone (the datetime is only built when it is the one returned: F&O sends both times).
        if not _MIN_MS <= from_ms <= _MAX_MS:
            raise reject("EventTime", "outside the representable date range")

    raw_iso = obj.get("EventTimeIso8601")
    if raw_iso is not None:
        if not isinstance(raw_iso, str):
            raise reject("EventTimeIso8601", f"must be an ISO-8601 string, got {_json_type(raw_iso)}")
        return _iso(raw_iso, reject)
    if from_ms is None:
        raise reject("EventTime", "missing")
    return _EPOCH + timedelta(milliseconds=from_ms)


def _iso(text: str, reject: Any) -> datetime:
    match = _ISO.fullmatch(text)
    if not match:
        raise reject("EventTimeIso8601", f"not an ISO-8601 date-time: {_clip(text)!r}")
    # The pattern decides what is accepted; datetime.fromisoformat (C, 20x faster than the steps below) reads what
    # it can of that, to the same value (tested over a grid of the pattern's forms). Anything it refuses or cannot
    # convert to UTC is judged below, which also names the problem.
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return _iso_fields(text, match, reject)


def _iso_fields(text: str, match: re.Match[str], reject: Any) -> datetime:
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])  # F&O sends 7 digits; keep microseconds
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        tz = timezone(-offset if match.group(9) == "-" else offset) if offset < timedelta(hours=24) else None
        if tz is None:
            raise reject("EventTimeIso8601", f"offset out of range: {_clip(text)!r}")
    else:
        tz = timezone.utc  # no offset: F&O times are UTC
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise reject("EventTimeIso8601", f"not a valid date-time: {_clip(text)!r}") from None


def _legal_entity(obj: dict[str, Any], reject: Any) -> str | None:
    envelope = obj.get("BusinessEventLegalEntity")
    if envelope is not None and not isinstance(envelope, str):
        raise reject("BusinessEventLegalEntity", f"must be a string, got {_json_type(envelope)}")
    if envelope and envelope.strip():
        return envelope.strip()
    # Older envelopes (2021) carry only the contract's own LegalEntity; it is not ours to validate strictly.
    contract = obj.get("LegalEntity")
    if isinstance(contract, str) and contract.strip():
        return contract.strip()
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
