"""parse_events: real payloads from dynamics.md §1.3, the 2021 envelope, and every rejection path."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from dynamics import BusinessEvent, EventRejected, parse_events

# (a) real PO-confirmed payload, Nov 2021, older envelope
REAL_2021 = (
    b'{"BusinessEventId":"PurchaseOrderConfirmedBusinessEvent","ControlNumber":5637144576,'
    b'"EventId":"55A81094-A14E-46A6-A12C-07ED5C5990C6","EventTime":"/Date(1637246655000)/",'
    b'"LegalEntity":"brmf","MajorVersion":0,"MinorVersion":0,"PurchaseJournal":"BRMF-000018-2",'
    b'"PurchaseOrderDate":"/Date(1637193600000)/","PurchaseOrderNumber":"BRMF-000018","PurchaseType":"Purch",'
    b'"TransactionCurrencyAmount":90055.6,"TransactionCurrencyCode":"BRL","VendorAccount":"BRMF-000004"}'
)
# (b) current envelope
CURRENT = {
    "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "USMF",
    "ContextRecordSubject": "", "ControlNumber": 5637985363, "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C",
    "EventTime": "/Date(1697470966000)/", "EventTimeIso8601": "2023-10-16T15:42:46.3440655Z",
    "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "LegalEntity": "usmf",
    "MajorVersion": 0, "MinorVersion": 0, "ParentContextRecordSubjects": [], "PurchaseJournal": "00000123-1",
    "PurchaseOrderDate": "/Date(1697414400000)/", "PurchaseOrderNumber": "00000123", "PurchaseType": "Purch",
    "TransactionCurrencyAmount": 1250.0, "TransactionCurrencyCode": "USD", "VendorAccount": "US-101",
}
# (f) endpoint test message
TEST_MESSAGE = (
    '{"BusinessEventId":"BusinessEventsTestEndpointContract","BusinessEventLegalEntity":"001",'
    '"ControlNumber":-9223372036854775808,"EventId":"{8d1220eb-1234-4cde-8f00-0123456789ab}",'
    '"EventTime":"/Date(1697470966000+0000)/","MajorVersion":0,"MinorVersion":0}'
)


def one(body: Any) -> BusinessEvent:
    events = parse_events(body if isinstance(body, (bytes, str)) else json.dumps(body))
    assert len(events) == 1
    return events[0]


def rejected(body: Any) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        parse_events(body if isinstance(body, (bytes, str)) else json.dumps(body))
    return info.value


def test_real_2021_payload_without_the_newer_envelope_fields() -> None:
    event = one(REAL_2021)
    assert event.business_event_id == "PurchaseOrderConfirmedBusinessEvent"
    assert event.control_number == 5637144576
    assert event.event_id == "55A81094-A14E-46A6-A12C-07ED5C5990C6"
    assert event.legal_entity == "brmf"  # from the contract's LegalEntity
    assert event.event_time == datetime(2021, 11, 18, 14, 44, 15, tzinfo=timezone.utc)
    assert event.initiating_user_object_id is None
    assert (event.major_version, event.minor_version) == (0, 0)
    assert event.payload["TransactionCurrencyAmount"] == 90055.6
    assert not event.is_test_event and not event.is_work_item


def test_current_envelope_prefers_the_envelope_fields() -> None:
    event = one(CURRENT)
    assert event.legal_entity == "USMF"  # BusinessEventLegalEntity wins, casing as sent
    assert event.event_time == datetime(2023, 10, 16, 15, 42, 46, 344065, tzinfo=timezone.utc)
    assert event.initiating_user_object_id == "c600136f-6814-41d9-8642-40ca0ec4edd4"
    assert event.payload == CURRENT  # everything kept, unknown fields too


def test_endpoint_test_message_with_int64_min() -> None:
    event = one(TEST_MESSAGE)
    assert event.is_test_event
    assert event.control_number == -(2**63)
    assert event.event_id == "8D1220EB-1234-4CDE-8F00-0123456789AB"
    assert event.legal_entity == "001"
    assert event.event_time == datetime(2023, 10, 16, 15, 42, 46, tzinfo=timezone.utc)


def test_work_item_events() -> None:
    body = dict(CURRENT, BusinessEventId="Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem",
                WorkflowWorkItemOutcomes=["Approve", "Reject"])
    assert one(body).is_work_item
    assert not one(dict(CURRENT, BusinessEventId="Workflow_VendInvoiceReview_000123")).is_work_item
    assert not one(dict(CURRENT, BusinessEventId="Workflow__WorkItem")).is_work_item


def test_array_body_keeps_order_and_bom_is_tolerated() -> None:
    events = parse_events(b"\xef\xbb\xbf" + json.dumps([CURRENT, json.loads(REAL_2021)]).encode())
    assert [e.control_number for e in events] == [5637985363, 5637144576]


def test_unknown_fields_and_extension_fields_are_kept() -> None:
    event = one(dict(CURRENT, CustomerExtension={"nested": [1, 2, {"x": None}]}))
    assert event.payload["CustomerExtension"] == {"nested": [1, 2, {"x": None}]}


def test_events_are_hashable_and_comparable() -> None:
    a, b = one(CURRENT), one(CURRENT)
    assert a == b and hash(a) == hash(b)


def test_integral_float_control_number_is_accepted_but_not_fractions() -> None:
    assert one(dict(CURRENT, ControlNumber=5637144576.0)).control_number == 5637144576
    assert rejected(dict(CURRENT, ControlNumber=5637144576.5)).field == "ControlNumber"


def test_iso_time_with_offset_and_without_zone() -> None:
    assert one(dict(CURRENT, EventTimeIso8601="2023-10-16T17:42:46+02:00")).event_time == datetime(
        2023, 10, 16, 15, 42, 46, tzinfo=timezone.utc)
    assert one(dict(CURRENT, EventTimeIso8601="2023-10-16T15:42:46")).event_time.tzinfo == timezone.utc


def test_only_iso_time_is_enough_and_nil_initiator_is_none() -> None:
    body = {k: v for k, v in CURRENT.items() if k != "EventTime"}
    body["InitiatingUserAADObjectId"] = "{00000000-0000-0000-0000-000000000000}"
    event = one(body)
    assert event.event_time.year == 2023 and event.initiating_user_object_id is None


def test_empty_optional_fields_are_tolerated() -> None:
    event = one(dict(CURRENT, BusinessEventLegalEntity="", LegalEntity=None, InitiatingUserAADObjectId="",
                     EventTimeIso8601=None))
    assert event.legal_entity is None and event.initiating_user_object_id is None
    assert event.event_time == datetime(2023, 10, 16, 15, 42, 46, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "changes,field,words",
    [
        ({"BusinessEventId": None}, "BusinessEventId", "missing"),
        ({"BusinessEventId": ""}, "BusinessEventId", "empty"),
        ({"BusinessEventId": "x" * 201}, "BusinessEventId", "200"),
        ({"BusinessEventId": 12}, "BusinessEventId", "string"),
        ({"BusinessEventId": "a\nb"}, "BusinessEventId", "control"),
        ({"ControlNumber": None}, "ControlNumber", "missing"),
        ({"ControlNumber": True}, "ControlNumber", "integer"),
        ({"ControlNumber": "5637144576"}, "ControlNumber", "integer"),
        ({"ControlNumber": 2**63}, "ControlNumber", "64-bit"),
        ({"ControlNumber": -(2**63) - 1}, "ControlNumber", "64-bit"),
        ({"ControlNumber": 1e300}, "ControlNumber", "integer"),
        ({"EventId": "not-a-guid"}, "EventId", "GUID"),
        ({"EventId": "{9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C"}, "EventId", "GUID"),
        ({"EventId": None}, "EventId", "missing"),
        ({"EventTime": "2023-10-16", "EventTimeIso8601": None}, "EventTime", "/Date"),
        ({"EventTime": 1697470966000}, "EventTime", "/Date"),
        ({"EventTime": "/Date(99999999999999999)/", "EventTimeIso8601": None}, "EventTime", "/Date"),
        ({"EventTime": "/Date(999999999999999)/", "EventTimeIso8601": None}, "EventTime", "range"),
        ({"EventTime": None, "EventTimeIso8601": None}, "EventTime", "missing"),
        ({"EventTimeIso8601": "yesterday"}, "EventTimeIso8601", "ISO"),
        ({"EventTimeIso8601": "2023-02-30T00:00:00Z"}, "EventTimeIso8601", "valid"),
        ({"EventTimeIso8601": 5}, "EventTimeIso8601", "string"),
        ({"BusinessEventLegalEntity": ["usmf"]}, "BusinessEventLegalEntity", "string"),
        ({"InitiatingUserAADObjectId": "{C600136F}"}, "InitiatingUserAADObjectId", "GUID"),
        ({"MajorVersion": "1"}, "MajorVersion", "integer"),
    ],
)
def test_envelope_rejections_name_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    body = {k: v for k, v in {**CURRENT, **changes}.items() if v is not None or k in ("LegalEntity",)}
    error = rejected(body)
    assert error.field == field and error.index is None
    assert words in error.reason and field in str(error)


@pytest.mark.parametrize(
    "body,words",
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[]", "empty array"),
        (b"42", "object"),
        (b'"text"', "object"),
        (b"null", "object"),
        (b"{not json", "JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": NaN}', "JSON"),
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (("[" + "{\"a\":" * 20 + "1" + "}" * 20 + "]").encode(), "nested"),
        (json.dumps({f"k{i}": i for i in range(1001)}).encode(), "keys"),
        (json.dumps([CURRENT] * 501).encode(), "too many"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "JSON"),
    ],
)
def test_body_rejections(body: bytes, words: str) -> None:
    error = rejected(body)
    assert error.field == "body" and words in error.reason


def test_array_errors_carry_the_index() -> None:
    error = rejected([CURRENT, dict(CURRENT, EventId="nope")])
    assert (error.index, error.field) == (1, "EventId")
    assert str(error).startswith("event [1]: EventId")
    error = rejected([CURRENT, 7])
    assert (error.index, error.field) == (1, "body")


def test_str_input_and_non_text_input() -> None:
    assert one(REAL_2021.decode()).control_number == 5637144576
    with pytest.raises(EventRejected):
        parse_events(123)  # type: ignore[arg-type]


def test_an_ordinary_body_is_proven_within_bounds_without_the_walk(monkeypatch) -> None:
    """The front door's hot path (perf goal 2): the raw text proves the bounds, so the per-value walk is skipped;
    a body the text cannot clear (an escape, many brackets or keys) is still walked."""
    import json as _json

    from dynamics import events as events_module

    walked = []
    real = events_module._check_bounds
    monkeypatch.setattr(events_module, "_check_bounds", lambda doc: (walked.append(1), real(doc)))
    body = _json.dumps({"BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "ControlNumber": 5637144576,
                        "EventId": "9C091AF1-5BAF-4CA9-B0A4-000000000001", "EventTime": "/Date(1697470966000)/",
                        "LegalEntity": "usmf", "Note": "N", "ParentContextRecordSubjects": [], "MajorVersion": 0,
                        "MinorVersion": 0}).encode()
    events_module.parse_events(body)
    assert walked == []
    with pytest.raises(EventRejected, match="surrogate"):
        events_module.parse_events(body.replace(b'"N"', b'"\\ud800"'))
    assert walked == [1]
    deep = b'{"BusinessEventId": "X", "a": ' + b"[" * 20 + b"]" * 20 + b"}"
    with pytest.raises(EventRejected, match="nested deeper"):
        events_module.parse_events(deep)
    assert walked == [1, 1]


def test_event_time_range_is_exact_and_checked_without_building_the_replaced_date(monkeypatch) -> None:
    """EventTime is range-checked as before (years 1..9999), but its datetime is built only when it is the time
    returned: F&O sends EventTimeIso8601 too, which wins."""
    from datetime import timedelta

    from dynamics import events as events_module

    def body(ms: int, iso: bool) -> bytes:
        event = {**CURRENT, "EventTime": f"/Date({ms})/"}
        if not iso:
            event.pop("EventTimeIso8601", None)
        return json.dumps(event).encode()

    lowest, highest = -62135596800000, 253402300799999  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59.999Z
    for iso in (False, True):
        for ms in (lowest, highest):
            parse_events(body(ms, iso))
        for ms in (lowest - 1, highest + 1):
            with pytest.raises(EventRejected, match="range"):
                parse_events(body(ms, iso))
    assert one(body(lowest, False)).event_time == datetime(1, 1, 1, tzinfo=timezone.utc)
    assert one(body(highest, False)).event_time == datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)

    def no_timedelta(*args: Any, **kwargs: Any) -> timedelta:
        raise AssertionError("built a date that EventTimeIso8601 replaces")

    monkeypatch.setattr(events_module, "timedelta", no_timedelta)
    assert one(body(1697470966000, True)).event_time.year == 2023


def test_one_decoder_serves_every_body(monkeypatch) -> None:
    """json.loads with options builds a decoder (and its scanner) per call; parse_events reuses one."""
    import json as _json

    built = []
    real = _json.JSONDecoder.__init__
    monkeypatch.setattr(_json.JSONDecoder, "__init__", lambda self, **kw: (built.append(1), real(self, **kw))[1])
    for _ in range(3):
        parse_events(json.dumps(CURRENT).encode())
    assert built == []
    with pytest.raises(EventRejected, match="duplicate key"):
        parse_events(b'{"BusinessEventId": "X", "BusinessEventId": "Y"}')


_VARIANTS: dict[str, list[Any]] = {
    "BusinessEventId": [None, "", "   ", " x ", "x" * 200, "x" * 201, "a\tb", "é", 5, True, ["x"]],
    "ControlNumber": [None, 0, -(2**63), 2**63 - 1, 2**63, -(2**63) - 1, True, 5.0, 5.5, 1e300, "5"],
    "EventId": [None, "", "{}", "{9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C}", "9c091af1-5baf-4ca9-b0a4-94d6e59a0d1c",
                "{9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C", "9C091AF1", 7],
    "EventTime": [None, "", "/Date(0)/", "/Date(-62135596800000)/", "/Date(-62135596800001)/",
                  "/Date(253402300800000)/", "/Date(1697470966000+0200)/", "2023-10-16", 1697470966000],
    "EventTimeIso8601": [None, "", "2023-10-16T15:42:46Z", "2023-10-16 15:42:46", "2023-10-16T15:42:46+02:00",
                         "2023-10-16T15:42:46-23:59", "2023-10-16T15:42:46+24:00", "2023-02-30T00:00:00Z",
                         "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", 5],
    "InitiatingUserAADObjectId": [None, "", "{00000000-0000-0000-0000-000000000000}", "{C600136F}",
                                  "C600136F-6814-41D9-8642-40CA0EC4EDD4", 3],
    "BusinessEventLegalEntity": [None, "", "  ", " usmf ", ["usmf"], 1],
    "LegalEntity": [None, "", " demf", 2],
    "MajorVersion": [None, 0, 3, 2**63, 1.0, 1.5, True, "1"],
    "MinorVersion": [None, 7, -(2**63) - 1, 2.0, False],
}


def test_the_ordinary_envelope_path_agrees_with_the_checked_one_field_by_field() -> None:
    """`_ordinary_event` (the front door's fast path) accepts the envelope F&O sends and otherwise defers: for every
    single and paired change of the envelope, it returns None or exactly what the field-by-field checks return."""
    from dynamics import events as events_module

    assert events_module._ordinary_event(dict(CURRENT)) is not None
    assert events_module._ordinary_event(dict(CURRENT)) == events_module._checked_event(dict(CURRENT), None)
    singles = [{name: value} for name, values in _VARIANTS.items() for value in values]
    names = list(_VARIANTS)
    pairs = [{a: va, b: vb} for i, a in enumerate(names) for b in names[i + 1:]
             for va in _VARIANTS[a][::3] for vb in _VARIANTS[b][::3]]
    taken = 0
    for changes in singles + pairs:
        obj = {k: v for k, v in {**CURRENT, **changes}.items() if v is not None}
        fast = events_module._ordinary_event(dict(obj))
        try:
            checked: Any = events_module._checked_event(dict(obj), None)
        except EventRejected as exc:
            checked = exc
        if fast is not None:
            taken += 1
            assert fast == checked and isinstance(checked, BusinessEvent), changes
            assert (fast.payload, fast.event_time.tzinfo) == (checked.payload, checked.event_time.tzinfo)
    assert taken > len(singles) // 3  # the fast path is not vacuous


def test_iso_times_read_by_fromisoformat_equal_the_field_by_field_reading() -> None:
    """`_iso` lets datetime.fromisoformat read what the ISO pattern accepted (20x faster); over a grid of the
    pattern's forms (separators, fractions of 1 to 9 digits, offsets with and without a colon, out-of-range
    fields, the edges of the representable range) it gives the same instant and tzinfo, or defers to the
    field-by-field reading, which accepts or rejects as before."""
    import itertools

    from dynamics import events as events_module

    dates = ["0001-01-01", "1970-01-01", "2023-02-28", "2024-02-29", "2023-02-29", "2023-13-01", "9999-12-31",
             "0000-01-01"]
    times = ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60"]
    fractions = ["", ".1", ",5", ".123456", ".3440655", ".99999999", ".999999999"]
    zones = ["", "Z", "z", "+00:00", "-0000", "+05:30", "+0530", "-05:75", "+23:59", "-23:59", "+24:00"]
    seen = {"fast": 0, "deferred": 0}
    for date, sep, time_, fraction, zone in itertools.product(dates, "Tt ", times, fractions, zones):
        text = f"{date}{sep}{time_}{fraction}{zone}"
        match = events_module._ISO.fullmatch(text)
        assert match, text
        try:
            expected: Any = events_module._iso_fields(text, match, EventRejected)
        except EventRejected as exc:
            expected = (exc.field, str(exc))
        try:
            got: Any = events_module._iso(text, EventRejected)
        except EventRejected as exc:
            got = (exc.field, str(exc))
        assert got == expected, text
        if isinstance(got, datetime):
            assert got.tzinfo is timezone.utc and got.tzinfo is expected.tzinfo, text
        try:
            from_iso = datetime.fromisoformat(text)
            seen["fast" if isinstance(got, datetime) and from_iso else "deferred"] += 1
        except ValueError:
            seen["deferred"] += 1
    assert seen["fast"] > 1000 and seen["deferred"] > 1000, seen
