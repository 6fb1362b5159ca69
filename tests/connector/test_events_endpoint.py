"""POST /api/dynamics/events/{token}: authenticated by the URL token, bounded, validated, stored once, and
answered 2xx only after the store committed."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.store import EventStatus, StoreUnavailable
from connector.store.factory import open_store
from connector.web import EventEndpoints, EventEnvironment, events_app

TOKEN = "t0k3n-" + "x" * 40
PO = {
    "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf",
    "ContextRecordSubject": "", "ControlNumber": 5637985363, "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C",
    "EventTime": "/Date(1697470966000)/", "EventTimeIso8601": "2023-10-16T15:42:46.3440655Z",
    "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "LegalEntity": "usmf",
    "MajorVersion": 0, "MinorVersion": 0, "ParentContextRecordSubjects": [], "PurchaseJournal": "00000123-1",
    "PurchaseOrderDate": "/Date(1697414400000)/", "PurchaseOrderNumber": "00000123", "PurchaseType": "Purch",
    "TransactionCurrencyAmount": 1250.0, "TransactionCurrencyCode": "USD", "VendorAccount": "US-101",
    "SomeCustomerExtension": {"kept": True},
}
URL = f"/api/dynamics/events/{TOKEN}"


@pytest.fixture
async def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def client(aiohttp_client, store):
    endpoints = EventEndpoints([EventEnvironment("prod", TOKEN, frozenset({"usmf", "demf"}))])
    return await aiohttp_client(events_app(store, endpoints))


async def stored(store) -> int:
    return sum((await store.count_by_status()).values())


async def test_new_then_duplicates(client, store) -> None:
    r = await client.post(URL, json=PO)
    assert r.status == 202
    body = await r.json()
    assert body["events"][0]["result"] == "new"
    for _ in range(2):
        r = await client.post(URL, json=PO)
        assert r.status == 200 and (await r.json())["events"][0]["result"] == "duplicate"
    assert await stored(store) == 1
    rec = await store.get_event(body["events"][0]["id"])
    assert rec.payload["SomeCustomerExtension"] == {"kept": True}
    assert [h.outcome for h in await store.history(rec.id)].count("duplicate") == 2


async def test_array_body_and_test_event_and_foreign_legal_entity(client, store) -> None:
    test_event = {"BusinessEventId": "BusinessEventsTestEndpointContract", "BusinessEventLegalEntity": "001",
                  "ControlNumber": -9223372036854775808, "EventId": "8D1220EB-0000-4000-8000-000000000001",
                  "EventTime": "/Date(1697470966000)/", "MajorVersion": 0, "MinorVersion": 0}
    other_le = dict(PO, ControlNumber=1, BusinessEventLegalEntity="gbsi", LegalEntity="gbsi")
    r = await client.post(URL, data=json.dumps([PO, test_event, other_le]),
                          headers={"Content-Type": "application/json"})
    assert r.status == 202
    counts = {k: v for k, v in (await store.count_by_status()).items() if v}
    assert counts == {EventStatus.QUEUED: 1, EventStatus.IGNORED: 2}


async def test_unknown_token_is_404_without_detail(client, store) -> None:
    r = await client.post("/api/dynamics/events/wrong", json=PO)
    assert r.status == 404 and await r.json() == {"error": "not_found"}
    assert await stored(store) == 0


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_415(client, store, ctype) -> None:
    r = await client.post(URL, data=json.dumps(PO).encode(), headers={"Content-Type": ctype} if ctype else {})
    assert r.status == 415 and (await r.json())["error"] == "unsupported_media_type"
    assert await stored(store) == 0


async def test_bad_bodies_are_400_naming_the_problem(client, store) -> None:
    cases = [
        (b"{not json", "body"),
        (json.dumps(dict(PO, ControlNumber="12")).encode(), "ControlNumber"),
        (json.dumps(dict(PO, EventId="nope")).encode(), "EventId"),
        (json.dumps([PO, dict(PO, ControlNumber=2, BusinessEventId="")]).encode(), "BusinessEventId"),
    ]
    for body, field in cases:
        r = await client.post(URL, data=body, headers={"Content-Type": "application/json"})
        answer = await r.json()
        assert r.status == 400 and answer["error"] == "invalid_event" and answer["field"] == field, answer
    assert await stored(store) == 0  # the valid first element of the array was not stored either


async def test_body_over_one_mib_is_413(client, store) -> None:
    big = dict(PO, Padding="x" * (1024 * 1024))
    r = await client.post(URL, data=json.dumps(big), headers={"Content-Type": "application/json"})
    assert r.status == 413 and (await r.json())["error"] == "payload_too_large"
    assert await stored(store) == 0


async def test_store_down_is_503_with_retry_after(aiohttp_client, store) -> None:
    class DownStore:
        async def enqueue(self, *a, **k):
            raise StoreUnavailable("disk I/O error")

    endpoints = EventEndpoints([EventEnvironment("prod", TOKEN)])
    client = await aiohttp_client(events_app(DownStore(), endpoints))  # type: ignore[arg-type]
    r = await client.post(URL, json=PO)
    assert r.status == 503 and r.headers["Retry-After"] and (await r.json())["error"] == "store_unavailable"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {"BusinessEventId": st.text(max_size=30) | st.just("PurchaseOrderConfirmedBusinessEvent")},
    optional={"ControlNumber": json_values | st.integers(), "EventId": st.uuids().map(str) | st.text(max_size=40),
              "EventTime": st.text(max_size=30) | st.just("/Date(1697470966000)/"),
              "EventTimeIso8601": st.text(max_size=30), "BusinessEventLegalEntity": json_values},
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                      envelope_like.map(lambda v: json.dumps(v).encode())))
async def test_fuzzed_bodies_never_5xx_and_store_only_valid(client, store, body: bytes) -> None:
    before = await stored(store)
    r = await client.post(URL, data=body, headers={"Content-Type": "application/json"})
    assert r.status < 500
    after = await stored(store)
    if r.status >= 400:
        assert after == before
    else:
        assert r.status in (200, 202)


async def test_server_header_names_the_product_not_the_framework(client) -> None:
    for resp in (await client.post("/api/dynamics/events/nope", json={}), await client.get("/healthz")):
        server = resp.headers.get("Server", "")
        assert "aiohttp" not in server.lower() and "python" not in server.lower(), server
        assert server == "ml-connector"


async def test_answers_are_byte_for_byte_what_json_response_sends() -> None:
    from aiohttp import web

    from connector.web import json_answer

    for data, status in (({"environment": "prod", "events": [{"id": "e1", "controlNumber": 5637985363,
                                                               "result": "new"}]}, 202),
                         ({"error": "invalid_event", "detail": "BusinessEventId: missing «é»", "field": "x"}, 400),
                         ({"status": "ok"}, 200)):
        ours, theirs = json_answer(data, status), web.json_response(data, status=status)
        assert (ours.status, ours.body, dict(ours.headers)) == (theirs.status, theirs.body, dict(theirs.headers))
        assert (ours.content_type, ours.charset) == ("application/json", "utf-8")


async def test_every_answer_names_the_product_without_a_prepare_signal(store) -> None:
    """The Server header is set by the error middleware (a response-prepare signal cost the front door a tenth of
    its CPU per event): every kind of answer still carries it, redirects included."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    app = events_app(store, EventEndpoints([EventEnvironment("prod", TOKEN)]), max_body_bytes=4096)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    app.router.add_get("/moved", moved)
    assert len(app.on_response_prepare) == 0
    async with TestClient(TestServer(app)) as client:
        answers = [
            await client.post(URL, json=PO),  # 202
            await client.post(URL, json=PO),  # 200 duplicate
            await client.post(URL, data=b"{", headers={"Content-Type": "application/json"}),  # 400
            await client.post("/api/dynamics/events/nope", json=PO),  # 404
            await client.get(URL),  # 405
            await client.post(URL, data=b"{}", headers={"Content-Type": "text/plain"}),  # 415
            await client.post(URL, data=b" " * 5000, headers={"Content-Type": "application/json"}),  # 413
            await client.get("/healthz"),
            await client.get("/moved", allow_redirects=False),
        ]
    assert [r.status for r in answers] == [202, 200, 400, 404, 405, 415, 413, 200, 302]
    assert [r.headers.get("Server") for r in answers] == ["ml-connector"] * len(answers)


