"""Business event payloads as F&O serialises them: the envelope (dynamics.md §1.1) and one builder per event type.

Contracts follow DEVELOPERS.md ("Business event contracts"); the vendor invoice, payment and workflow ones are
hypotheses until a real environment's "Download schema" confirms them. Builders take plain row dicts (F&O field
names) and return the event-specific fields; `envelope` adds the common fields and sorts keys alphabetically.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Iterable

CONTROL_NUMBER_SEED = 5637144576  # F&O's first RecId; every observed ControlNumber is above it
TEST_CONTROL_NUMBER = -9223372036854775808  # Int64.MinValue, on BusinessEventsTestEndpointContract
TEST_EVENT_ID = "BusinessEventsTestEndpointContract"
PO_CONFIRMED = "PurchaseOrderConfirmedBusinessEvent"
VENDOR_INVOICE_POSTED = "VendorInvoicePostedBusinessEvent"
VENDOR_PAYMENT_POSTED = "VendorPaymentPostedBusinessEvent"
LEGACY_MISSING = ("BusinessEventLegalEntity", "ContextRecordSubject", "EventTimeIso8601",
                  "InitiatingUserAADObjectId", "ParentContextRecordSubjects")  # absent from 2021-style payloads
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def ms_date(value: dt.datetime | dt.date | None) -> str:
    """`/Date(ms)/`. Dates are midnight UTC, datetimes are truncated to whole seconds, None is 1900-01-01."""
    if value is None:
        return "/Date(-2208988800000)/"
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    seconds = (value.astimezone(dt.timezone.utc) - _EPOCH) // dt.timedelta(seconds=1)
    return f"/Date({seconds * 1000})/"


def iso8601_7(value: dt.datetime) -> str:
    """ISO-8601 UTC with 7 fractional digits (.NET ticks), e.g. 2023-10-16T15:42:46.3440655Z."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond * 10:07d}Z"


class ControlNumbers:
    """Environment-wide, upwardly increasing, with gaps (it is a RecId, not a sequence)."""

    def __init__(self, rng: random.Random, start: int = CONTROL_NUMBER_SEED) -> None:
        self._rng, self._last = rng, start - 1

    def next(self) -> int:
        self._last += 1 if self._rng.random() < 0.6 else self._rng.randint(2, 40)
        return self._last


