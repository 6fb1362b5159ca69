"""Month-end operations on the F&O stand-in: each one changes F&O's data and raises the event F&O would.

Operations (also `POST /_sandbox/scenario/<op>` with the keyword arguments as JSON; the answer is
`{"events": [payloads]}`): confirm_po, register_vendor_invoice (no event; answers `"record"`),
post_vendor_invoice, post_vendor_payment, submit_to_workflow, recall_work_item, burst, month_end.
Events go through the sender, so only activated ones are delivered. When a demo has used up the seeded POs or
invoices, operations without an explicit key make new ones (a fresh PO, a registered invoice).
"""

from __future__ import annotations

import datetime as dt
import inspect
import random
import uuid
from typing import Any, Callable

from aiohttp import web

from sandbox import contracts
from sandbox.fno.state import FnoState
from sandbox.people import by_fo_user
from sandbox.seed import AP_CLERKS, APPROVERS, BUYERS, TAX_RATE, TREASURY, WORK_ITEM_OUTCOMES
from sandbox.sender import EventSender


class ScenarioError(Exception):
    """The operation cannot run on the current data (answered 409)."""


class Scenario:
    def __init__(self, state: FnoState, sender: EventSender, *, rng: random.Random | None = None,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 workflow: tuple[str, int, str] = ("VendInvoiceReview", 123, "VendInvoiceApproval")) -> None:
        self.state, self.sender, self.now = state, sender, now
        self.rng = rng or random.Random(7)
        self.workflow = workflow  # (workflow type, instance number, element): the configured workflow's event id
        self._confirmations: dict[tuple[str, str], int] = {}
        self._payment_batches = 100

    @property
    def work_item_event_id(self) -> str:
        return contracts.workflow_event_id(*self.workflow)

    def _raise(self, event_id: str, fields: dict[str, Any], le: str, user: str) -> dict[str, Any]:
        person = by_fo_user(user)
        return self.sender.raise_event(event_id, fields, legal_entity=le,
                                       initiating_user_oid=person.object_id if person else None)

    def _pick(self, set_name: str, le: str, key: str | None, key_field: str, ok: Callable[[dict], bool],
              what: str) -> dict[str, Any]:
        rows = [r for r in self.state.rows(set_name) if r["dataAreaId"].lower() == le.lower()]
        if key:
            row = next((r for r in rows if r[key_field].lower() == key.lower()), None)
            if row is None:
                raise ScenarioError(f"no {what} {key} in {le}")
            return row
        candidates = [r for r in rows if ok(r)]
        if not candidates:
            raise ScenarioError(f"no {what} left in {le} for this operation")
        return self.rng.choice(candidates)

    def _lines(self, set_name: str, le: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.state.rows(set_name) if r["dataAreaId"].lower() == le.lower()
                and all(r[k] == v for k, v in match.items())]

    # --- making more data when a demo has used it up -------------------------------------------------------
    def _new_po(self, le: str) -> dict[str, Any]:
        """A fresh approved PO in `le`, its lines copied from an existing one (new number, today's date)."""
        rows = [r for r in self.state.rows("PurchaseOrderHeadersV2") if r["dataAreaId"].lower() == le.lower()]
        if not rows:
            raise ScenarioError(f"no purchase orders in {le}")
        template = self.rng.choice(rows)
        le = template["dataAreaId"]
        number = f"{le.upper()}-{max(int(r['PurchaseOrderNumber'].rsplit('-', 1)[-1]) for r in rows) + 1:06d}"
        today = self.now().date()
        for line in self._lines("PurchaseOrderLinesV2", le, PurchaseOrderNumber=template["PurchaseOrderNumber"]):
            self.state.insert("PurchaseOrderLinesV2", {**line, "PurchaseOrderNumber": number})
        return self.state.insert("PurchaseOrderHeadersV2", {
            **template, "PurchaseOrderNumber": number, "PurchaseOrderStatus": "Backorder",
            "DocumentApprovalStatus": "Approved", "AccountingDate": today,
            "RequestedDeliveryDate": today + dt.timedelta(days=14)})

    def register_vendor_invoice(self, legal_entity: str = "usmf", po_number: str | None = None) -> dict[str, Any]:
        """Receive a PO and register its pending (Draft) vendor invoice. F&O raises no event for this."""
        if po_number:
            po = self._pick("PurchaseOrderHeadersV2", legal_entity, po_number, "PurchaseOrderNumber",
                            lambda r: True, "purchase order")
        else:
            po = self._new_po(legal_entity)
        le, number = po["dataAreaId"], po["PurchaseOrderNumber"]
        vendor = self.state.get("VendorsV2", {"dataAreaId": le, "VendorAccountNumber": po["OrderVendorAccountNumber"]})
        refs = [r["HeaderReference"] for r in self.state.rows("VendorInvoiceHeaders") if r["dataAreaId"] == le]
        ref = f"VI-{le.upper()}-{len(refs) + 1:05d}"
        while ref in refs:
            ref = f"VI-{le.upper()}-{self.rng.randint(10000, 99999)}"
        lines = self._lines("PurchaseOrderLinesV2", le, PurchaseOrderNumber=number)
        today = self.now().date()
        invoice_no = f"INV-{self.rng.randint(10000, 99999)}"
        name = vendor["VendorOrganizationName"] if vendor else ""
        header = self.state.insert("VendorInvoiceHeaders", {
            "dataAreaId": le, "HeaderReference": ref, "InvoiceNumber": invoice_no,
            "VendorAccount": po["OrderVendorAccountNumber"], "InvoiceAccount": po["InvoiceVendorAccountNumber"],
            "VendorName": name, "Currency": po["CurrencyCode"], "InvoiceDate": today,
            "DueDate": today + dt.timedelta(days=30), "PurchaseOrderNumber": number,
            "ImportedAmount": round(sum(line["LineAmount"] or 0.0 for line in lines), 2),
            "InvoiceDescription": f"{name} {invoice_no}", "DocumentNumber": ref, "VendorInvoiceReviewStatus": "Draft",
            "IsApproved": "No", "ApprovedBy": ""})
        for line in lines:
            self.state.insert("VendorInvoiceLines", {
                "dataAreaId": le, "HeaderReference": ref, "InvoiceLineNumber": line["LineNumber"],
                "ItemNumber": line["ItemNumber"], "ProcurementCategoryName": line["ProcurementCategoryName"],
                "ReceiveNow": line["OrderedPurchaseQuantity"], "UnitPrice": line["PurchasePrice"],
                "NetAmount": line["LineAmount"], "Currency": line["CurrencyCode"], "PurchaseOrder": number,
                "PurchLineNumber": line["LineNumber"], "VendorAccount": po["OrderVendorAccountNumber"],
                "InvoiceAccount": po["InvoiceVendorAccountNumber"]})
        self.state.update("PurchaseOrderHeadersV2", po, PurchaseOrderStatus="Received",
                          DocumentApprovalStatus="Confirmed")
        return header

    def _pick_or_make(self, set_name: str, le: str, key: str | None, key_field: str, ok: Callable[[dict], bool],
                      what: str, make: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
        try:
            return self._pick(set_name, le, key, key_field, ok, what)
        except ScenarioError:
            if key:
                raise
            return make(le)

    # --- operations ---------------------------------------------------------------------------------------
    def confirm_po(self, legal_entity: str = "usmf", po_number: str | None = None,
                   user: str | None = None) -> list[dict[str, Any]]:
        po = self._pick_or_make("PurchaseOrderHeadersV2", legal_entity, po_number, "PurchaseOrderNumber",
                                lambda r: r["DocumentApprovalStatus"] in ("Approved", "Draft"), "purchase order",
                                self._new_po)
        le, number = po["dataAreaId"], po["PurchaseOrderNumber"]
        n = self._confirmations[(le, number)] = self._confirmations.get((le, number), 0) + 1
        self.state.update("PurchaseOrderHeadersV2", po, DocumentApprovalStatus="Confirmed")
        fields = contracts.po_confirmed(po, self._lines("PurchaseOrderLinesV2", le, PurchaseOrderNumber=number),
                                        f"{number}-{n}")
        return [self._raise(contracts.PO_CONFIRMED, fields, le, user or BUYERS.get(le, "alex"))]

    def post_vendor_invoice(self, legal_entity: str = "usmf", header_reference: str | None = None,
                            user: str | None = None) -> list[dict[str, Any]]:
        inv = self._pick_or_make("VendorInvoiceHeaders", legal_entity, header_reference, "HeaderReference",
                                 lambda r: r["VendorInvoiceReviewStatus"] != "InReview", "pending vendor invoice",
                                 self.register_vendor_invoice)
        le, ref = inv["dataAreaId"], inv["HeaderReference"]
        lines = self._lines("VendorInvoiceLines", le, HeaderReference=ref)
        net = round(sum(line["NetAmount"] or 0.0 for line in lines), 2) or float(inv["ImportedAmount"] or 0.0)
        tax = round(net * TAX_RATE.get(le, 0.0), 2)
        posted = self.state.insert("PostedVendorInvoiceHeaders", {
            "dataAreaId": le, "InvoiceNumber": inv["InvoiceNumber"], "VendorAccount": inv["VendorAccount"],
            "InvoiceDate": inv["InvoiceDate"], "DueDate": inv["DueDate"],
            "PurchaseOrderNumber": inv["PurchaseOrderNumber"], "InvoiceAmount": round(net + tax, 2),
            "SalesTaxAmount": tax, "Currency": inv["Currency"], "Voucher": f"APINV{self.rng.randint(100000, 999999)}",
            "Description": inv["InvoiceDescription"]})
        for line in lines:
            qty = line["ReceiveNow"] or 0.0
            self.state.insert("PostedVendorInvoiceLines", {
                "dataAreaId": le, "InvoiceNumber": inv["InvoiceNumber"], "VendorAccount": inv["VendorAccount"],
                "LineNumber": line["InvoiceLineNumber"], "ItemNumber": line["ItemNumber"],
                "LineDescription": line["ProcurementCategoryName"], "Quantity": qty, "UnitPrice": line["UnitPrice"],
                "LineAmount": line["NetAmount"], "Currency": line["Currency"]})
            self.state.delete("VendorInvoiceLines", line)
        self.state.delete("VendorInvoiceHeaders", inv)
        po = self.state.get("PurchaseOrderHeadersV2", {"dataAreaId": le, "PurchaseOrderNumber":
                                                       inv["PurchaseOrderNumber"] or ""})
        if po:
            self.state.update("PurchaseOrderHeadersV2", po, PurchaseOrderStatus="Invoiced")
        fields = contracts.vendor_invoice_posted(posted, inv["InvoiceAccount"])
        return [self._raise(contracts.VENDOR_INVOICE_POSTED, fields, le, user or AP_CLERKS.get(le, "lynne"))]

    def post_vendor_payment(self, legal_entity: str = "usmf", invoice_number: str | None = None,
                            amount: float | None = None, user: str | None = None) -> list[dict[str, Any]]:
        inv = self._pick("PostedVendorInvoiceHeaders", legal_entity, invoice_number, "InvoiceNumber",
                         lambda r: True, "posted vendor invoice")
        le = inv["dataAreaId"]
        self._payment_batches += 1
        batch = f"{le.upper()}-PAY-{self._payment_batches:05d}"
        now = self.now()
        header = self.state.insert("VendorPaymentJournalHeaders", {
            "dataAreaId": le, "JournalBatchNumber": batch, "JournalName": "VendPay",
            "Description": f"Payment of {inv['InvoiceNumber']}", "IsPosted": "Yes", "PostedDateTime": now})
        line = self.state.insert("VendorPaymentJournalLines", {
            "dataAreaId": le, "JournalBatchNumber": batch, "LineNumber": 1, "AccountDisplayValue": inv["VendorAccount"],
            "CreditAmount": 0.0, "DebitAmount": float(amount if amount is not None else inv["InvoiceAmount"]),
            "CurrencyCode": inv["Currency"], "TransactionDate": now.date(),
            "PaymentReference": f"PMT-{self.rng.randint(100000, 999999)}",
            "MethodOfPayment": {"usmf": "ACH", "demf": "SEPA", "gbsi": "BACS"}.get(le, "ACH"),
            "TransactionText": f"Payment of invoice {inv['InvoiceNumber']}",
            "Voucher": f"APPAY{self.rng.randint(100000, 999999)}"})
        fields = contracts.vendor_payment_posted(header, line)
        return [self._raise(contracts.VENDOR_PAYMENT_POSTED, fields, le, user or TREASURY.get(le, "nestor"))]

    def submit_to_workflow(self, legal_entity: str = "usmf", header_reference: str | None = None,
                           approver: str | None = None, submitter: str | None = None) -> list[dict[str, Any]]:
        inv = self._pick_or_make("VendorInvoiceHeaders", legal_entity, header_reference, "HeaderReference",
                                 lambda r: r["VendorInvoiceReviewStatus"] == "Draft", "draft vendor invoice",
                                 self.register_vendor_invoice)
        le = inv["dataAreaId"]
        approver = approver or APPROVERS.get(le, "adele")
        approver_row = self.state.get("SystemUsers", {"UserID": approver})
        if approver_row is None:
            raise ScenarioError(f"no F&O user {approver}")
        now = self.now().replace(microsecond=0)
        self.state.update("VendorInvoiceHeaders", inv, VendorInvoiceReviewStatus="InReview")
        item = self.state.insert("WorkflowWorkItems", {
            "Id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)).upper(), "Status": "Pending",
            "Subject": f"Approve vendor invoice {inv['InvoiceNumber']} ({inv['ImportedAmount']:,.2f} "
                       f"{inv['Currency']})",
            "Description": f"Vendor invoice {inv['HeaderReference']} from {inv['VendorName']} needs approval.",
            "DueDateTime": now + dt.timedelta(days=3), "CreatedDateTime": now, "UserId": approver_row["UserID"],
            "CompanyId": le, "DocumentType": "VendorInvoice", "DocumentId": inv["HeaderReference"],
            "Outcomes": WORK_ITEM_OUTCOMES, "CompletedBy": "", "Outcome": "", "Comment": "",
            "CompletedDateTime": None})
        fields = contracts.workflow_work_item(item, approver_email=approver_row["Email"] or approver_row["Alias"],
                                              document="Vendor invoice",
                                              instruction="Please review the invoice and approve or reject it.")
        return [self._raise(self.work_item_event_id, fields, le, submitter or AP_CLERKS.get(le, "lynne"))]

    def recall_work_item(self, work_item_id: str) -> list[dict[str, Any]]:
        item = self.state.get("WorkflowWorkItems", {"Id": work_item_id})
        if item is None or item["Status"] not in ("Pending", "Delegated"):
            raise ScenarioError(f"work item {work_item_id} is not pending")
        self.state.update("WorkflowWorkItems", item, Status="Recalled")
        self._set_invoice(item, VendorInvoiceReviewStatus="Draft")
        return []

    def on_work_item_completed(self, item: dict[str, Any], caller: Any) -> None:
        """Hook for the OData `complete` action: the document follows the decision."""
        if item["Outcome"] == "Approve":
            self._set_invoice(item, VendorInvoiceReviewStatus="Approved", IsApproved="Yes",
                              ApprovedBy=item["CompletedBy"])
        elif item["Outcome"] == "Reject":
            self._set_invoice(item, VendorInvoiceReviewStatus="Rejected")

    def _set_invoice(self, item: dict[str, Any], **changes: Any) -> None:
        key = {"dataAreaId": item["CompanyId"], "HeaderReference": item["DocumentId"]}
        if item["DocumentType"] == "VendorInvoice" and self.state.get("VendorInvoiceHeaders", key):
            self.state.update("VendorInvoiceHeaders", key, **changes)

    async def burst(self, count: int = 50, concurrency: int = 10, legal_entity: str = "usmf") -> list[dict]:
        """`count` PO-confirmed events for existing POs (re-confirmations), sent `concurrency` at a time."""
        pos = [r for r in self.state.rows("PurchaseOrderHeadersV2") if r["dataAreaId"].lower() == legal_entity.lower()]
        if not pos:
            raise ScenarioError(f"no purchase orders in {legal_entity}")
        events = []
        for _ in range(int(count)):
            po = self.rng.choice(pos)
            key = (po["dataAreaId"], po["PurchaseOrderNumber"])
            n = self._confirmations[key] = self._confirmations.get(key, 0) + 1
            lines = self._lines("PurchaseOrderLinesV2", po["dataAreaId"], PurchaseOrderNumber=po["PurchaseOrderNumber"])
            person = by_fo_user(BUYERS.get(po["dataAreaId"], "alex"))
            events.append((contracts.PO_CONFIRMED, contracts.po_confirmed(po, lines, f"{key[1]}-{n}"), po["dataAreaId"],
                           person.object_id if person else None))
        payloads, _ = await self.sender.burst(events, int(concurrency))
        return payloads

    def month_end(self, legal_entity: str = "usmf") -> list[dict[str, Any]]:
        """A realistic month-end: three POs confirmed, two invoices posted, a payment, an approval waiting."""
        events: list[dict[str, Any]] = []
        for _ in range(3):
            events += self.confirm_po(legal_entity)
        for _ in range(2):
            events += self.post_vendor_invoice(legal_entity)
        events += self.post_vendor_payment(legal_entity)
        events += self.submit_to_workflow(legal_entity)
        return events


SCENARIO = web.AppKey("scenario", Scenario)
OPERATIONS = ("confirm_po", "register_vendor_invoice", "post_vendor_invoice", "post_vendor_payment",
              "submit_to_workflow", "recall_work_item", "burst", "month_end")


async def _operation(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    if op not in OPERATIONS:
        raise web.HTTPNotFound(text=f"unknown operation; one of {', '.join(OPERATIONS)}")
    try:
        args = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(args, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object of keyword arguments")
    method = getattr(request.app[SCENARIO], op)
    try:
        inspect.signature(method).bind(**args)
    except TypeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    try:
        result = method(**args)
        events = await result if inspect.isawaitable(result) else result
    except ScenarioError as exc:
        return web.json_response({"error": str(exc)}, status=409)
    if isinstance(events, dict):  # register_vendor_invoice: a record, no event
        return web.json_response({"events": [], "record": _jsonable(events)})
    return web.json_response({"events": events})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


def add_scenario_routes(app: web.Application, scenario: Scenario) -> None:
    app[SCENARIO] = scenario
    app.router.add_post("/_sandbox/scenario/{op}", _operation)
