"""parse_events never raises anything but EventRejected, and what it accepts satisfies the envelope rules."""

from __future__ import annotations

import json
from datetime import timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamics import BusinessEvent, EventRejected, parse_events

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)

guids = st.uuids().map(str)
braced = guids.map(lambda g: "{" + g.upper() + "}")
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
valid: dict[str, st.SearchStrategy[Any]] = {
    "BusinessEventId": st.sampled_from(["PurchaseOrderConfirmedBusinessEvent", "BusinessEventsTestEndpointContract",
                                        "Workflow_A_000001_B_WorkItem"])
    | st.from_regex(r"[A-Za-z0-9_]{1,200}", fullmatch=True),
    "ControlNumber": int64,
    "EventId": guids | braced | guids.map(str.upper),
    "EventTime": st.integers(min_value=-(10**12), max_value=10**13).map(lambda ms: f"/Date({ms})/"),
}
valid_optional: dict[str, st.SearchStrategy[Any]] = {
    "EventTimeIso8601": st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat()),
    "BusinessEventLegalEntity": st.sampled_from(["usmf", "USMF", "", "001"]),
    "LegalEntity": json_scalars,
    "InitiatingUserAADObjectId": braced,
    "MajorVersion": st.integers(min_value=0, max_value=5),
    "MinorVersion": st.integers(min_value=0, max_value=5),
}
wild: st.SearchStrategy[Any] = (
    json_values | st.integers(min_value=-(2**65), max_value=2**65) | st.floats() | st.text(max_size=210)
    | st.integers(min_value=-(10**16), max_value=10**16).map(lambda ms: f"/Date({ms}-0500)/")
)
DELETE = object()


def _mutate(env: dict[str, Any], changes: list[tuple[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**extra, **env}
    for key, value in changes:
        if value is DELETE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# Mostly valid envelopes with 0-2 fields deleted or replaced by anything, plus arbitrary extra fields.
envelopes = st.builds(
    _mutate,
    st.fixed_dictionaries(valid, optional=valid_optional),
    st.lists(st.tuples(st.sampled_from(sorted({**valid, **valid_optional})), st.just(DELETE) | wild), max_size=2),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)


def check(body: bytes | str) -> None:
    try:
        events = parse_events(body)
    except EventRejected as error:
        assert error.field and error.reason
        return
    assert events and all(isinstance(e, BusinessEvent) for e in events)
    for e in events:
        assert isinstance(e.business_event_id, str) and 0 < len(e.business_event_id) <= 200
        assert -(2**63) <= e.control_number < 2**63 and type(e.control_number) is int
        assert len(e.event_id) == 36 and e.event_id == e.event_id.upper()
        assert e.event_time.utcoffset() is not None and e.event_time.utcoffset().total_seconds() == 0
        assert e.initiating_user_object_id is None or e.initiating_user_object_id == e.initiating_user_object_id.lower()
        assert isinstance(e.payload, dict)
        json.dumps(e.payload).encode("utf-8")  # storable as UTF-8 JSON


@FUZZ
@given(json_values)
def test_any_json_value(value: Any) -> None:
    check(json.dumps(value))


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(body: bytes) -> None:
    check(body)


@FUZZ
@given(st.one_of(envelopes, st.lists(envelopes, min_size=1, max_size=3)))
def test_near_valid_envelopes(doc: Any) -> None:
    check(json.dumps(doc).encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text(text: str) -> None:
    check(text)
