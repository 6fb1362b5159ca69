"""Month-end operations on the F&O stand-in: each one changes F&O's data and raises the event F&O would.

Operations (also `POST /_sandbox/scenario/<op>` with the keyword arguments as JSON; the answer is
`{"events": [payloads]}`, 409 `{"error"}` when the data does not allow it): confirm_po, register_vendor_invoice
(no event; answers `"record"`), post_vendor_invoice, post_vendor_payment, burst, month_end, and the workflow:
  submit_to_workflow {legal_entity, header_reference?, approver?, submitter?, outcomes?}  -> …_WorkItem
  delegate_work_item {work_item_id, to_user, by_user?, comment?}        -> …_WorkItem of the new item
  escalate_work_item {work_item_id, to_user?, comment?}                 -> …_WorkItem of the new item
  escalate_overdue {legal_entity?}                                      -> one …_WorkItem per escalated item
  recall_work_item {work_item_id, by_user?}                             -> Workflow_<type>_<n> (Canceled)
  complete_in_fno {work_item_id, outcome, comment?, by_user?}           -> element event (+ workflow Completed)
  configure_workflow {approvers?, senior_approver?, senior_threshold?, escalation_user?, outcomes?, due_days?}
    (no event; answers the configuration as `"record"`)
The OData `complete` action raises the same events as complete_in_fno (`on_work_item_completed`).
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

from sandbox.admin_http import json_object

from sandbox import contracts
from sandbox.fno import workflow as wf
from sandbox.fno.state import FnoState
from sandbox.people import by_fo_user
from sandbox.seed import (AP_CLERKS, APPROVERS, BUYERS, ESCALATION_USER, SENIOR_APPROVER, SENIOR_APPROVAL_THRESHOLD,
                          TAX_RATE, TREASURY, WORK_ITEM_OUTCOMES)
from sandbox.sender import EventSender

DOCUMENT_NAMES = {"VendorInvoice": "Vendor invoice"}  # WorkflowDocument in the events, per DocumentType
INSTRUCTION = "Please review the invoice and approve or reject it."


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
        # who gets work items (configure_workflow changes these)
        self.approvers: dict[str, str] = dict(APPROVERS)
        self.senior_approver, self.senior_threshold = SENIOR_APPROVER, SENIOR_APPROVAL_THRESHOLD
        self.escalation_user = ESCALATION_USER
        self.outcomes, self.due_days = WORK_ITEM_OUTCOMES, 3.0

    @property
    def work_item_event_id(self) -> str:
        """e.g. Workflow_VendInvoiceReview_000123_VendInvoiceApproval_WorkItem: a work item was created."""
        return contracts.workflow_event_id(*self.workflow)

    @property
    def element_event_id(self) -> str:
        """e.g. Workflow_VendInvoiceReview_000123_VendInvoiceApproval: the approval step was completed."""
        return contracts.workflow_element_event_id(*self.workflow)

    @property
    def workflow_event_id(self) -> str:
        """e.g. Workflow_VendInvoiceReview_000123: the workflow completed or was canceled."""
        return contracts.workflow_type_event_id(*self.workflow[:2])

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

    # --- workflow (state machine: sandbox/fno/workflow.py) ------------------------------------------------
    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4)).upper()

    def _user(self, user_id: str, what: str) -> dict[str, Any]:
        row = self.state.get("SystemUsers", {"UserID": user_id or ""})
        if row is None or not row.get("Enabled"):
            raise ScenarioError(f"no enabled F&O user {user_id!r} ({what})")
        return row

    def _work_item(self, work_item_id: str) -> dict[str, Any]:
        try:
            return wf.get(self.state, work_item_id)
        except wf.WorkItemError as exc:
            raise ScenarioError(exc.message) from None

    def _submitter(self, item: dict[str, Any]) -> str:
        return AP_CLERKS.get((item["CompanyId"] or "").lower(), "lynne")

    def default_approver(self, legal_entity: str, amount: float) -> str:
        """Who `submit_to_workflow` assigns: the senior approver above the threshold, else the LE's AP approver."""
        if self.senior_approver and amount > self.senior_threshold:
            return self.senior_approver
        return self.approvers.get(legal_entity.lower(), "adele")

    def configure_workflow(self, approvers: dict[str, str] | None = None, senior_approver: str | None = None,
                           senior_threshold: float | None = None, escalation_user: str | None = None,
                           outcomes: list[str] | str | None = None, due_days: float | None = None) -> dict[str, Any]:
        """Change who gets work items and with which outcomes; answers the whole configuration."""
        for user in [*(approvers or {}).values(), senior_approver, escalation_user]:
            if user:
                self._user(user, "workflow configuration")
        if approvers:
            self.approvers.update({k.lower(): v for k, v in approvers.items()})
        if senior_approver is not None:
            self.senior_approver = senior_approver
        if senior_threshold is not None:
            self.senior_threshold = float(senior_threshold)
        if escalation_user is not None:
            self.escalation_user = escalation_user
        if outcomes is not None:
            self.outcomes = outcomes if isinstance(outcomes, str) else ",".join(outcomes)
        if due_days is not None:
            self.due_days = float(due_days)
        return {"approvers": self.approvers, "senior_approver": self.senior_approver,
                "senior_threshold": self.senior_threshold, "escalation_user": self.escalation_user,
                "outcomes": self.outcomes.split(","), "due_days": self.due_days,
                "events": {"work_item": self.work_item_event_id, "element": self.element_event_id,
                           "workflow": self.workflow_event_id}}

    def _work_item_event(self, item: dict[str, Any], initiating_user: str) -> dict[str, Any]:
        user = self.state.get("SystemUsers", {"UserID": item["UserId"]}) or {}
        fields = contracts.workflow_work_item(item, approver_email=user.get("Email") or user.get("Alias") or "",
                                              document=DOCUMENT_NAMES.get(item["DocumentType"], item["DocumentType"]),
                                              instruction=INSTRUCTION)
        return self._raise(self.work_item_event_id, fields, item["CompanyId"], initiating_user)

    def submit_to_workflow(self, legal_entity: str = "usmf", header_reference: str | None = None,
                           approver: str | None = None, submitter: str | None = None,
                           outcomes: list[str] | None = None) -> list[dict[str, Any]]:
        """Submit a draft vendor invoice: a Pending work item for `approver` (default: `default_approver`) and
        its `…_WorkItem` event."""
        inv = self._pick_or_make("VendorInvoiceHeaders", legal_entity, header_reference, "HeaderReference",
                                 lambda r: r["VendorInvoiceReviewStatus"] == "Draft", "draft vendor invoice",
                                 self.register_vendor_invoice)
        le = inv["dataAreaId"]
        if inv["VendorInvoiceReviewStatus"] == "InReview" and any(
                wf.is_pending(r) and r["DocumentId"] == inv["HeaderReference"] and r["CompanyId"] == le
                for r in self.state.rows(wf.SET)):
            raise ScenarioError(f"vendor invoice {inv['HeaderReference']} is already in workflow")
        approver_row = self._user(approver or self.default_approver(le, float(inv["ImportedAmount"] or 0.0)),
                                  "approver")
        now = self.now().replace(microsecond=0)
        self.state.update("VendorInvoiceHeaders", inv, VendorInvoiceReviewStatus="InReview")
        item = self.state.insert(wf.SET, {
            "Id": self._new_id(), "Status": wf.PENDING,
            "Subject": f"Approve vendor invoice {inv['InvoiceNumber']} ({inv['ImportedAmount']:,.2f} "
                       f"{inv['Currency']})",
            "Description": f"Vendor invoice {inv['HeaderReference']} from {inv['VendorName']} needs approval.",
            "DueDateTime": now + dt.timedelta(days=self.due_days), "CreatedDateTime": now,
            "UserId": approver_row["UserID"], "CompanyId": le, "DocumentType": "VendorInvoice",
            "DocumentId": inv["HeaderReference"], "Outcomes": ",".join(outcomes) if outcomes else self.outcomes,
            "CompletedBy": "", "Outcome": "", "Comment": "", "CompletedDateTime": None, "ReassignedTo": "",
            "ReassignedWorkItemId": "", "PreviousWorkItemId": "", "IsEscalated": "No"})
        return [self._work_item_event(item, submitter or AP_CLERKS.get(le, "lynne"))]

    def delegate_work_item(self, work_item_id: str, to_user: str, by_user: str | None = None,
                           comment: str = "") -> list[dict[str, Any]]:
        """The assignee (or `by_user`) delegates in F&O: old item Delegated, a new Pending item for `to_user`,
        whose `…_WorkItem` event is raised."""
        item = self._work_item(work_item_id)
        by = by_user or item["UserId"]
        return self._reassign(item, self._user(to_user, "delegate")["UserID"], by, comment, escalated=False,
                              due=None)

    def escalate_work_item(self, work_item_id: str, to_user: str | None = None,
                           comment: str = "") -> list[dict[str, Any]]:
        """The workflow escalates (time limit passed, or on demand): like a delegation, done by the workflow
        execution account, to `to_user` (default: the escalation user), new due date, IsEscalated=Yes."""
        item = self._work_item(work_item_id)
        target = to_user or self.escalation_user
        if not to_user and wf.is_assignee(item, target):
            raise ScenarioError(f"work item {work_item_id} is already with the escalation user {target}: give to_user")
        due = self.now().replace(microsecond=0) + dt.timedelta(days=self.due_days)
        if not comment:
            comment = "Escalated" + (f": not completed by {item['DueDateTime']:%Y-%m-%d %H:%M} UTC"
                                     if item["DueDateTime"] else "")
        return self._reassign(item, self._user(target, "escalation user")["UserID"], wf.WORKFLOW_EXECUTION_USER,
                              comment, escalated=True, due=due)

    def escalate_overdue(self, legal_entity: str | None = None) -> list[dict[str, Any]]:
        """The workflow's batch run: escalate every pending item whose DueDateTime has passed (`now`)."""
        now = self.now()
        overdue = [r for r in self.state.rows(wf.SET) if wf.is_pending(r) and r["DueDateTime"]
                   and r["DueDateTime"] < now and not wf.is_assignee(r, self.escalation_user)
                   and (legal_entity is None or (r["CompanyId"] or "").lower() == legal_entity.lower())]
        events: list[dict[str, Any]] = []
        for item in sorted(overdue, key=lambda r: r["DueDateTime"]):
            events += self.escalate_work_item(item["Id"])
        return events

    def _reassign(self, item: dict[str, Any], to_user: str, by_user: str, comment: str, *, escalated: bool,
                  due: dt.datetime | None) -> list[dict[str, Any]]:
        try:
            new = wf.reassign(self.state, item, to_user=to_user, by_user=by_user, new_id=self._new_id(),
                              now=self.now().replace(microsecond=0), due=due, comment=comment, escalated=escalated)
        except wf.WorkItemError as exc:
            raise ScenarioError(exc.message) from None
        return [self._work_item_event(new, by_user)]

    def recall_work_item(self, work_item_id: str, by_user: str | None = None) -> list[dict[str, Any]]:
        """The submitter recalls the document: its pending items become Recalled (validate -> false, complete ->
        400), the invoice goes back to Draft, and the workflow type event says WorkflowStatus "Canceled"."""
        item = self._work_item(work_item_id)
        by = by_user or self._submitter(item)
        try:
            wf.recall(self.state, item, by_user=by, now=self.now().replace(microsecond=0))
        except wf.WorkItemError as exc:
            raise ScenarioError(exc.message) from None
        status = self._set_invoice(item, VendorInvoiceReviewStatus="Draft")
        fields = contracts.workflow_status_changed(item, status="Canceled", changed_by=by,
                                                   document=self._document_name(item), document_status=status)
        return [self._raise(self.workflow_event_id, fields, item["CompanyId"], by)]

    def complete_in_fno(self, work_item_id: str, outcome: str, comment: str = "",
                        by_user: str | None = None) -> list[dict[str, Any]]:
        """A user decides inside F&O, not through the connector (not counted in stats.complete_calls): the same
        transition and events as the OData `complete` action. `by_user` defaults to the assignee."""
        item = self._work_item(work_item_id)
        by = self._user(by_user or item["UserId"], "by_user")["UserID"]
        try:
            wf.complete(self.state, item, by_user=by, outcome=outcome, comment=comment,
                        now=self.now().replace(microsecond=0))
        except wf.WorkItemError as exc:
            raise ScenarioError(exc.message) from None
        return self.on_work_item_completed(item, None)

    def on_work_item_completed(self, item: dict[str, Any], caller: Any) -> list[dict[str, Any]]:
        """After `complete` (OData action or complete_in_fno): the document follows the decision and F&O raises
        the element event (step completed), then, if the decision ends the workflow, the workflow type event."""
        outcome, by = item["Outcome"], item["CompletedBy"]
        if outcome == "Approve":
            status = self._set_invoice(item, VendorInvoiceReviewStatus="Approved", IsApproved="Yes", ApprovedBy=by)
        elif outcome == "Reject":
            status = self._set_invoice(item, VendorInvoiceReviewStatus="Rejected")
        else:  # RequestChange (and anything custom): back to the submitter as a draft; the workflow goes on
            status = self._set_invoice(item, VendorInvoiceReviewStatus="Draft")
        document = self._document_name(item)
        events = [self._raise(self.element_event_id, contracts.workflow_element_completed(
            item, element=self.workflow[2], document=document), item["CompanyId"], by)]
        if outcome in ("Approve", "Reject"):
            events.append(self._raise(self.workflow_event_id, contracts.workflow_status_changed(
                item, status="Completed", changed_by=by, document=document, document_status=status),
                item["CompanyId"], by))
        return events

    def _document_name(self, item: dict[str, Any]) -> str:
        return DOCUMENT_NAMES.get(item["DocumentType"], item["DocumentType"] or "")

    def _set_invoice(self, item: dict[str, Any], **changes: Any) -> str | None:
        """Update the work item's vendor invoice (if it still exists); answers its review status."""
        key = {"dataAreaId": item["CompanyId"], "HeaderReference": item["DocumentId"]}
        if item["DocumentType"] == "VendorInvoice" and self.state.get("VendorInvoiceHeaders", key):
            return self.state.update("VendorInvoiceHeaders", key, **changes)["VendorInvoiceReviewStatus"]
        return None

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
              "submit_to_workflow", "recall_work_item", "delegate_work_item", "escalate_work_item",
              "escalate_overdue", "complete_in_fno", "configure_workflow", "burst", "month_end")


async def _operation(request: web.Request) -> web.Response:
    op = request.match_info["op"]
    if op not in OPERATIONS:
        raise web.HTTPNotFound(text=f"unknown operation; one of {', '.join(OPERATIONS)}")
    args = await json_object(request)  # keyword arguments of the operation
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
    if isinstance(events, dict):  # register_vendor_invoice, configure_workflow: a record, no event
        return web.json_response({"events": [], "record": _jsonable(events)})
    return web.json_response({"events": events})


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


def add_scenario_routes(app: web.Application, scenario: Scenario) -> None:
    app[SCENARIO] = scenario
    app.router.add_post("/_sandbox/scenario/{op}", _operation)
