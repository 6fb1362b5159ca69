"""Card data built by connector/: digests carry what their headline binds, F&O's empty dates are empty."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from cards import Catalog, render_card
from cards.validate import leftover_expressions
from connector.carddata import build_card_data, digest_card_data, is_empty_date, summarize
from connector.delivery import make_digest_renderer
from connector.store import EventRecord, EventStatus

EMPTY_DATES = ["1900-01-01", "1900-01-01T00:00:00Z", "1900-01-01T12:00:00Z", "1900-01-01T00:00:00.000+00:00",
               "/Date(-2208988800000)/", "/Date(-2208988800000+0000)/"]


def record(business_event_id: str, payload: dict[str, Any], enrichment: dict[str, Any] | None = None,
           n: int = 1) -> EventRecord:
    return EventRecord(
        id=f"ev-{n}", environment="contoso-prod", business_event_id=business_event_id, control_number=n,
        event_id=f"E-{n}", legal_entity="USMF", payload={"BusinessEventId": business_event_id, **payload},
        status=EventStatus.PROCESSING, stage="deliver", attempts=0, received_at=0.0, updated_at=0.0,
        next_attempt_at=0.0, data={"enrichment": enrichment or {}},
    )


def po_summary(n: int) -> dict[str, Any]:
    rec = record("PurchaseOrderConfirmedBusinessEvent",
                 {"PurchaseOrderNumber": f"PO-{n:05d}", "TransactionCurrencyAmount": 100.0 * n,
                  "TransactionCurrencyCode": "USD", "VendorAccount": "US-104"}, n=n)
    return summarize(build_card_data(rec, environment_name="contoso-prod", base_url="https://contoso.example"))


def shown(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


def test_digest_headline_names_what_it_counts(catalog: Catalog) -> None:
    """A burst of 50 confirmations turns into one digest: its headline reads "50 purchase orders confirmed"."""
    deps = SimpleNamespace(catalog=catalog, max_bytes=28_000, max_lines=20)
    card = make_digest_renderer(deps)([po_summary(n) for n in range(1, 51)])  # type: ignore[arg-type]
    assert "${" not in shown(card), leftover_expressions(card)
    headline = card["body"][0]["items"][0]["columns"][0]["items"][1]["text"]
    assert headline == "50 purchase orders confirmed"
    assert "USMF" in shown(card) and "contoso-prod" in shown(card)


def test_digest_of_mixed_events_says_business_events(catalog: Catalog) -> None:
    rows = [po_summary(1), {**po_summary(2), "eventType": "VendorPaymentPostedBusinessEvent"}]
    data = digest_card_data(rows)
    assert data["digest"]["title"] == "business events" and "eventType" not in data
    card = render_card("digest", data, catalog=catalog).card
    assert "2 business events" in shown(card) and "${" not in shown(card)


def test_digest_of_an_unnamed_event_type_names_the_type() -> None:
    rows = [{**po_summary(1), "eventType": "Workflow_PurchReq_1_Approval"}] * 3
    assert digest_card_data(rows)["digest"]["title"] == "Workflow_PurchReq_1_Approval events"


@pytest.mark.parametrize("empty", EMPTY_DATES)
def test_fno_empty_date_spellings_are_recognised(empty: str) -> None:
    assert is_empty_date(empty)


@pytest.mark.parametrize("real", ["1900-01-02", "2026-01-01T00:00:00Z", "/Date(1795564800000)/", "", None, 1900])
def test_real_dates_and_other_values_are_not_empty_dates(real: Any) -> None:
    assert not is_empty_date(real)


@pytest.mark.parametrize("empty", EMPTY_DATES)
def test_empty_dates_are_null_in_card_data_and_not_shown(catalog: Catalog, empty: str) -> None:
    """An invoice whose due date F&O left empty shows no "Due date 01 Jan 1900" (and no dangling "Due date")."""
    rec = record(
        "VendorInvoicePostedBusinessEvent",
        {"InvoiceId": "INV-001", "InvoiceAccount": "US-104", "InvoiceDate": "/Date(1795564800000)/",
         "InvoiceDueDate": empty, "InvoiceAmountInAccountingCurrency": 10.0, "LegalEntity": "usmf"},
        {"record": {"invoice": {"InvoiceNumber": "INV-001", "InvoiceDate": "2026-11-25T12:00:00Z", "DueDate": empty,
                                "InvoiceAmount": 10.0, "Currency": "USD"}, "lines": []}},
    )
    data = build_card_data(rec, environment_name="contoso-prod", base_url="https://contoso.example")
    assert data["event"]["InvoiceDueDate"] is None
    assert data["record"]["invoice"]["DueDate"] is None
    assert rec.payload["InvoiceDueDate"] == empty  # the stored event is not touched
    assert {"name": "InvoiceDueDate", "value": ""} in data["fields"]
    card = render_card("vendor-invoice-posted", data, catalog=catalog).card
    text = shown(card)
    assert "1900" not in text and "Due date" not in text and "${" not in text
    assert "25 Nov 2026" in text  # the real invoice date is still there


@pytest.mark.parametrize("empty", EMPTY_DATES)
def test_empty_work_item_due_date_is_not_shown(catalog: Catalog, empty: str) -> None:
    rec = record("Workflow_PurchReq_1_Approval_WorkItem",
                 {"WorkflowWorkItemInstanceId": "WI-1", "WorkflowWorkItemSubject": "Approve PR-1"},
                 {"record": {"workItem": {"Id": "WI-1", "Status": "Pending", "DueDateTime": empty,
                                          "CreatedDateTime": "2026-11-26T10:00:00Z"}}})
    data = build_card_data(rec, environment_name="contoso-prod", base_url="https://contoso.example")
    text = shown(render_card("workflow-approval", data, catalog=catalog).card)
    assert "1900" not in text and '"Due"' not in text and "26 Nov 2026" in text


def test_empty_event_time_is_no_event_time() -> None:
    rec = record("PurchaseOrderConfirmedBusinessEvent", {"EventTime": "/Date(-2208988800000)/"})
    assert build_card_data(rec, environment_name="e", base_url="https://x.example")["eventTime"] is None
