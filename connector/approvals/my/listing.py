"""The rows of an approver's "my approvals" list: their pending approvals from the store, re-checked in F&O when the
last check is older than the reconciler's interval, described (document, vendor, amount, waiting, channel card).

Who sees what: the store's `list_approvals_for(object id)`, the same assignee object id the press path checks, and
status "pending" only: a delegated item is "superseded" and its successor belongs to the new assignee, so neither
the old nor another user's item can appear. Order: oldest first, by (created_at, environment, work item id), which
is also the keyset the pages continue from, so an item decided between two pages never shifts another off a page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from connector.approvals.config import ApprovalSettings
from connector.approvals.fo import FoEnvironment
from connector.approvals.my.deeplink import best_card, message_link, team_of
from connector.store import Approval, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentLookup:
    """Where a work item's document keeps its vendor and amount (names from DEVELOPERS.md's entity contract)."""

    entity: str
    key: str  # the key field the work item's DocumentId fills (with dataAreaId = CompanyId)
    vendor: tuple[str, ...]
    amount: str | None
    currency: str | None


# WorkflowWorkItems.DocumentType -> lookup. The work item itself names neither vendor nor amount.
DOCUMENTS: dict[str, DocumentLookup] = {
    "VendorInvoice": DocumentLookup("VendorInvoiceHeaders", "HeaderReference", ("VendorName", "VendorAccount"),
                                    "ImportedAmount", "Currency"),
    "Vendor invoice": DocumentLookup("VendorInvoiceHeaders", "HeaderReference", ("VendorName", "VendorAccount"),
                                     "ImportedAmount", "Currency"),
    "PurchTable": DocumentLookup("PurchaseOrderHeadersV2", "PurchaseOrderNumber", ("OrderVendorAccountNumber",),
                                 None, "CurrencyCode"),
    "Purchase order": DocumentLookup("PurchaseOrderHeadersV2", "PurchaseOrderNumber", ("OrderVendorAccountNumber",),
                                     None, "CurrencyCode"),
}
_DOCUMENT_NAMES = {"VendorInvoice": "Vendor invoice", "PurchTable": "Purchase order"}


@dataclass(frozen=True)
class Row:
    approval: Approval
    document: str
    subject: str
    legal_entity: str | None
    vendor: str | None
    amount: str | None
    waiting: str
    event_key: str | None  # the F&O EventId the channel card's buttons carry
    card_url: str | None
    unchecked: bool = False  # the F&O re-check failed: shown, the decide stage validates before completing


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int  # pending items for this user (after the re-checks made for this page)
    before: int  # how many of them come before this page
    more: bool  # items after the last row
    environments: list[str]


def cursor_of(approval: Approval) -> str:
    # repr() round-trips a float exactly: a rounded time could repeat or skip the row at a page boundary
    return f"{float(approval.created_at)!r}|{approval.environment}|{approval.work_item_id}"


def _key(approval: Approval) -> tuple[float, str, str]:
    return approval.created_at, approval.environment, approval.work_item_id


def parse_cursor(cursor: Any) -> tuple[float, str, str] | None:
    """The key a page starts after; None (first page) for an empty or malformed cursor."""
    if not isinstance(cursor, str) or not cursor:
        return None
    parts = cursor.split("|", 2)
    if len(parts) != 3:
        return None
    try:
        return float(parts[0]), parts[1], parts[2]
    except ValueError:
        return None


def waited(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{max(1, int(seconds // 60))} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


def money(amount: Any, currency: Any) -> str | None:
    if amount in (None, "") or isinstance(amount, bool):
        return None
    try:
        text = f"{float(amount):,.2f}"
    except (TypeError, ValueError):
        text = str(amount)
    return f"{text} {currency}".strip() if currency else text


class Lister:
    """Builds pages of rows.

    Args:
        reconciler: the approvals' Reconciler (`check(approval, now)` re-validates one item in F&O and corrects the
            store and every card copy when F&O moved on).
        fo: environment name -> FoEnvironment (document lookups for vendor and amount).
    """

    def __init__(self, store: Store, settings: ApprovalSettings, *, reconciler: Any, fo: dict[str, FoEnvironment],
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.reconciler = reconciler
        self.fo = fo
        self.clock = clock
        self._facts: dict[tuple[str, str, str, str], tuple[str | None, str | None]] = {}

    async def pending(self, object_id: str) -> list[Approval]:
        return await self.store.list_approvals_for(object_id.lower(), status="pending",
                                                   limit=self.settings.my_list.max_items)

    async def page(self, object_id: str, *, after: Any = None, size: int | None = None) -> Page:
        oid = object_id.lower()
        size = size or self.settings.my_list.page_size
        start = parse_cursor(after)
        items = await self.pending(oid)
        total = len(items)
        before = sum(1 for a in items if start is not None and _key(a) <= start)
        rest = [a for a in items if start is None or _key(a) > start]
        rows: list[Row] = []
        now = self.clock()
        taken = 0
        for approval in rest:
            if len(rows) == size:
                break
            taken += 1
            fresh, unchecked = await self._recheck(approval, oid, now)
            if fresh is None:
                total -= 1  # decided or moved on in F&O meanwhile: not offered
                continue
            rows.append(await self._row(fresh, now, unchecked))
        envs = sorted({a.environment for a in items})
        return Page(rows, total, before, more=len(rest) > taken, environments=envs)

    async def _recheck(self, approval: Approval, oid: str, now: float) -> tuple[Approval | None, bool]:
        """(the approval if the caller may still decide it, whether F&O could not be asked)."""
        if approval.next_check_at > now or self.reconciler is None:
            return approval, False
        try:
            # a user is waiting for this answer: the check is worth making now, whatever the background budget
            self.reconciler.budget.tokens = max(self.reconciler.budget.tokens, 2)
            await self.reconciler.check(approval, now)
        except Exception as exc:  # noqa: BLE001 - F&O down or throttled: show it, the decide stage validates again
            log.info("my approvals: %s could not be re-checked: %s", approval.work_item_id, exc)
            return approval, True
        current = await self.store.get_approval(approval.environment, approval.work_item_id)
        if current is None or current.status != "pending" or (current.assignee_object_id or "").lower() != oid:
            return None, False
        return current, False

    async def _row(self, approval: Approval, now: float, unchecked: bool) -> Row:
        record = await self.store.get_event(approval.event_id)
        payload = record.payload if record is not None else {}
        enrichment = (record.data.get("enrichment") or {}).get("record") or {} if record is not None else {}
        work_item = enrichment.get("workItem") or {}
        doc_type = str(work_item.get("DocumentType") or "")
        doc_name = (payload.get("WorkflowDocument") or _DOCUMENT_NAMES.get(doc_type, doc_type) or "Work item")
        doc_id = str(payload.get("WorkflowDocumentId") or work_item.get("DocumentId") or "")
        company = str(work_item.get("CompanyId") or payload.get("LegalEntity") or
                      (record.legal_entity if record is not None else "") or "")
        vendor, amount = self._from_record(payload, enrichment)
        if (vendor is None or amount is None) and doc_id:
            got_vendor, got_amount = await self._document_facts(approval.environment, company, doc_type, doc_id)
            vendor, amount = vendor or got_vendor, amount or got_amount
        cards = await self.store.cards_for_event(approval.event_id)
        card = best_card(cards)
        link = None
        if card is not None:
            link = message_link(card, team_of(card, await self.store.list_installs(active_only=True)))
        return Row(approval=approval, document=f"{doc_name} {doc_id}".strip(),
                   subject=str(approval.subject or payload.get("WorkflowWorkItemSubject") or ""),
                   legal_entity=company.upper() or None, vendor=vendor, amount=amount,
                   waiting=waited(now - (approval.created_at or now)), event_key=_str(payload.get("EventId")),
                   card_url=link, unchecked=unchecked)

    @staticmethod
    def _from_record(payload: dict[str, Any], enrichment: dict[str, Any]) -> tuple[str | None, str | None]:
        """Vendor and amount when the event or an extended enrichment plan already has them."""
        vendor_row = enrichment.get("vendor") or {}
        invoice = enrichment.get("pendingInvoice") or enrichment.get("invoice") or {}
        vendor = (vendor_row.get("VendorOrganizationName") or invoice.get("VendorName") or payload.get("VendorAccount")
                  or payload.get("InvoiceAccount"))
        amount = money(payload.get("TransactionCurrencyAmount"), payload.get("TransactionCurrencyCode"))
        if amount is None and invoice:
            amount = money(invoice.get("ImportedAmount", invoice.get("InvoiceAmount")), invoice.get("Currency"))
        return (str(vendor) if vendor else None), amount

    async def _document_facts(self, env: str, company: str, doc_type: str, doc_id: str) -> tuple[str | None,
                                                                                                  str | None]:
        lookup = DOCUMENTS.get(doc_type)
        fo = self.fo.get(env)
        if lookup is None or fo is None:
            return None, None
        key = (env, company.lower(), doc_type, doc_id)
        if key in self._facts:
            return self._facts[key]
        try:
            row = await fo.odata.get(lookup.entity, company=company or None,
                                     key={"dataAreaId": company, lookup.key: doc_id})
        except Exception as exc:  # noqa: BLE001 - a list row without vendor/amount beats no list
            log.info("my approvals: %s %s not read: %s", lookup.entity, doc_id, exc)
            return None, None
        row = row or {}
        vendor = next((str(row[f]) for f in lookup.vendor if row.get(f)), None)
        amount = money(row.get(lookup.amount), row.get(lookup.currency or "")) if lookup.amount else None
        if len(self._facts) > 2000:  # a bounded per-process cache: documents do not change vendor
            self._facts.clear()
        self._facts[key] = (vendor, amount)
        return vendor, amount


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