def envelope(business_event_id: str, fields: dict[str, Any], *, legal_entity: str, control_number: int,
             event_id: str, event_time: dt.datetime, initiating_user_oid: str | None, legacy: bool = False,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One flat payload, keys in alphabetical order, as F&O sends it."""
    payload: dict[str, Any] = {
        "BusinessEventId": business_event_id, "ControlNumber": control_number, "EventId": event_id.upper(),
        "EventTime": ms_date(event_time), "MajorVersion": 0, "MinorVersion": 0}
    if not legacy:
        oid = (initiating_user_oid or "00000000-0000-0000-0000-000000000000").strip("{}").upper()
        payload.update(BusinessEventLegalEntity=legal_entity, ContextRecordSubject="",
                       EventTimeIso8601=iso8601_7(event_time), InitiatingUserAADObjectId="{" + oid + "}",
                       ParentContextRecordSubjects=[])
    payload.update(fields)
    payload.update(extra or {})
    return dict(sorted(payload.items()))


def po_confirmed(header: dict[str, Any], lines: Iterable[dict[str, Any]], journal: str) -> dict[str, Any]:
    """PurchaseOrderConfirmedBusinessEvent fields (real contract, dynamics.md §1.3)."""
    return {"LegalEntity": header["dataAreaId"], "PurchaseJournal": journal,
            "PurchaseOrderDate": ms_date(header["AccountingDate"]),
            "PurchaseOrderNumber": header["PurchaseOrderNumber"], "PurchaseType": "Purch",
            "TransactionCurrencyAmount": round(sum(line["LineAmount"] or 0.0 for line in lines), 2),
            "TransactionCurrencyCode": header["CurrencyCode"], "VendorAccount": header["OrderVendorAccountNumber"]}


def vendor_invoice_posted(posted: dict[str, Any], invoice_account: str | None = None) -> dict[str, Any]:
    """VendorInvoicePostedBusinessEvent fields (hypothesis, modelled on the sales invoice contract)."""
    return {"InvoiceAccount": invoice_account or posted["VendorAccount"], "InvoiceId": posted["InvoiceNumber"],
            "PurchaseOrderId": posted["PurchaseOrderNumber"], "InvoiceDate": ms_date(posted["InvoiceDate"]),
            "InvoiceDueDate": ms_date(posted["DueDate"]),
            "InvoiceAmountInAccountingCurrency": float(posted["InvoiceAmount"]),
            "InvoiceTaxAmount": float(posted["SalesTaxAmount"]), "LegalEntity": posted["dataAreaId"]}


def vendor_payment_posted(header: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    """VendorPaymentPostedBusinessEvent fields (ours: the real contract is unknown)."""
    return {"LegalEntity": header["dataAreaId"], "JournalBatchNumber": header["JournalBatchNumber"],
            "VendorAccount": line["AccountDisplayValue"],
            "PaymentAmount": float((line["DebitAmount"] or 0.0) - (line["CreditAmount"] or 0.0)),
            "CurrencyCode": line["CurrencyCode"], "PaymentDate": ms_date(line["TransactionDate"]),
            "PaymentReference": line["PaymentReference"], "Voucher": line["Voucher"]}


# Workflow events (dynamics.md §1.2): ids are generated per workflow configuration, e.g. for the vendor invoice
# review workflow number 000123 whose approval element is VendInvoiceApproval:
#   workflow type     Workflow_VendInvoiceReview_000123                            (workflow started / completed)
#   workflow element  Workflow_VendInvoiceReview_000123_VendInvoiceApproval        (element completed)
#   work item         Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem
def workflow_type_event_id(workflow: str, instance: int) -> str:
    return f"Workflow_{workflow}_{instance:06d}"


def workflow_element_event_id(workflow: str, instance: int, element: str) -> str:
    return f"{workflow_type_event_id(workflow, instance)}_{element}"


def workflow_event_id(workflow: str, instance: int, element: str) -> str:
    """The work item event id, e.g. Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem."""
    return f"{workflow_element_event_id(workflow, instance, element)}_WorkItem"


def _outcomes(item: dict[str, Any]) -> list[str]:
    return [o.strip() for o in (item["Outcomes"] or "").split(",") if o.strip()]


def workflow_work_item(item: dict[str, Any], *, approver_email: str, document: str,
                       instruction: str) -> dict[str, Any]:
    """Workflow work item fields (hypothesis built from the names in the workflow docs). Raised for every new
    work item: on submit, and for the new item of a delegation or an escalation."""
    return {"WorkflowWorkItemInstanceId": item["Id"], "WorkflowWorkItemSubject": item["Subject"],
            "WorkflowUserEmail": approver_email, "WorkItemOwner": item["UserId"], "WorkflowDocument": document,
            "WorkflowDocumentId": item["DocumentId"], "WorkflowStepInstruction": instruction,
            "WorkflowWorkItemOutcomes": _outcomes(item), "LegalEntity": item["CompanyId"]}


def workflow_element_completed(item: dict[str, Any], *, element: str, document: str) -> dict[str, Any]:
    """Workflow element event fields when an approval step completes (ours, synthetic: F&O documents the event,
    not its fields). `item` is the completed work item."""
    return {"LegalEntity": item["CompanyId"], "WorkflowDocument": document, "WorkflowDocumentId": item["DocumentId"],
            "WorkflowElementName": element, "WorkflowElementStatus": "Completed",
            "WorkflowWorkItemCompletedBy": item["CompletedBy"],
            "WorkflowWorkItemCompletedDateTime": ms_date(item["CompletedDateTime"]),
            "WorkflowWorkItemComment": item["Comment"] or "", "WorkflowWorkItemInstanceId": item["Id"],
            "WorkflowWorkItemOutcome": item["Outcome"], "WorkItemOwner": item["UserId"]}


def workflow_status_changed(item: dict[str, Any], *, status: str, changed_by: str, document: str,
                            document_status: str | None) -> dict[str, Any]:
    """Workflow type event fields when the workflow ends (ours, synthetic): `status` "Completed" (final approval
    or rejection) or "Canceled" (recalled). `item` is the work item that was pending when it ended."""
    return {"LegalEntity": item["CompanyId"], "WorkflowDocument": document, "WorkflowDocumentId": item["DocumentId"],
            "WorkflowDocumentStatus": document_status or "", "WorkflowStatus": status,
            "WorkflowStatusChangedBy": changed_by, "WorkflowWorkItemInstanceId": item["Id"]}
