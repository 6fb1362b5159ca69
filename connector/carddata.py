"""Card data: the one object a template binds to, built from a stored event and its enrichment.

The shape is documented in DEVELOPERS.md ("Card data"). Also: which template an event gets by default and a
one-line summary of an event for digests. Links and document keys come from the enrichment plans (dynamics/plans.py).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from typing import Any

from connector.store import EventRecord

ENVELOPE_FIELDS = {
    "BusinessEventId", "BusinessEventLegalEntity", "ContextRecordSubject", "ControlNumber", "EventId", "EventTime",
    "EventTimeIso8601", "InitiatingUserAADObjectId", "MajorVersion", "MinorVersion", "ParentContextRecordSubjects",
}

DEFAULT_TEMPLATES: list[tuple[str, str]] = [
    ("PurchaseOrderConfirmedBusinessEvent", "purchase-order-confirmed"),
    ("VendorInvoicePostedBusinessEvent", "vendor-invoice-posted"),
    ("VendorPaymentPostedBusinessEvent", "vendor-payment-posted"),
    ("Workflow_*_WorkItem", "workflow-approval"),
]
GENERIC_TEMPLATE = "generic-event"
UNAVAILABLE_TEMPLATE = "record-unavailable"
DIGEST_TEMPLATE = "digest"

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def _glob_lookup(table: list[tuple[str, str]], event_id: str) -> str | None:
    for pattern, value in table:
        if pattern == event_id:
            return value
    for pattern, value in table:
        if fnmatch.fnmatchcase(event_id, pattern):
            return value
    return None


def default_template(event_id: str) -> str:
    return _glob_lookup(DEFAULT_TEMPLATES, event_id) or GENERIC_TEMPLATE


def event_time_iso(payload: dict[str, Any]) -> str | None:
    iso = payload.get("EventTimeIso8601")
    if isinstance(iso, str) and iso:
        return iso
    raw = payload.get("EventTime")
    if isinstance(raw, str) and (m := _DATE.match(raw)):
        return dt.datetime.fromtimestamp(int(m.group(1)) / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


def landing_url(base_url: str, company: str | None) -> str:
    """Where "Open in Dynamics" goes when no enrichment plan gave the document's own link: the right company."""
    company = (company or "").lower()
    return f"{base_url}/?cmp={company}" if company else f"{base_url}/"


def build_card_data(
    record: EventRecord,
    *,
    environment_name: str,
    base_url: str,
) -> dict[str, Any]:
    """The card data for one event (mentions are added by the delivery stage once resolved)."""
    payload = record.payload
    enrichment = record.data.get("enrichment") or {}
    data: dict[str, Any] = {
        "event": payload,
        "eventType": record.business_event_id,
        "eventTime": event_time_iso(payload),
        "environment": {"name": environment_name, "baseUrl": base_url},
        "legalEntity": (record.legal_entity or "").lower() or None,
        "record": enrichment.get("record") or {},
        "missing": list(enrichment.get("missing") or []),
        "openUrl": enrichment.get("openUrl") or landing_url(base_url, record.legal_entity),
        "documentKey": enrichment.get("documentKey"),
        "mentions": {},
        "fields": [
            {"name": k, "value": _display(v)} for k, v in sorted(payload.items()) if k not in ENVELOPE_FIELDS
        ],
    }
    if fnmatch.fnmatchcase(record.business_event_id, "Workflow_*_WorkItem"):
        work_item = data["record"].get("workItem") or {}
        outcomes = payload.get("WorkflowWorkItemOutcomes") or work_item.get("Outcomes") or ["Approve", "Reject"]
        if isinstance(outcomes, str):
            outcomes = [o.strip() for o in outcomes.split(",") if o.strip()]
        data["approval"] = {
            "workItemId": payload.get("WorkflowWorkItemInstanceId") or work_item.get("Id"),
            "outcomes": outcomes,
            "status": work_item.get("Status", "Pending"),
            "decision": None,
            "eventId": record.id,
        }
    return data


def _display(v: Any) -> str:
    if isinstance(v, str) and (m := _DATE.match(v)):
        return dt.datetime.fromtimestamp(int(m.group(1)) / 1000, dt.timezone.utc).strftime("%Y-%m-%d")
    if isinstance(v, (list, dict)):
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return "" if v is None else str(v)


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """One digest row: the document, the vendor, the amount."""
    ev = data.get("event") or {}
    rec = data.get("record") or {}
    vendor = rec.get("vendor") or {}
    document = (
        ev.get("PurchaseOrderNumber") or ev.get("InvoiceId") or ev.get("JournalBatchNumber")
        or ev.get("WorkflowWorkItemSubject") or data.get("eventType")
    )
    amount = (
        ev.get("TransactionCurrencyAmount") if ev.get("TransactionCurrencyAmount") is not None
        else ev.get("InvoiceAmountInAccountingCurrency") if ev.get("InvoiceAmountInAccountingCurrency") is not None
        else ev.get("PaymentAmount")
    )
    currency = ev.get("TransactionCurrencyCode") or ev.get("CurrencyCode") or (rec.get("invoice") or {}).get("Currency")
    vendor_name = vendor.get("VendorOrganizationName") or ev.get("VendorAccount") or ev.get("InvoiceAccount") or ""
    return {
        "title": str(document),
        "vendor": vendor_name,
        "amount": amount,
        "currency": currency or "",
        "legalEntity": data.get("legalEntity"),
        "openUrl": data.get("openUrl"),
    }


def document_key(data: dict[str, Any]) -> str | None:
    """The document a card belongs to (one thread per document): the enrichment plan's `document_key`, which
    threads a purchase order's confirmation with its later invoice."""
    key = data.get("documentKey")
    return str(key) if key else None
