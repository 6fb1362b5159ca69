"""F&O's data, in memory: entity types, rows, the "Microsoft Entra ID applications" table.

Rows hold Python values (str, int, float, date, datetime, bool, enum symbols as str); turning them into OData JSON
is `to_odata_row`. This module knows nothing about HTTP, auth or queries.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

NAMESPACE = "Microsoft.Dynamics.DataEntities"
EMPTY_DATE = "1900-01-01T12:00:00Z"  # how F&O writes an empty date or datetime

# Enum types and their symbols (what F&O returns as strings and accepts as `Namespace.Enum'Symbol'` literals).
ENUMS: dict[str, tuple[str, ...]] = {
    "NoYes": ("No", "Yes"),
    "PurchStatus": ("None", "Backorder", "Received", "Invoiced", "Canceled"),
    "VersioningDocumentState": ("Draft", "InReview", "Rejected", "Approved", "InExternalReview", "Finalized",
                                "Confirmed"),
    "CustVendorBlocked": ("No", "Invoice", "All", "Payment", "Requisition", "Never"),
    "VendInvoiceRequestStatus": ("Draft", "InReview", "Approved", "Rejected"),  # (ours)
    "WorkflowWorkItemStatus": ("Pending", "Delegated", "Completed", "Failed", "Recalled"),
    "UserAccountType": ("ClaimsUser", "ADUser", "ADGroup"),
}

SCALARS = ("str", "int", "dec", "date", "datetime", "bool")
EDM = {"str": "Edm.String", "int": "Edm.Int32", "dec": "Edm.Decimal", "date": "Edm.DateTimeOffset",
       "datetime": "Edm.DateTimeOffset", "bool": "Edm.Boolean"}


@dataclass(frozen=True)
class Navigation:
    """A navigation property: the related rows of `target` (a set name) whose `on` fields equal this row's."""

    target: str
    on: tuple[tuple[str, str], ...]  # (this type's field, the target's field)
    many: bool


@dataclass(frozen=True)
class EntityType:
    set_name: str  # the entity set (collection) name, e.g. PurchaseOrderHeadersV2
    type_name: str  # the entity type, e.g. PurchaseOrderHeaderV2
    keys: tuple[str, ...]
    kinds: dict[str, str]  # field -> "str" | "int" | ... | an enum type name, in output order (dataAreaId first)
    navs: dict[str, Navigation] = field(default_factory=dict)  # navigation property name -> what it reaches

    @property
    def company_specific(self) -> bool:
        return "dataAreaId" in self.kinds

    @property
    def qualified_name(self) -> str:
        return f"{NAMESPACE}.{self.type_name}"

    def is_enum(self, name: str) -> bool:
        return self.kinds.get(name) in ENUMS


def _t(set_name: str, type_name: str, keys: str, fields: str,
       navs: dict[str, Navigation] | None = None) -> EntityType:
    kinds: dict[str, str] = {}
    for spec in (keys + " " + fields).split():
        name, _, kind = spec.partition(":")
        kinds[name] = kind or "str"
    key_names = tuple(spec.partition(":")[0] for spec in keys.split())
    if "dataAreaId" in kinds:  # F&O writes dataAreaId first
        kinds = {"dataAreaId": "str", **{k: v for k, v in kinds.items() if k != "dataAreaId"}}
    return EntityType(set_name, type_name, key_names, kinds, dict(navs or {}))


POSTED_INVOICE_SET = "PostedVendorInvoiceHeaders"  # (ours) the real posted-invoice entity is unconfirmed

