"""The F&O stand-in enforces F&O's OData rules: auth, companies, keys, filters, paging, throttling, error bodies."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.entra import EntraIssuer
from sandbox.fno import FnoConfig, FnoService, Limits, ServiceProtection, add_fno_admin_routes, create_fno_app
from sandbox.fno.throttle import PRESSURE_MESSAGE, Throttled
from sandbox.people import TENANT_ID
from sandbox.seed import SERVICE_USER_ID, seed_state

BASE = "https://contoso-sandbox.test"  # the environment URL = the token audience
CONNECTOR = "11111111-2222-4333-8444-555555555555"
STRANGER = "99999999-2222-4333-8444-555555555555"  # registered in Entra, not in F&O's Entra ID applications
NS = "Microsoft.Dynamics.DataEntities"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def world(fake_clock):
    issuer = EntraIssuer(TENANT_ID, clock=fake_clock, signing_key=KEY)
    issuer.register_app(CONNECTOR, secret="s")
    issuer.register_app(STRANGER, secret="t")
    state = seed_state()
    state.register_app(CONNECTOR, SERVICE_USER_ID, "ml-connector")
    sleeps = Sleeps()
    service = FnoService(state, issuer.verify, config=FnoConfig(base_url=BASE, page_size=10_000),
                         protection=ServiceProtection(Limits(), clock=fake_clock), clock=fake_clock, sleep=sleeps)
    return issuer, service, sleeps


@pytest.fixture
async def fno(world, aiohttp_client):
    issuer, service, _ = world
    client = await aiohttp_client(create_fno_app(service, add_fno_admin_routes))
    token, _ = issuer.issue(CONNECTOR, BASE)

    async def get(path: str, params: dict | None = None, *, auth: str | None = "default"):
        headers = {} if auth is None else {"Authorization": f"Bearer {token if auth == 'default' else auth}"}
        resp = await client.get(path, params=params, headers=headers)
        return resp, await resp.json(content_type=None)

    get.client, get.token = client, token
    return get


def assert_error_body(body: dict) -> None:
    err = body["error"]
    assert err["code"] == "" and isinstance(err["message"], str) and err["message"]
    assert set(err["innererror"]) == {"message", "type", "stacktrace"}


async def test_default_company_only_without_cross_company(fno):
    resp, body = await fno("/data/VendorsV2", {"$count": "true"})
    assert resp.status == 200
    assert {r["dataAreaId"] for r in body["value"]} == {"usmf"}  # the service user's default company
    assert body["@odata.count"] == 15
    _, everything = await fno("/data/VendorsV2", {"cross-company": "true", "$count": "true"})
    assert {r["dataAreaId"] for r in everything["value"]} == {"usmf", "demf", "gbsi"}
    assert everything["@odata.count"] == 45
    _, one = await fno("/data/VendorsV2", {"cross-company": "true", "$filter": "dataAreaId eq 'DEMF'"})
    assert len(one["value"]) == 15 and {r["dataAreaId"] for r in one["value"]} == {"demf"}


async def test_key_addressing_respects_company_and_reports_404(fno):
    ok, row = await fno("/data/PurchaseOrderHeadersV2(dataAreaId='usmf',PurchaseOrderNumber='USMF-000001')")
    assert ok.status == 200 and row["PurchaseOrderNumber"] == "USMF-000001"
    assert row["@odata.context"] == f"{BASE}/data/$metadata#PurchaseOrderHeadersV2/$entity"
    other = "/data/PurchaseOrderHeadersV2(dataAreaId='demf',PurchaseOrderNumber='DEMF-000001')"
    hidden, body = await fno(other)
    assert hidden.status == 404
    assert_error_body(body)
    shown, _ = await fno(other, {"cross-company": "true"})
    assert shown.status == 200
    missing, body = await fno("/data/PurchaseOrderHeadersV2(dataAreaId='usmf',PurchaseOrderNumber='NOPE')")
    assert missing.status == 404 and "PurchaseOrderHeadersV2" in body["error"]["message"]
    partial, body = await fno("/data/PurchaseOrderHeadersV2(PurchaseOrderNumber='USMF-000001')")
    assert partial.status == 400
    line, body = await fno("/data/PurchaseOrderLinesV2(dataAreaId='usmf',PurchaseOrderNumber='USMF-000001',"
                           "LineNumber=1)")
    assert line.status == 200 and body["LineNumber"] == 1
    user, body = await fno("/data/SystemUsers('adele')")
    assert user.status == 200 and body["Alias"].startswith("adele.vance@")


async def test_wildcard_filter_is_a_case_insensitive_contains(fno):
    resp, body = await fno("/data/VendorsV2", {"cross-company": "true",
                                               "$filter": "VendorOrganizationName eq '*gmbh*'"})
    names = [r["VendorOrganizationName"] for r in body["value"]]
    assert resp.status == 200 and names and all("GmbH" in n for n in names)
    assert "Müller Logistik GmbH" in names
    _, rest = await fno("/data/VendorsV2", {"cross-company": "true", "$filter":
                                            "not (VendorOrganizationName eq '*GmbH*') and dataAreaId eq 'demf'"})
    assert len(rest["value"]) + len(names) == 15


async def test_enum_filters_need_the_enum_literal(fno):
    resp, body = await fno("/data/VendorInvoiceHeaders", {"$filter": f"IsApproved eq {NS}.NoYes'Yes'"})
    assert resp.status == 200 and body["value"] and {r["IsApproved"] for r in body["value"]} == {"Yes"}
    _, no = await fno("/data/VendorInvoiceHeaders", {"$filter": f"IsApproved ne {NS}.NoYes'Yes'"})
    assert no["value"] and {r["IsApproved"] for r in no["value"]} == {"No"}
    for bad in ("IsApproved eq 'Yes'", f"IsApproved eq {NS}.NoYes'Maybe'", f"IsApproved gt {NS}.NoYes'No'"):
        resp, body = await fno("/data/VendorInvoiceHeaders", {"$filter": bad})
        assert resp.status == 400, bad
        assert_error_body(body)


@pytest.mark.parametrize("flt", [
    "VendorGroupId in ('10','20')", "OnHoldStatus has Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'",
    "contains(VendorOrganizationName,'a')", "VendorGroupId eq", "(VendorGroupId eq '10'", "NoSuchField eq 'x'",
    "VendorGroupId eq 10", "VendorGroupId eq '10' xor VendorGroupId eq '20'",
])
async def test_unsupported_or_bad_filters_are_400(fno, flt):
    resp, body = await fno("/data/VendorsV2", {"$filter": flt})
    assert resp.status == 400
    assert_error_body(body)
    assert resp.headers["Content-Type"].startswith("application/json; odata.metadata=minimal")


async def test_filter_combinations_dates_and_numbers(fno):
    flt = ("(PurchaseOrderStatus eq Microsoft.Dynamics.DataEntities.PurchStatus'Received' or "
           "PurchaseOrderStatus eq Microsoft.Dynamics.DataEntities.PurchStatus'Invoiced') and "
           "AccountingDate ge 2026-10-15T00:00:00Z")
    resp, body = await fno("/data/PurchaseOrderHeadersV2", {"$filter": flt})
    assert resp.status == 200 and body["value"]
    assert all(r["PurchaseOrderStatus"] in ("Received", "Invoiced") and r["AccountingDate"] >= "2026-10-15"
               for r in body["value"])
    _, lines = await fno("/data/PurchaseOrderLinesV2", {"$filter": "LineAmount gt 1000 and LineNumber le 2"})
    assert lines["value"] and all(r["LineAmount"] > 1000 and r["LineNumber"] <= 2 for r in lines["value"])


async def test_select_orderby_top_skip_and_row_format(fno):
    resp, body = await fno("/data/PurchaseOrderLinesV2", {
        "$select": "PurchaseOrderNumber,LineNumber,LineAmount", "$orderby": "LineAmount desc", "$top": "5",
        "$skip": "1"})
    assert resp.headers["Content-Type"].startswith("application/json; odata.metadata=minimal")
    rows = body["value"]
    assert len(rows) == 5 and [r["LineAmount"] for r in rows] == sorted((r["LineAmount"] for r in rows), reverse=True)
    assert set(rows[0]) == {"@odata.etag", "PurchaseOrderNumber", "LineNumber", "LineAmount"}
    _, full = await fno("/data/PurchaseOrderHeadersV2", {"$top": "1"})
    row = full["value"][0]
    assert list(row)[:2] == ["@odata.etag", "dataAreaId"]
    assert re.fullmatch(r'W/"[A-Za-z0-9+/=]+"', row["@odata.etag"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT12:00:00Z", row["AccountingDate"])
    assert row["DocumentApprovalStatus"] in ("Draft", "InReview", "Approved", "Confirmed")
    _, items = await fno("/data/WorkflowWorkItems", {"$filter": f"Status eq {NS}.WorkflowWorkItemStatus'Pending'"})
    assert items["value"][0]["CompletedDateTime"] == "1900-01-01T12:00:00Z"  # F&O's empty date
    _, lines = await fno("/data/PurchaseOrderLinesV2", {"$top": "1"})
    assert isinstance(lines["value"][0]["PurchasePrice"], float)
    for bad in ({"$top": "-1"}, {"$select": "Nope"}, {"$orderby": "LineAmount sideways"}, {"$expand": "X"}):
        resp, _ = await fno("/data/PurchaseOrderLinesV2", bad)
        assert resp.status == 400, bad


async def test_paging_follows_absolute_next_links(world, fno):
    _, service, _ = world
    params = {"cross-company": "true", "$filter": "VendorOrganizationName eq '*a*'", "$count": "true"}
    _, unpaged = await fno("/data/VendorsV2", params)
    service.config.page_size = 2
    seen, pages = [], 0
    resp, body = await fno("/data/VendorsV2", params)
    while True:
        pages += 1
        assert resp.status == 200 and len(body["value"]) <= 2
        seen += [(r["dataAreaId"], r["VendorAccountNumber"]) for r in body["value"]]
        link = body.get("@odata.nextLink")
        if not link:
            break
        assert link.startswith(f"{BASE}/data/VendorsV2?") and "cross-company=true" in link and "*a*" in link
        resp, body = await fno(link[len(BASE):])
    expected = [(r["dataAreaId"], r["VendorAccountNumber"]) for r in unpaged["value"]]
    assert seen == expected and pages == (len(expected) + 1) // 2 and len(expected) > 4


async def test_401_without_token_wrong_audience_or_expired(world, fno):
    issuer, _, _ = world
    resp, body = await fno("/data/VendorsV2", auth=None)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error_body(body)
    wrong, _ = issuer.issue(CONNECTOR, BASE + "/")  # audience must be the exact environment URL
    resp, body = await fno("/data/VendorsV2", auth=wrong)
    assert resp.status == 401 and "audience" in body["error"]["innererror"]["message"]
    resp, _ = await fno("/data/VendorsV2", auth="not.a.token")
    assert resp.status == 401
    issuer.clock.advance(3599 + 61)  # past expiry plus leeway
    resp, body = await fno("/data/VendorsV2")
    assert resp.status == 401 and "expired" in body["error"]["innererror"]["message"]


async def test_403_for_a_client_not_in_entra_applications(world, fno):
    issuer, service, _ = world
    token, _ = issuer.issue(STRANGER, BASE)
    resp, body = await fno("/data/VendorsV2", auth=token)
    assert resp.status == 403
    assert_error_body(body)
    service.config.unknown_client_status = 401
    resp, _ = await fno("/data/VendorsV2", auth=token)
    assert resp.status == 401


async def test_429_after_the_request_limit_with_growing_retry_after(world, fno):
    issuer, service, _ = world
    service.protection.limits = Limits(requests=3, window_seconds=300)
    for _ in range(3):
        resp, _ = await fno("/data/VendorsV2", {"$top": "1"})
        assert resp.status == 200
    resp, body = await fno("/data/VendorsV2", {"$top": "1"})
    assert resp.status == 429
    assert body["error"]["message"] == ("Number of requests exceeded the limit of 3 over the time window of "
                                        "300 seconds.")
    first = int(resp.headers["Retry-After"])
    assert 1 <= first <= 300
    resp, _ = await fno("/data/VendorsV2", {"$top": "1"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > first  # hammering lengthens the wait
    issuer.clock.advance(int(resp.headers["Retry-After"]))
    resp, _ = await fno("/data/VendorsV2", {"$top": "1"})
    assert resp.status == 200
    service.protection.user_limits = False
    for _ in range(5):
        resp, _ = await fno("/data/VendorsV2", {"$top": "1"})
        assert resp.status == 200


async def test_resource_pressure_throttles_everyone_then_stops(fno):
    admin = await fno.client.post("/_sandbox/fno/throttle", json={"count": 2, "retry_after": 7})
    assert admin.status == 200
    for _ in range(2):
        resp, body = await fno("/data/VendorsV2", {"$top": "1"})
        assert resp.status == 429 and resp.headers["Retry-After"] == "7"
        assert body["error"]["message"] == PRESSURE_MESSAGE
    resp, _ = await fno("/data/VendorsV2", {"$top": "1"})
    assert resp.status == 200
    stats = await (await fno.client.get("/_sandbox/fno/stats")).json()
    assert stats["throttled"] == 2 and stats["by_set"]["VendorsV2"] == 3


def test_concurrency_and_execution_time_limits(fake_clock):
    prot = ServiceProtection(Limits(concurrent=1, execution_seconds=10), clock=fake_clock)
    first = prot.admit("k")
    second = prot.admit("k")
    assert isinstance(second, Throttled) and "concurrent requests exceeded the limit of 1" in second.message
    fake_clock.advance(11)
    prot.done(first)
    third = prot.admit("k")
    assert isinstance(third, Throttled) and third.message.startswith("Combined execution time")
    assert not isinstance(prot.admit("other"), Throttled)


async def test_work_item_validate_and_complete(world, fno):
    _, service, _ = world
    item = next(w for w in service.state.rows("WorkflowWorkItems") if w["Status"] == "Pending")
    url = f"/data/WorkflowWorkItems(Id='{item['Id']}')/{NS}."
    post = fno.client.post
    headers = {"Authorization": f"Bearer {fno.token}"}
    resp = await post(url + "validate", json={}, headers=headers)
    assert resp.status == 200 and (await resp.json())["value"] is True
    resp = await post(url + "complete", json={"outcome": "Maybe"}, headers=headers)
    assert resp.status == 400
    resp = await post(url + "complete", json={"outcome": "Approve", "comment": "ok from Teams"}, headers=headers)
    assert resp.status == 204
    stored = service.state.get("WorkflowWorkItems", {"Id": item["Id"]})
    assert (stored["Status"], stored["CompletedBy"], stored["Outcome"], stored["Comment"]) == (
        "Completed", SERVICE_USER_ID, "Approve", "ok from Teams")
    resp = await post(url + "validate", headers=headers)
    assert (await resp.json())["value"] is False
    resp = await post(url + "complete", json={"outcome": "Approve"}, headers=headers)
    assert resp.status == 400
    assert_error_body(await resp.json())
    resp = await post(url + "complete", json={"outcome": "Approve"})
    assert resp.status == 401
    resp = await post(url + "explode", json={}, headers=headers)
    assert resp.status == 404
    meta = await (await fno.client.get("/data/$metadata", headers=headers)).text()
    assert '<Action Name="complete" IsBound="true">' in meta and '<EntitySet Name="WorkflowWorkItems"' in meta


async def test_admin_faults_latency_and_delete(world, fno):
    _, _, sleeps = world
    await fno.client.post("/_sandbox/fno/fail", json={"status": 503, "count": 1, "path_prefix": "/data/Vendors"})
    resp, body = await fno("/data/VendorsV2")
    assert resp.status == 503
    assert_error_body(body)
    resp, _ = await fno("/data/VendorsV2")
    assert resp.status == 200
    await fno.client.post("/_sandbox/fno/config", json={"latency_ms": 20})
    await fno("/data/VendorsV2", {"$top": "1"})
    assert sleeps.calls == [0.02]
    key = "/data/VendorsV2(dataAreaId='usmf',VendorAccountNumber='US-101')"
    assert (await fno(key))[0].status == 200
    resp = await fno.client.post("/_sandbox/fno/delete", json={
        "entity_set": "VendorsV2", "key": {"dataAreaId": "usmf", "VendorAccountNumber": "US-101"}})
    assert (await resp.json())["deleted"] is True
    assert (await fno(key))[0].status == 404


async def test_delegated_tokens_run_as_the_user_by_upn_or_object_id(aiohttp_client):
    from sandbox.people import PEOPLE
    state = seed_state()
    jurgen = next(p for p in PEOPLE if p.fo_user_id == "jurgen")
    claims = {"by_upn": {"scp": "user_impersonation", "upn": jurgen.upn.upper(), "azp": CONNECTOR},
              "by_oid": {"scp": "user_impersonation", "oid": jurgen.object_id, "azp": CONNECTOR},
              "nobody": {"scp": "user_impersonation", "upn": "ghost@example.com", "azp": CONNECTOR}}

    def verify(token: str, audience: str) -> dict:
        assert audience == BASE
        return claims[token]
    service = FnoService(state, verify, config=FnoConfig(base_url=BASE))
    client = await aiohttp_client(create_fno_app(service))
    for token in ("by_upn", "by_oid"):
        resp = await client.get("/data/VendorsV2", headers={"Authorization": f"Bearer {token}"})
        body = await resp.json()
        assert resp.status == 200 and {r["dataAreaId"] for r in body["value"]} == {"demf"}  # Jürgen's company
    resp = await client.get("/data/VendorsV2", headers={"Authorization": "Bearer nobody"})
    assert resp.status == 403


async def _meta(fno) -> str:
    resp = await fno.client.get("/data/$metadata", headers={"Authorization": f"Bearer {fno.token}"})
    assert resp.status == 200
    return await resp.text()


async def test_schema_knob_removes_a_field_from_metadata_queries_and_rows(fno):
    header = "/data/PurchaseOrderHeadersV2"
    assert '<Property Name="BuyerGroupId"' in await _meta(fno)
    resp = await fno.client.post("/_sandbox/fno/schema", json={"remove_fields": {
        "PurchaseOrderHeadersV2": ["BuyerGroupId"], "PurchaseOrderLinesV2": ["CurrencyCode"]}})
    assert resp.status == 200
    assert (await resp.json())["remove_fields"] == {"PurchaseOrderHeadersV2": ["BuyerGroupId"],
                                                    "PurchaseOrderLinesV2": ["CurrencyCode"]}
    meta = await _meta(fno)
    header_type = meta.split('<EntityType Name="PurchaseOrderHeaderV2">')[1].split("</EntityType>")[0]
    line_type = meta.split('<EntityType Name="PurchaseOrderLineV2">')[1].split("</EntityType>")[0]
    assert "BuyerGroupId" not in header_type and '<Property Name="PurchaseOrderName"' in header_type
    assert '"CurrencyCode"' not in line_type and '"CurrencyCode"' in header_type  # only where removed
    expected = (f"Could not find a property named 'BuyerGroupId' on type "
                f"'{NS}.PurchaseOrderHeaderV2'.")
    for params in ({"$select": "PurchaseOrderNumber,BuyerGroupId"}, {"$filter": "BuyerGroupId eq 'x'"},
                   {"$orderby": "BuyerGroupId desc"}):
        resp, body = await fno(header, {"cross-company": "true", **params})
        assert resp.status == 400, params
        assert_error_body(body)
        assert body["error"]["innererror"]["message"] == expected and expected in body["error"]["message"]
    resp, body = await fno(header, {"cross-company": "true", "$top": "1"})
    assert resp.status == 200 and "BuyerGroupId" not in body["value"][0] and "PurchaseOrderName" in body["value"][0]
    resp, row = await fno(f"{header}(dataAreaId='usmf',PurchaseOrderNumber='USMF-000001')")
    assert resp.status == 200 and "BuyerGroupId" not in row and "CurrencyCode" in row
    resp, body = await fno("/data/PurchaseOrderLinesV2", {"cross-company": "true", "$select": "CurrencyCode"})
    assert resp.status == 400 and "'CurrencyCode' on type 'Microsoft.Dynamics.DataEntities.PurchaseOrderLineV2'" \
        in body["error"]["innererror"]["message"]

    resp = await fno.client.post("/_sandbox/fno/schema", json={"reset": True})
    assert (await resp.json()) == {"remove_fields": {}, "remove_actions": [], "remove_entity_sets": []}
    resp, body = await fno(header, {"cross-company": "true", "$select": "BuyerGroupId", "$top": "1"})
    assert resp.status == 200 and "BuyerGroupId" in body["value"][0]
    assert '<Property Name="BuyerGroupId"' in await _meta(fno)


async def test_schema_knob_removes_a_key_field_so_the_key_no_longer_matches(fno):
    await fno.client.post("/_sandbox/fno/schema", json={"remove_fields": {"VendorsV2": ["VendorAccountNumber"]}})
    resp, body = await fno("/data/VendorsV2", {"$filter": "VendorAccountNumber eq 'US-101'"})
    assert resp.status == 400 and "Could not find a property named 'VendorAccountNumber'" in body["error"]["message"]
    resp, body = await fno("/data/VendorsV2(dataAreaId='usmf',VendorAccountNumber='US-101')")
    assert resp.status == 400 and "number of keys" in body["error"]["message"]
    meta = await _meta(fno)
    assert '"VendorAccountNumber"' not in meta.split('<EntityType Name="VendorV2">')[1].split("</EntityType>")[0]


async def test_schema_knob_removes_actions_and_entity_sets(fno):
    headers = {"Authorization": f"Bearer {fno.token}"}
    resp = await fno.client.post("/_sandbox/fno/schema", json={"remove_actions": ["validate"],
                                                               "remove_entity_sets": ["VendorsV2"]})
    assert resp.status == 200
    meta = await _meta(fno)
    assert '<Action Name="validate"' not in meta and '<Action Name="complete"' in meta
    assert '<EntitySet Name="VendorsV2"' not in meta and '<EntityType Name="VendorV2">' not in meta
    assert '<EntitySet Name="PurchaseOrderHeadersV2"' in meta
    resp, body = await fno("/data/VendorsV2")
    assert resp.status == 404
    assert_error_body(body)
    resp, body = await fno("/data/VendorsV2(dataAreaId='usmf',VendorAccountNumber='US-101')")
    assert resp.status == 404
    _, service_doc = await fno("/data/")
    assert "VendorsV2" not in {s["name"] for s in service_doc["value"]}
    _, items = await fno("/data/WorkflowWorkItems", {"$filter": "Status eq "
                                                     f"{NS}.WorkflowWorkItemStatus'Pending'", "$top": "1"})
    url = f"/data/WorkflowWorkItems(Id='{items['value'][0]['Id']}')/{NS}."
    assert (await fno.client.post(url + "validate", json={}, headers=headers)).status == 404
    assert (await fno.client.post(url + "complete", json={"outcome": "Maybe"}, headers=headers)).status == 400

    await fno.client.post("/_sandbox/fno/schema", json={"remove_entity_sets": ["WorkflowWorkItems"]})
    meta = await _meta(fno)
    assert "<Action " not in meta  # nothing left to bind them to
    await fno.client.post("/_sandbox/fno/schema", json={"reset": True})
    assert (await fno.client.post(url + "validate", json={}, headers=headers)).status == 200
    assert (await fno("/data/VendorsV2", {"$top": "1"}))[0].status == 200


@pytest.mark.parametrize("body, says", [
    ({"remove_fields": {"NoSuchSet": ["X"]}}, "unknown entity set 'NoSuchSet'"),
    ({"remove_fields": {"VendorsV2": ["Nope"]}}, "VendorsV2 has no field(s) ['Nope']"),
    ({"remove_fields": ["BuyerGroupId"]}, "remove_fields must be"),
    ({"remove_actions": ["explode"]}, "unknown action(s) ['explode']"),
    ({"remove_entity_sets": "VendorsV2"}, "remove_entity_sets must be a list"),
    ({"remove_entity_sets": ["Nope"]}, "unknown entity set(s) ['Nope']"),
    ({"drop": ["x"]}, "unknown option(s) ['drop']"),
])
async def test_schema_knob_rejects_unknown_names_and_changes_nothing(fno, body, says):
    resp = await fno.client.post("/_sandbox/fno/schema", json={"remove_entity_sets": ["CustomersV3"], **body})
    assert resp.status == 400
    assert says in (await resp.json())["error"]
    state = await (await fno.client.get("/_sandbox/fno/schema")).json()
    assert state["remove_entity_sets"] == []  # validated before anything changed
