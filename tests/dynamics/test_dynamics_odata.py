"""ODataClient against a local stand-in over real HTTP on loopback (fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamics_fakes import FakeFnO, Scripted, Sleeps, Tokens, fno_error
from dynamics import (
    Enum,
    ODataAuthError,
    ODataBadRequest,
    ODataClient,
    ODataError,
    ODataNotFound,
    ODataThrottled,
    ODataUnavailable,
    ODataUnknownEntitySet,
    ODataUnknownProperty,
    build_filter,
    literal,
)

MakeClient = Callable[..., ODataClient]
VENDORS = [
    {"dataAreaId": "usmf", "VendorAccountNumber": "US-101", "VendorOrganizationName": "Fabrikam"},
    {"dataAreaId": "usmf", "VendorAccountNumber": "O'Brien", "VendorOrganizationName": "O'Brien & Sons"},
    {"dataAreaId": "demf", "VendorAccountNumber": "US-101", "VendorOrganizationName": "Fabrikam DE"},
]


# --- literals and filters (pure) ------------------------------------------------------------------------------


def test_literals() -> None:
    assert literal("O'Brien") == "'O''Brien'"
    assert literal(5) == "5" and literal(1.5) == "1.5" and literal(True) == "true" and literal(None) == "null"
    assert literal(Enum("Microsoft.Dynamics.DataEntities.NoYes", "Yes")) == "Microsoft.Dynamics.DataEntities.NoYes'Yes'"
    assert literal(Enum("NoYes", "No")) == "Microsoft.Dynamics.DataEntities.NoYes'No'"
    assert literal(datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)) == "2026-11-26T10:00:00Z"
    for bad in (float("nan"), datetime(2026, 1, 1)):
        with pytest.raises(ValueError):
            literal(bad)
    with pytest.raises(TypeError):
        literal(object())


def test_build_filter() -> None:
    assert build_filter({"A": "x", "B": [1, 2]}, company="USMF") == (
        "dataAreaId eq 'usmf' and A eq 'x' and (B eq 1 or B eq 2)")
    assert build_filter("A eq 1 or B eq 2", company="usmf") == "dataAreaId eq 'usmf' and (A eq 1 or B eq 2)"
    assert build_filter(None) is None
    with pytest.raises(ValueError):
        build_filter({"A eq 1 or 1": 1})


# --- queries ------------------------------------------------------------------------------------------------


async def test_query_always_sends_cross_company_and_data_area(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["VendorsV2"] = VENDORS
    client = make_client()
    rows = await client.query("VendorsV2", company="USMF", filter={"VendorAccountNumber": "US-101"},
                              select=["VendorAccountNumber", "VendorOrganizationName"])
    assert rows == [{"VendorAccountNumber": "US-101", "VendorOrganizationName": "Fabrikam"}]
    seen = fno.requests[-1]
    assert seen.query["cross-company"] == "true"
    assert seen.query["$filter"] == "dataAreaId eq 'usmf' and VendorAccountNumber eq 'US-101'"
    assert seen.query["$select"] == "VendorAccountNumber,VendorOrganizationName"
    assert seen.headers["Authorization"] == "Bearer token-1"

    fno.tables["SystemUsers"] = []
    await client.query("SystemUsers", company=None)
    assert fno.requests[-1].query == {"cross-company": "true"}  # global sets: no dataAreaId, still cross-company


async def test_value_with_a_quote_is_escaped(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["VendorsV2"] = VENDORS
    row = await make_client().get("VendorsV2", company="usmf", key={"VendorAccountNumber": "O'Brien"})
    assert row is not None and row["VendorOrganizationName"] == "O'Brien & Sons"
    assert fno.requests[-1].query["$filter"] == "dataAreaId eq 'usmf' and VendorAccountNumber eq 'O''Brien'"


async def test_get_returns_none_and_rechecks_wildcards(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["VendorsV2"] = VENDORS
    client = make_client()
    assert await client.get("VendorsV2", company="usmf", key={"VendorAccountNumber": "NOPE"}) is None
    # F&O treats * in eq as a wildcard; get() only returns an exact key match.
    assert await client.get("VendorsV2", company="usmf", key={"VendorAccountNumber": "US-*"}) is None
    with pytest.raises(ODataError, match="matches 2 rows"):
        await client.get("VendorsV2", company=None, key={"VendorAccountNumber": "US-101"})


async def test_paging_follows_next_link_within_the_bound(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["PurchaseOrderLinesV2"] = [{"dataAreaId": "usmf", "PurchaseOrderNumber": "P1", "LineNumber": n}
                                          for n in range(1, 6)]
    fno.page_size = 2
    rows = await make_client(max_pages=3).query("PurchaseOrderLinesV2", company="usmf",
                                                filter={"PurchaseOrderNumber": "P1"}, orderby=["LineNumber"])
    assert [r["LineNumber"] for r in rows] == [1, 2, 3, 4, 5]
    assert len(fno.requests) == 3 and all(r.query["cross-company"] == "true" for r in fno.requests)

    with pytest.raises(ODataError, match="more than 2 pages") as info:
        await make_client(max_pages=2).query("PurchaseOrderLinesV2", company="usmf")
    assert info.value.status is None


async def test_top_stops_paging_early(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["X"] = [{"dataAreaId": "usmf", "N": n} for n in range(10)]
    fno.page_size = 3
    assert [r["N"] for r in await make_client().query("X", company="usmf", top=4)] == [0, 1, 2, 3]


async def test_next_link_to_another_origin_is_refused(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.script.append(Scripted(200, {"value": [{"a": 1}], "@odata.nextLink": "https://evil.example/data/X?p=2"}))
    with pytest.raises(ODataError, match="another origin"):
        await make_client().query("X", company="usmf")
    assert len(fno.requests) == 1


# --- throttling ---------------------------------------------------------------------------------------------


async def test_429_retry_after_seconds_is_honoured(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.tables["X"] = [{"dataAreaId": "usmf", "N": 1}]
    message = "Number of requests exceeded the limit of 6000 over the time window of 300 seconds."
    fno.script.append(Scripted(429, message, {"Retry-After": "7"}))
    assert await make_client().query("X", company="usmf") == [{"dataAreaId": "usmf", "N": 1}]
    assert sleeps.waits == [7.0]


async def test_429_retry_after_http_date(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.tables["X"] = []
    now = 1_800_000_000.0
    when = datetime.fromtimestamp(now + 5, tz=timezone.utc)
    fno.script.append(Scripted(429, "", {"Retry-After": format_datetime(when, usegmt=True)}))
    await make_client(clock=lambda: now).query("X", company="usmf")
    assert len(sleeps.waits) == 1 and sleeps.waits[0] >= 5.0


async def test_429_without_retry_after_uses_the_default(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.tables["X"] = []
    fno.script.append(Scripted(429, ""))
    await make_client(default_retry_after=3.0).query("X", company="usmf")
    assert sleeps.waits == [3.0]

    fno.script.append(Scripted(429, ""))
    with pytest.raises(ODataThrottled) as info:
        await make_client().query("X", company="usmf")  # default 30 s > max_inline_wait 10 s
    assert info.value.retry_after == 30.0 and info.value.transient


async def test_429_longer_than_inline_wait_raises_throttled(fno: FakeFnO, make_client: MakeClient,
                                                            sleeps: Sleeps) -> None:
    fno.script.append(Scripted(429, fno_error("Combined execution time exceeded"), {"Retry-After": "120"}))
    with pytest.raises(ODataThrottled) as info:
        await make_client().query("X", company="usmf")
    assert info.value.retry_after == 120.0 and sleeps.waits == []
    assert "Combined execution time exceeded" in str(info.value)


async def test_429_until_attempts_run_out(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.script.extend(Scripted(429, "", {"Retry-After": "1"}) for _ in range(3))
    with pytest.raises(ODataThrottled) as info:
        await make_client(max_attempts=3).query("X", company="usmf")
    assert sleeps.waits == [1.0, 1.0] and info.value.retry_after == 1.0


# --- server errors, auth, error bodies ---------------------------------------------------------------------


async def test_5xx_is_retried_with_backoff(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.tables["X"] = [{"dataAreaId": "usmf"}]
    fno.script.extend([Scripted(503, "busy"), Scripted(500, fno_error("An error has occurred."))])
    assert len(await make_client().query("X", company="usmf")) == 1
    assert len(sleeps.waits) == 2 and 0 < sleeps.waits[0] <= sleeps.waits[1] * 2


async def test_5xx_until_attempts_run_out_is_unavailable(fno: FakeFnO, make_client: MakeClient,
                                                         sleeps: Sleeps) -> None:
    fno.script.extend(Scripted(502, "<html>Bad gateway</html>") for _ in range(4))
    with pytest.raises(ODataUnavailable) as info:
        await make_client().query("X", company="usmf")
    assert info.value.status == 502 and info.value.transient and len(sleeps.waits) == 3
    assert "Bad gateway" in str(info.value)


async def test_501_is_not_retried(fno: FakeFnO, make_client: MakeClient, sleeps: Sleeps) -> None:
    fno.script.append(Scripted(501, fno_error("Not implemented")))
    with pytest.raises(ODataError) as info:
        await make_client().query("X", company="usmf")
    assert type(info.value) is ODataError and info.value.status == 501 and sleeps.waits == []


async def test_401_refreshes_the_token_once(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.tables["X"] = []
    tokens = Tokens("stale", "token-1")
    assert await make_client(tokens).query("X", company="usmf") == []
    assert tokens.calls == [False, True]
    assert [r.headers["Authorization"] for r in fno.requests] == ["Bearer stale", "Bearer token-1"]


async def test_second_401_is_an_auth_error(fno: FakeFnO, make_client: MakeClient) -> None:
    tokens = Tokens("stale", "still-stale")
    with pytest.raises(ODataAuthError) as info:
        await make_client(tokens).query("X", company="usmf")
    assert tokens.calls == [False, True] and info.value.status == 401


async def test_403_is_an_auth_error_without_refresh(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.script.append(Scripted(403, fno_error("Forbidden", "No user mapped for client id")))
    tokens = Tokens()
    with pytest.raises(ODataAuthError, match="No user mapped"):
        await make_client(tokens).query("X", company="usmf")
    assert tokens.calls == [False]


async def test_error_body_is_parsed_without_the_stack_trace(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.script.append(Scripted(400, fno_error("An error has occurred.",
                                              "Could not find a property named 'Nope' on type 'VendorV2'.", "0x1")))
    with pytest.raises(ODataBadRequest) as info:
        await make_client().query("VendorsV2", company="usmf", select=["Nope"])
    error = info.value
    assert (error.status, error.code, error.message) == (400, "0x1", "An error has occurred.")
    assert error.inner_message == "Could not find a property named 'Nope' on type 'VendorV2'."
    assert "property named 'Nope'" in str(error) and "SECRET_STACK_FRAME" not in str(error)
    assert "token-1" not in str(error)
    assert isinstance(error, ODataUnknownProperty) and (error.property, error.type_name) == ("Nope", "VendorV2")


async def test_other_bad_requests_are_not_unknown_properties(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.script.append(Scripted(400, fno_error("The query specified in the URI is not valid. Syntax error.")))
    with pytest.raises(ODataBadRequest) as info:
        await make_client().query("VendorsV2", company="usmf")
    assert not isinstance(info.value, ODataUnknownProperty)


async def test_unknown_entity_set_is_not_a_missing_record(fno: FakeFnO, make_client: MakeClient) -> None:
    with pytest.raises(ODataUnknownEntitySet) as info:
        await make_client().query("NoSuchSet", company="usmf")
    assert info.value.status == 404 and info.value.entity_set == "NoSuchSet"


async def test_non_json_success_is_an_odata_error(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.script.append(Scripted(200, "<html>login</html>"))
    with pytest.raises(ODataError, match="not JSON"):
        await make_client().query("X", company="usmf")


# --- transport failures never leak aiohttp ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    client = ODataClient(session, f"http://127.0.0.1:{_free_port()}", Tokens(), sleep=sleeps, max_attempts=3)
    with pytest.raises(ODataUnavailable) as info:
        await client.query("X", company="usmf")
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError) and len(sleeps.waits) == 2
    with pytest.raises(ODataUnavailable):
        await client.invoke_action("WorkflowWorkItems", {"Id": "1"}, "complete", {})


async def test_timeout_is_unavailable(aiohttp_server: Any, session: aiohttp.ClientSession, sleeps: Sleeps) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_get("/data/X", slow)
    server = await aiohttp_server(app)
    client = ODataClient(session, str(server.make_url("")), Tokens(), sleep=sleeps, timeout=0.05, max_attempts=2)
    with pytest.raises(ODataUnavailable, match="timed out"):
        await client.query("X", company="usmf")
    assert len(sleeps.waits) == 1


# --- bound actions ------------------------------------------------------------------------------------------


async def test_bound_action_url_and_body(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.actions["complete"] = lambda keys, body: Scripted(200, {"value": "ok", "keys": keys, "body": body})
    answer = await make_client().invoke_action("WorkflowWorkItems", {"Id": "W/1 'x'"}, "complete",
                                               {"outcome": "Approve", "comment": "fine"})
    seen = fno.requests[-1]
    assert seen.method == "POST" and seen.query == {"cross-company": "true"}
    assert seen.path == "/data/WorkflowWorkItems(Id='W/1 ''x''')/Microsoft.Dynamics.DataEntities.complete"
    assert seen.body == {"outcome": "Approve", "comment": "fine"}
    assert answer["keys"] == "Id='W/1 ''x'''"


async def test_bound_action_404_is_not_found(fno: FakeFnO, make_client: MakeClient) -> None:
    with pytest.raises(ODataNotFound):
        await make_client().invoke_action("WorkflowWorkItems", {"Id": "1"}, "nosuchaction", {})


async def test_non_idempotent_action_is_not_resent_after_5xx(fno: FakeFnO, make_client: MakeClient,
                                                             sleeps: Sleeps) -> None:
    fno.script.append(Scripted(500, fno_error("An error has occurred.", "Work item is not pending")))
    with pytest.raises(ODataUnavailable, match="not pending"):
        await make_client().invoke_action("WorkflowWorkItems", {"Id": "1"}, "complete", {})
    assert len(fno.requests) == 1 and sleeps.waits == []

    fno.actions["validate"] = lambda keys, body: Scripted(204)
    fno.script.append(Scripted(503, "busy"))
    assert await make_client().invoke_action("WorkflowWorkItems", {"Id": "1"}, "validate", {}, idempotent=True) == {}
    assert len(sleeps.waits) == 1


async def test_client_checks_names_and_never_shows_the_token(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(ValueError):
        await client.query("X?$top=1", company=None)
    with pytest.raises(ValueError):
        await client.query("X", company=None, select=["A,B"])
    assert "token" not in repr(client)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_string_literals_round_trip(text: str) -> None:
    quoted = literal(text)
    assert quoted[0] == quoted[-1] == "'" and quoted[1:-1].replace("''", "'") == text
    assert "'" not in quoted[1:-1].replace("''", "")


async def test_url_special_characters_survive(fno: FakeFnO, make_client: MakeClient) -> None:
    awkward = "A&B #1 100% +x/y?z=é"
    fno.tables["VendorsV2"] = [{"dataAreaId": "usmf", "VendorAccountNumber": awkward}]
    row = await make_client().get("VendorsV2", company="usmf", key={"VendorAccountNumber": awkward})
    assert row == {"dataAreaId": "usmf", "VendorAccountNumber": awkward}
    assert fno.requests[-1].query["$filter"] == f"dataAreaId eq 'usmf' and VendorAccountNumber eq '{awkward}'"


async def test_company_key_in_bound_action(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.actions["post"] = lambda keys, body: Scripted(200, {"keys": keys})
    answer = await make_client().invoke_action("VendorPaymentJournalLines",
                                               {"dataAreaId": "usmf", "JournalBatchNumber": "00282", "LineNumber": 1},
                                               "post", {})
    assert answer == {"keys": "dataAreaId='usmf',JournalBatchNumber='00282',LineNumber=1"}


async def test_dropped_connection_is_retried_then_unavailable(aiohttp_server: Any, session: aiohttp.ClientSession,
                                                              sleeps: Sleeps) -> None:
    calls = []

    async def hang_up(request: web.Request) -> web.Response:
        calls.append(request.path)
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/data/{rest:.*}", hang_up)
    server = await aiohttp_server(app)
    client = ODataClient(session, str(server.make_url("")), Tokens(), sleep=sleeps, max_attempts=3)
    with pytest.raises(ODataUnavailable) as info:
        await client.query("X", company="usmf")
    # 3 attempts (aiohttp itself may re-send an idempotent GET once on a dropped keep-alive connection)
    assert 3 <= len(calls) <= 6 and len(sleeps.waits) == 2
    assert isinstance(info.value.__cause__, aiohttp.ClientError)
    before = len(calls)
    with pytest.raises(ODataUnavailable):  # a POST that reached the server is not re-sent
        await client.invoke_action("WorkflowWorkItems", {"Id": "1"}, "complete", {})
    assert len(calls) == before + 1 and len(sleeps.waits) == 2


async def test_a_query_shape_is_built_once_per_client_and_the_url_is_unchanged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Perf goal 3: everything of a query but its $filter (select, orderby, top, expand) is the same for every event
    of a plan's fetch, so it is checked and encoded once per client; the URL sent stays byte for byte the same."""
    import dynamics.odata as odata_module
    from dynamics.odata_query import Expansion

    urls: list[str] = []

    class Capturing(ODataClient):
        async def _request(self, method: str, url: str, **kw: Any) -> dict[str, Any]:  # type: ignore[override]
            urls.append(url)
            return {"value": []}

    built: list[int] = []
    real_build = odata_module.build_expand
    monkeypatch.setattr(odata_module, "build_expand", lambda items: built.append(1) or real_build(items))

    async def token(*, force_refresh: bool = False) -> str:
        return "t"

    async with aiohttp.ClientSession() as session:
        client = Capturing(session, "https://fno.example", token)
        for number in ("PO 1&2", "PO'3"):
            await client.query("PurchaseOrderHeadersV2", company="USMF", filter={"PurchaseOrderNumber": number},
                               select=["PurchaseOrderNumber", "CurrencyCode"], orderby=["PurchaseOrderNumber desc"],
                               top=1, expand=[Expansion("PurchaseOrderLines", ("LineNumber",), ("LineNumber",))])
        await client.query("VendorsV2", company=None)
    assert urls == [
        "https://fno.example/data/PurchaseOrderHeadersV2?cross-company=true"
        "&$filter=dataAreaId%20eq%20'usmf'%20and%20PurchaseOrderNumber%20eq%20'PO%201%262'"
        "&$select=PurchaseOrderNumber,CurrencyCode&$orderby=PurchaseOrderNumber%20desc&$top=1"
        "&$expand=PurchaseOrderLines($select=LineNumber;$orderby=LineNumber)",
        "https://fno.example/data/PurchaseOrderHeadersV2?cross-company=true"
        "&$filter=dataAreaId%20eq%20'usmf'%20and%20PurchaseOrderNumber%20eq%20'PO''3'"
        "&$select=PurchaseOrderNumber,CurrencyCode&$orderby=PurchaseOrderNumber%20desc&$top=1"
        "&$expand=PurchaseOrderLines($select=LineNumber;$orderby=LineNumber)",
        "https://fno.example/data/VendorsV2?cross-company=true",
    ]
    assert len(built) == 2  # once per shape (the PO query's, the vendors'), not once per query
    with pytest.raises(ValueError, match="select field"):  # a bad shape is still refused, every time
        await client.query("VendorsV2", company=None, select=["Bad name"])
    with pytest.raises(ValueError, match="select field"):
        await client.query("VendorsV2", company=None, select=["Bad name"])