async def test_a_compressed_body_is_still_bounded_after_decompression(store) -> None:
    """Reading a body in one go is for bodies whose size Content-Length proves; one aiohttp decompresses may
    outgrow it, so it is still counted as it arrives."""
    import gzip

    from aiohttp.test_utils import TestClient, TestServer

    app = events_app(store, EventEndpoints([EventEnvironment("prod", TOKEN)]), max_body_bytes=1000)
    big = json.dumps({**PO, "Padding": "x" * 5000}).encode()
    async with TestClient(TestServer(app)) as client:
        r = await client.post(URL, data=gzip.compress(big), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status == 413 and (await r.json())["error"] == "payload_too_large"
        r = await client.post(URL, data=gzip.compress(json.dumps(PO).encode()), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert r.status == 202
    assert await stored(store) == 1


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                   "application/vnd.fno+json", "application/json;charset=utf-8"])
async def test_json_content_types_are_accepted(client, store, ctype) -> None:
    r = await client.post(URL, data=json.dumps(PO).encode(), headers={"Content-Type": ctype})
    assert r.status in (200, 202), await r.text()


def test_the_accepted_answer_is_byte_for_byte_json_dumps_of_its_fields() -> None:
    from connector.store import EnqueueResult
    from connector.web import _answer_text, _result_text

    cases = [
        ("prod", [("019a0f3c2b1d4e5f6a7b8c", 5637985363, EnqueueResult.NEW)]),
        ('pr"od\\ é ☃ \u2028', [("a\"b", -(2**63), EnqueueResult.DUPLICATE), ("é", 2**63 - 1, EnqueueResult.NEW),
                                ("x", 0, EnqueueResult.DUPLICATE)]),
    ]
    for environment, results in cases:
        expected = json.dumps({"environment": environment, "events": [
            {"id": i, "controlNumber": n, "result": r.value} for i, n, r in results]})
        assert _answer_text(environment, [_result_text(i, n, r) for i, n, r in results]) == expected