ENTITY_TYPES: tuple[EntityType, ...] = (
    _t("PurchaseOrderHeadersV2", "PurchaseOrderHeaderV2", "dataAreaId PurchaseOrderNumber",
       "PurchaseOrderName OrderVendorAccountNumber InvoiceVendorAccountNumber PurchaseOrderStatus:PurchStatus "
       "DocumentApprovalStatus:VersioningDocumentState CurrencyCode AccountingDate:date "
       "RequestedDeliveryDate:date OrdererPersonnelNumber BuyerGroupId",
       # The navigation names are the connector's unconfirmed defaults (dynamics/plans.py); `remove_fields` on the
       # admin schema endpoint removes one to play an environment without it.
       {"PurchaseOrderLines": Navigation(
           "PurchaseOrderLinesV2", (("dataAreaId", "dataAreaId"), ("PurchaseOrderNumber", "PurchaseOrderNumber")),
           True),
        "Vendor": Navigation(
           "VendorsV2", (("dataAreaId", "dataAreaId"), ("OrderVendorAccountNumber", "VendorAccountNumber")), False)}),
    _t("PurchaseOrderLinesV2", "PurchaseOrderLineV2", "dataAreaId PurchaseOrderNumber LineNumber:int",
       "ItemNumber ProcurementCategoryName LineDescription OrderedPurchaseQuantity:dec PurchaseUnitSymbol "
       "PurchasePrice:dec LineAmount:dec CurrencyCode RequestedDeliveryDate:date"),
    _t("VendorsV2", "VendorV2", "dataAreaId VendorAccountNumber",
       "VendorOrganizationName VendorGroupId PrimaryEmailAddress CurrencyCode DefaultPaymentTermsName "
       "OnHoldStatus:CustVendorBlocked InvoiceVendorAccountNumber"),
    _t("VendorInvoiceHeaders", "VendorInvoiceHeader", "dataAreaId HeaderReference",
       "InvoiceNumber VendorAccount InvoiceAccount VendorName Currency InvoiceDate:date DueDate:date "
       "PurchaseOrderNumber ImportedAmount:dec InvoiceDescription DocumentNumber "
       "VendorInvoiceReviewStatus:VendInvoiceRequestStatus IsApproved:NoYes ApprovedBy"),
    _t("VendorInvoiceLines", "VendorInvoiceLine", "dataAreaId HeaderReference InvoiceLineNumber:int",
       "ItemNumber ProcurementCategoryName ReceiveNow:dec UnitPrice:dec NetAmount:dec Currency PurchaseOrder "
       "PurchLineNumber:int VendorAccount InvoiceAccount"),
    _t(POSTED_INVOICE_SET, "PostedVendorInvoiceHeader", "dataAreaId InvoiceNumber VendorAccount",
       "InvoiceDate:date DueDate:date PurchaseOrderNumber InvoiceAmount:dec SalesTaxAmount:dec Currency Voucher "
       "Description"),
    _t("PostedVendorInvoiceLines", "PostedVendorInvoiceLine", "dataAreaId InvoiceNumber VendorAccount LineNumber:int",
       "ItemNumber LineDescription Quantity:dec UnitPrice:dec LineAmount:dec Currency"),
    _t("VendorPaymentJournalHeaders", "VendorPaymentJournalHeader", "dataAreaId JournalBatchNumber",
       "JournalName Description IsPosted:NoYes PostedDateTime:datetime"),
    _t("VendorPaymentJournalLines", "VendorPaymentJournalLine", "dataAreaId JournalBatchNumber LineNumber:int",
       "AccountDisplayValue CreditAmount:dec DebitAmount:dec CurrencyCode TransactionDate:date PaymentReference "
       "MethodOfPayment TransactionText Voucher"),
    _t("WorkflowWorkItems", "WorkflowWorkItem", "Id",
       "Status:WorkflowWorkItemStatus Subject Description DueDateTime:datetime CreatedDateTime:datetime UserId "
       "CompanyId DocumentType DocumentId Outcomes CompletedBy Outcome Comment CompletedDateTime:datetime "
       "ReassignedTo ReassignedWorkItemId PreviousWorkItemId IsEscalated:NoYes"),  # (ours) from Outcomes on
    _t("SystemUsers", "SystemUser", "UserID",
       "UserName Alias Email NetworkDomain Company Enabled:bool AccountType:UserAccountType"),
    _t("CustomersV3", "CustomerV3", "dataAreaId CustomerAccount",
       "OrganizationName CustomerGroupId SalesCurrencyCode PrimaryContactEmail"),
    _t("MainAccounts", "MainAccount", "ChartOfAccounts MainAccountId", "Name Type"),
    # the companies (dataAreaId values); F&O's LegalEntityEntity, public collection LegalEntities
    _t("LegalEntities", "LegalEntity", "LegalEntityId", "Name"),
    _t("LedgerJournalHeaders", "LedgerJournalHeader", "dataAreaId JournalBatchNumber",
       "JournalName Description IsPosted:NoYes"),
    _t("LedgerJournalLines", "LedgerJournalLine", "dataAreaId JournalBatchNumber LineNumber:int",
       "AccountDisplayValue DebitAmount:dec CreditAmount:dec CurrencyCode TransactionDate:date Text"),
)


@dataclass
class EntraApplication:
    """A row of System administration > Setup > Microsoft Entra ID applications."""

    client_id: str
    user_id: str  # the F&O user the app's calls run as
    name: str = ""


@dataclass
class _Stored:
    row: dict[str, Any]
    rec_id: int
    version: int = 1


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value  # F&O's SQL collation is case-insensitive


