"""Card data: the one object a template binds to, built from a stored event and its enrichment.

The shape is documented in DEVELOPERS.md ("Card data"). Also: which template an event gets by default, a one-line
summary of an event for digests and the card data of a digest. Links and document keys come from the enrichment plans
(dynamics/plans.py).

F&O has no null date: it writes "no date" as 1900-01-01 (`/Date(-2208988800000)/`, `1900-01-01T00:00:00Z`,
`1900-01-01T12:00:00Z`). The card data carries those as null, so templates (whose date facts test `exists`) show
nothing instead of "01 Jan 1900".
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
# F&O's empty date in every spelling seen: the date alone, with any time of day, with Z or an offset, or as /Date(ms)/.
_EMPTY_ISO = re.compile(r"^1900-01-01(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_EMPTY_MS = -2208988800000  # 1900-01-01T00:00:00Z

DEFAULT_LOCALE = "en-US"
# What a digest of one event type is about ("14 purchase orders confirmed"); other types read "14 <type> events".
DIGEST_TITLES = {
    "PurchaseOrderConfirmedBusinessEvent": "purchase orders confirmed",
    "VendorInvoicePostedBusinessEvent": "vendor invoices posted",
    "VendorPaymentPostedBusinessEvent": "vendor payments posted",
}


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


def is_empty_date(value: Any) -> bool:
    """True for F&O's "no date" (1900-01-01 in any of its spellings)."""
    if not isinstance(value, str):
        return False
    if value.startswith("/Date("):
        m = _DATE.match(value)
        return m is not None and int(m.group(1)) == _EMPTY_MS
    # every ISO spelling contains the date itself: most strings are ruled out without a regex
    return "1900-01-01" in value and bool(_EMPTY_ISO.match(value.strip()))


def without_empty_dates(value: Any) -> Any:
    """A copy of `value` (JSON) with F&O's empty dates replaced by None, at any depth."""
    # Runs over every event's payload and record: a value that cannot be an empty date (a number, or a string
    # without "1900-01-01" that is not a /Date(...)/) is copied as it is, without a call.
    if isinstance(value, dict):
        return {k: v if isinstance(v, _SCALARS) or (isinstance(v, str) and "1900-01-01" not in v and not
                                                  v.startswith("/Date(")) else without_empty_dates(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [v if isinstance(v, _SCALARS) or (isinstance(v, str) and "1900-01-01" not in v and not
                                                 v.startswith("/Date(")) else without_empty_dates(v)
                for v in value]
    return None if is_empty_date(value) else value


_SCALARS = (int, float, bool, type(None))  # never a date


def landing_url(base_url: str, company: str | None) -> str:
    """Where "Open in Dynamics" goes when no enrichment plan gave the document's own link: the right company."""
    company = (company or "").lower()
    return f"{base_url}/?cmp={company}" if company else f"{base_url}/"


def build_card_data(
    record: EventRecord,
    *,
    environment_name: str,
    base_url: str,
    locale: str | None = None,
) -> dict[str, Any]:
    """The card data for one event (mentions are added by the delivery stage once resolved).

    `locale` is the environment's card locale (a route's may replace it); None is en-US."""
    payload = without_empty_dates(record.payload)
    enrichment = record.data.get("enrichment") or {}
    data: dict[str, Any] = {
        "event": payload,
        "eventType": record.business_event_id,
        "eventTime": event_time_iso(payload),
        "environment": {"name": environment_name, "baseUrl": base_url},
        "legalEntity": (record.legal_entity or "").lower() or None,
        "locale": locale or DEFAULT_LOCALE,
        "record": without_empty_dates(enrichment.get("record") or {}),
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
        "eventType": data.get("eventType"),
        "environment": (data.get("environment") or {}).get("name"),
        "locale": data.get("locale"),
    }


def digest_card_data(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The card data of a digest of `items` (rows made by `summarize`).

    A digest has no event of its own: what its items share (event type, legal entity, environment, locale) becomes
    the card's, and `digest.title` says what the items are, so the headline never falls back to a missing field.
    """
    def shared(key: str) -> Any:
        values = {i.get(key) for i in items}
        return values.pop() if len(values) == 1 else None

    event_type = shared("eventType")
    if event_type:
        title = DIGEST_TITLES.get(event_type) or f"{event_type} events"
    else:
        title = "business events"
    data: dict[str, Any] = {
        "digest": {"count": len(items), "title": title, "items": items},
        "locale": shared("locale") or DEFAULT_LOCALE,
    }
    if event_type:
        data["eventType"] = event_type
    if legal_entity := shared("legalEntity"):
        data["legalEntity"] = legal_entity
    if environment := shared("environment"):
        data["environment"] = {"name": environment}
    return data


def document_key(data: dict[str, Any]) -> str | None:
    """The document a card belongs to (one thread per document): the enrichment plan's `document_key`, which
    threads a purchase order's confirmation with its later invoice."""
    key = data.get("documentKey")
    return str(key) if key else None