@dataclass
class FnoState:
    """All entity data plus the Entra-applications table. Mutate through the methods so etags stay right."""

    types: dict[str, EntityType] = field(default_factory=lambda: {t.set_name: t for t in ENTITY_TYPES})
    apps: dict[str, EntraApplication] = field(default_factory=dict)
    object_ids: dict[str, str] = field(default_factory=dict)  # Entra object id -> UserID (F&O's telemetry id link)
    _tables: dict[str, dict[tuple, _Stored]] = field(default_factory=dict)
    _next_rec_id: int = 5637144576

    def entity_type(self, set_name: str) -> EntityType | None:
        return self.types.get(set_name)

    def _table(self, set_name: str) -> dict[tuple, _Stored]:
        if set_name not in self.types:
            raise KeyError(f"unknown entity set {set_name}")
        return self._tables.setdefault(set_name, {})

    def key_of(self, set_name: str, values: dict[str, Any]) -> tuple:
        return tuple(_norm(values[k]) for k in self.types[set_name].keys)

    def insert(self, set_name: str, row: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a row; missing fields become None; unknown fields are an error."""
        et = self.types[set_name]
        unknown = set(row) - set(et.kinds)
        if unknown:
            raise KeyError(f"{set_name} has no field(s) {sorted(unknown)}")
        full = {name: row.get(name) for name in et.kinds}
        self._next_rec_id += 1
        self._table(set_name)[self.key_of(set_name, full)] = _Stored(full, self._next_rec_id)
        return full

    def get(self, set_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        stored = self._table(set_name).get(self.key_of(set_name, key))
        return stored.row if stored else None

    def update(self, set_name: str, key: dict[str, Any], **changes: Any) -> dict[str, Any]:
        stored = self._table(set_name)[self.key_of(set_name, key)]
        unknown = set(changes) - set(self.types[set_name].kinds)
        if unknown:
            raise KeyError(f"{set_name} has no field(s) {sorted(unknown)}")
        stored.row.update(changes)
        stored.version += 1
        return stored.row

    def delete(self, set_name: str, key: dict[str, Any]) -> bool:
        return self._table(set_name).pop(self.key_of(set_name, key), None) is not None

    def rows(self, set_name: str) -> list[dict[str, Any]]:
        return [s.row for s in self._table(set_name).values()]

    def etag(self, set_name: str, row: dict[str, Any]) -> str:
        stored = self._table(set_name).get(self.key_of(set_name, row))
        token = f"'{stored.version - 1 if stored else 0},{stored.rec_id if stored else 0}'"
        return 'W/"' + base64.b64encode(token.encode()).decode() + '"'

    def counts(self) -> dict[str, int]:
        return {name: len(self._tables.get(name, {})) for name in self.types}

    # -- Microsoft Entra ID applications ------------------------------------------------------------------
    def register_app(self, client_id: str, user_id: str, name: str = "") -> EntraApplication:
        app = EntraApplication(client_id, user_id, name)
        self.apps[client_id.lower()] = app
        return app

    def app_user(self, client_id: str) -> dict[str, Any] | None:
        """The SystemUsers row an app-only caller runs as, or None if the app is not registered."""
        app = self.apps.get((client_id or "").lower())
        return self.get("SystemUsers", {"UserID": app.user_id}) if app else None

    def user_by_alias(self, upn: str) -> dict[str, Any] | None:
        upn = (upn or "").lower()
        return next((u for u in self.rows("SystemUsers") if (u["Alias"] or "").lower() == upn), None)

    def delegated_user(self, upn: str | None, object_id: str | None) -> dict[str, Any] | None:
        """The SystemUsers row for a delegated (user) token: by UPN (Alias), else by Entra object id."""
        user = self.user_by_alias(upn or "") if upn else None
        if user is None and object_id and object_id.lower() in self.object_ids:
            user = self.get("SystemUsers", {"UserID": self.object_ids[object_id.lower()]})
        return user


def odata_value(kind: str, value: Any) -> Any:
    """One field as F&O writes it in JSON."""
    if kind == "date":
        return value.strftime("%Y-%m-%dT12:00:00Z") if value else EMPTY_DATE
    if kind == "datetime":
        if not value:
            return EMPTY_DATE
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "dec":
        return float(value) if value is not None else 0.0
    return value


def to_odata_row(et: EntityType, row: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
    names = select or list(et.kinds)
    return {name: odata_value(et.kinds[name], row.get(name)) for name in et.kinds if name in names}
