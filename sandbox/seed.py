"""Seed data for the F&O stand-in: "Contoso Distribution", a mid-sized distributor in usmf, demf and gbsi.

Deterministic: the same `seed` and `today` give the same rows. Field names follow DEVELOPERS.md "Entity contract".
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

from sandbox.fno.state import FnoState
from sandbox.people import LEGAL_ENTITIES, PEOPLE, TENANT_DOMAIN

SERVICE_USER_ID = "svc-mlconnector"  # the F&O user the connector's app registration runs as
APPROVERS = {"usmf": "adele", "demf": "jurgen", "gbsi": "isaiah"}  # AP approvers (work items are assigned here)
BUYERS = {"usmf": "alex", "demf": "johanna", "gbsi": "grady"}
AP_CLERKS = {"usmf": "lynne", "demf": "jurgen", "gbsi": "isaiah"}
TREASURY = {"usmf": "nestor", "demf": "johanna", "gbsi": "isaiah"}
TAX_RATE = {"usmf": 0.0, "demf": 0.19, "gbsi": 0.20}
WORK_ITEM_OUTCOMES = "Approve,Reject,RequestChange"  # complete's outcomes; delegation is not an outcome
SENIOR_APPROVER = "megan"  # the CFO approves vendor invoices above the threshold (in the invoice currency)
SENIOR_APPROVAL_THRESHOLD = 10_000.0
ESCALATION_USER = "megan"  # where escalations go (the step's escalation path)

VENDOR_NAMES = {
    "usmf": ["Fabrikam Supplies", "Northwind Traders", "Tailspin Freight", "Litware Components",
             "Adventure Works Cycles", "Proseware Packaging", "Wide World Importers", "Coho Winery Supply",
             "Lucerne Publishing", "Trey Research Labs", "Blue Yonder Cargo", "Alpine Ski House Outfitters",
             "Woodgrove Industrial", "Margie's Travel Services", "Contoso Pharmaceuticals"],
    "demf": ["Müller Logistik GmbH", "Bäckerei Schäfer KG", "Große Verpackungen AG",
             "Schwarz & Söhne Elektrotechnik",
             "Köhler Maschinenbau GmbH", "Weiß Büroausstattung", "Fischer Metallwaren GmbH", "Hofmann Spedition",
             "Zimmermann Holzbau", "Becker Chemie AG", "Wagner Kühltechnik", "Krüger Druckerei",
             "Lange Industrieservice", "Schröder Lebensmittel GmbH", "Neumann Elektronik"],
    "gbsi": ["Brightwater Packaging Ltd", "Thames Valley Freight", "Harrow & Finch Stationery",
             "Northern Lights Electrical plc", "Pennine Steel Ltd", "Cotswold Catering Supplies", "O'Brien Logistics",
             "Highland Timber Co", "Kensington Office Furniture", "Mersey Chemicals Ltd", "Severn Trading",
             "Windsor Print Works", "Clyde Marine Parts", "Bristol Hydraulics", "Yorkshire Tools Ltd"],
}
VENDOR_PREFIX = {"usmf": "US-", "demf": "DE-", "gbsi": "GB-"}
PAYMENT_TERMS = ["Net30", "Net45", "Net10", "COD", "2%10Net30"]
# (item number, description, procurement category, unit, min price, max price)
ITEMS = [
    ("A0001", "Pallet wrap film 500 mm", "Packaging", "ea", 12.5, 19.0),
    ("A0002", "Corrugated box 60x40x40", "Packaging", "ea", 0.85, 1.6),
    ("A0003", "Euro pallet 1200x800", "Warehouse", "ea", 9.0, 16.0),
    ("B0101", "Forklift battery 48V", "Equipment", "ea", 2400.0, 3800.0),
    ("B0102", "Hand pallet truck", "Equipment", "ea", 320.0, 560.0),
    ("C0201", "Barcode labels 100x150 (roll)", "Office", "ea", 6.0, 11.0),
    ("C0202", "Thermal printer ribbon", "Office", "ea", 14.0, 25.0),
    ("D0301", "Safety gloves (pair)", "Safety", "pr", 2.4, 4.9),
    ("D0302", "High-visibility vest", "Safety", "ea", 3.5, 7.0),
    ("E0401", "Diesel fuel", "Fleet", "l", 1.1, 1.9),
    ("E0402", "Truck tyre 315/70 R22.5", "Fleet", "ea", 280.0, 430.0),
    ("F0501", "Shelving upright 2.5 m", "Warehouse", "ea", 48.0, 85.0),
    ("F0502", "Shelf beam 2.7 m", "Warehouse", "ea", 22.0, 39.0),
    ("G0601", "Freight charge (per shipment)", "Services", "ea", 150.0, 900.0),
    ("G0602", "Customs brokerage", "Services", "ea", 75.0, 240.0),
]


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


def seed_state(state: FnoState | None = None, *, seed: int = 20261126, today: dt.date | None = None,
               pos_per_entity: int = 40, vendors_per_entity: int = 15) -> FnoState:
    """Fill (a new) FnoState with Contoso Distribution's data. Returns the state."""
    state = state or FnoState()
    rng = random.Random(seed)
    today = today or dt.date(2026, 11, 26)
    _users(state)
    _legal_entities(state)
    for le, currency in LEGAL_ENTITIES.items():
        vendors = _vendors(state, rng, le, currency, vendors_per_entity)
        pos = _purchase_orders(state, rng, le, currency, vendors, today, pos_per_entity)
        _invoices(state, rng, le, currency, pos, today)
        _payments(state, rng, le, currency, today)
        _customers_and_ledger(state, rng, le, currency, today)
    _main_accounts(state)
    return state


COMPANY_NAMES = {"dat": "Company accounts data", "usmf": "Contoso Distribution USA",
                 "demf": "Contoso Distribution Deutschland", "gbsi": "Contoso Distribution UK"}


def _legal_entities(state: FnoState) -> None:
    for le in ["dat", *LEGAL_ENTITIES]:  # "dat" exists in every F&O environment
        state.insert("LegalEntities", {"LegalEntityId": le.upper(), "Name": COMPANY_NAMES.get(le, le)})


def _users(state: FnoState) -> None:
    for p in PEOPLE:
        state.insert("SystemUsers", {"UserID": p.fo_user_id, "UserName": p.name, "Alias": p.upn, "Email": p.upn,
                                     "NetworkDomain": "https://sts.windows.net/", "Company": p.company,
                                     "Enabled": True, "AccountType": "ClaimsUser"})
        state.object_ids[p.object_id.lower()] = p.fo_user_id
    state.insert("SystemUsers", {"UserID": SERVICE_USER_ID, "UserName": "ML connector service",
                                 "Alias": f"{SERVICE_USER_ID}@{TENANT_DOMAIN}", "Email": "",
                                 "NetworkDomain": "NA", "Company": "usmf", "Enabled": True,
                                 "AccountType": "ClaimsUser"})
    state.insert("SystemUsers", {"UserID": "Admin", "UserName": "Admin", "Alias": f"admin@{TENANT_DOMAIN}",
                                 "Email": f"admin@{TENANT_DOMAIN}", "NetworkDomain": "https://sts.windows.net/",
                                 "Company": "dat", "Enabled": True, "AccountType": "ClaimsUser"})


def _vendors(state: FnoState, rng: random.Random, le: str, currency: str, count: int) -> list[dict]:
    out = []
    names = VENDOR_NAMES[le]
    for i in range(count):
        name = names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}")
        account = f"{VENDOR_PREFIX[le]}{101 + i}" if le == "usmf" else f"{VENDOR_PREFIX[le]}{i + 1:03d}"
        domain = "".join(c for c in name.split()[0].lower() if c.isascii() and c.isalnum()) or "vendor"
        out.append(state.insert("VendorsV2", {
            "dataAreaId": le, "VendorAccountNumber": account, "VendorOrganizationName": name,
            "VendorGroupId": rng.choice(["10", "20", "30", "INTERCO"]) if i % 7 else "10",
            "PrimaryEmailAddress": f"ap@{domain}.example", "CurrencyCode": currency,
            "DefaultPaymentTermsName": rng.choice(PAYMENT_TERMS),
            "OnHoldStatus": "Invoice" if i == 9 else ("Payment" if i == 12 else "No"),
            "InvoiceVendorAccountNumber": account}))
    return out


def _purchase_orders(state: FnoState, rng: random.Random, le: str, currency: str, vendors: list[dict],
                     today: dt.date, count: int) -> list[dict]:
    pos = []
    for n in range(1, count + 1):
        number = f"{le.upper()}-{n:06d}"
        vendor = rng.choice([v for v in vendors if v["OnHoldStatus"] == "No"])
        ordered = today - dt.timedelta(days=rng.randint(1, 60))
        status = rng.choices(["Backorder", "Received", "Invoiced", "Canceled"], [5, 3, 3, 1])[0]
        approval = ("Confirmed" if status != "Backorder" else
                    rng.choices(["Draft", "InReview", "Approved", "Confirmed"], [1, 1, 3, 2])[0])
        lines = []
        for ln in range(1, rng.randint(1, 30) + 1):
            item = rng.choice(ITEMS)
            qty = float(rng.choice([1, 2, 3, 4] if item[5] > 200 else [1, 2, 4, 5, 10, 12, 20, 24, 50, 100, 250]))
            price = _money(rng.uniform(item[4], item[5]))
            lines.append(state.insert("PurchaseOrderLinesV2", {
                "dataAreaId": le, "PurchaseOrderNumber": number, "LineNumber": ln, "ItemNumber": item[0],
                "ProcurementCategoryName": item[2], "LineDescription": item[1], "OrderedPurchaseQuantity": qty,
                "PurchaseUnitSymbol": item[3], "PurchasePrice": price, "LineAmount": _money(qty * price),
                "CurrencyCode": currency, "RequestedDeliveryDate": ordered + dt.timedelta(days=rng.randint(7, 30))}))
        buyer = BUYERS[le]
        pos.append(state.insert("PurchaseOrderHeadersV2", {
            "dataAreaId": le, "PurchaseOrderNumber": number,
            "PurchaseOrderName": vendor["VendorOrganizationName"],
            "OrderVendorAccountNumber": vendor["VendorAccountNumber"],
            "InvoiceVendorAccountNumber": vendor["InvoiceVendorAccountNumber"], "PurchaseOrderStatus": status,
            "DocumentApprovalStatus": approval, "CurrencyCode": currency, "AccountingDate": ordered,
            "RequestedDeliveryDate": ordered + dt.timedelta(days=rng.randint(7, 30)),
            "OrdererPersonnelNumber": f"{le[:2].upper()}{PEOPLE.index(_person(buyer)) + 1:04d}",
            "BuyerGroupId": rng.choice(["BG-01", "BG-02", "BG-03"])}))
    return pos


def _person(user_id: str):
    return next(p for p in PEOPLE if p.fo_user_id == user_id)


def _po_lines(state: FnoState, le: str, po: str) -> list[dict]:
    return [r for r in state.rows("PurchaseOrderLinesV2") if r["dataAreaId"] == le and r["PurchaseOrderNumber"] == po]


def _invoices(state: FnoState, rng: random.Random, le: str, currency: str, pos: list[dict], today: dt.date) -> None:
    vendor_names = {v["VendorAccountNumber"]: v["VendorOrganizationName"]
                    for v in state.rows("VendorsV2") if v["dataAreaId"] == le}
    pending = 0
    for po in pos:
        lines = _po_lines(state, le, po["PurchaseOrderNumber"])
        vendor = po["OrderVendorAccountNumber"]
        inv_date = min(today, po["AccountingDate"] + dt.timedelta(days=rng.randint(3, 20)))
        due = inv_date + dt.timedelta(days=30)
        invoice_no = f"INV-{rng.randint(10000, 99999)}"
        total = _money(sum(line["LineAmount"] for line in lines))
        if po["PurchaseOrderStatus"] == "Invoiced":
            tax = _money(total * TAX_RATE[le])
            state.insert("PostedVendorInvoiceHeaders", {
                "dataAreaId": le, "InvoiceNumber": invoice_no, "VendorAccount": vendor, "InvoiceDate": inv_date,
                "DueDate": due, "PurchaseOrderNumber": po["PurchaseOrderNumber"], "InvoiceAmount": _money(total + tax),
                "SalesTaxAmount": tax, "Currency": currency, "Voucher": f"APINV{rng.randint(100000, 999999)}",
                "Description": f"Invoice {invoice_no} for {po['PurchaseOrderNumber']}"})
            for line in lines:
                state.insert("PostedVendorInvoiceLines", {
                    "dataAreaId": le, "InvoiceNumber": invoice_no, "VendorAccount": vendor,
                    "LineNumber": line["LineNumber"], "ItemNumber": line["ItemNumber"],
                    "LineDescription": line["LineDescription"], "Quantity": line["OrderedPurchaseQuantity"],
                    "UnitPrice": line["PurchasePrice"], "LineAmount": line["LineAmount"], "Currency": currency})
        elif po["PurchaseOrderStatus"] == "Received":
            pending += 1
            ref = f"VI-{le.upper()}-{pending:05d}"
            in_review = pending <= 2
            state.insert("VendorInvoiceHeaders", {
                "dataAreaId": le, "HeaderReference": ref, "InvoiceNumber": invoice_no, "VendorAccount": vendor,
                "InvoiceAccount": vendor, "VendorName": vendor_names.get(vendor, ""), "Currency": currency,
                "InvoiceDate": inv_date, "DueDate": due, "PurchaseOrderNumber": po["PurchaseOrderNumber"],
                "ImportedAmount": total, "InvoiceDescription": f"{vendor_names.get(vendor, vendor)} {invoice_no}",
                "DocumentNumber": ref,
                "VendorInvoiceReviewStatus": "InReview" if in_review else ("Approved" if pending == 3 else "Draft"),
                "IsApproved": "Yes" if pending == 3 else "No", "ApprovedBy": APPROVERS[le] if pending == 3 else ""})
            for line in lines:
                state.insert("VendorInvoiceLines", {
                    "dataAreaId": le, "HeaderReference": ref, "InvoiceLineNumber": line["LineNumber"],
                    "ItemNumber": line["ItemNumber"], "ProcurementCategoryName": line["ProcurementCategoryName"],
                    "ReceiveNow": line["OrderedPurchaseQuantity"], "UnitPrice": line["PurchasePrice"],
                    "NetAmount": line["LineAmount"], "Currency": currency,
                    "PurchaseOrder": po["PurchaseOrderNumber"], "PurchLineNumber": line["LineNumber"],
                    "VendorAccount": vendor, "InvoiceAccount": vendor})
            if in_review or pending == 3:
                _work_item(state, rng, le, ref, invoice_no, total, currency, today,
                           completed=not in_review)


def _work_item(state: FnoState, rng: random.Random, le: str, ref: str, invoice_no: str, amount: float,
               currency: str, today: dt.date, completed: bool) -> dict:
    created = dt.datetime.combine(today, dt.time(9, rng.randint(0, 59)), dt.timezone.utc) - dt.timedelta(
        days=rng.randint(0, 3))
    return state.insert("WorkflowWorkItems", {
        "Id": _guid(rng), "Status": "Completed" if completed else "Pending",
        "Subject": f"Approve vendor invoice {invoice_no} ({amount:,.2f} {currency})",
        "Description": f"Vendor invoice {ref} is waiting for your approval.",
        "DueDateTime": created + dt.timedelta(days=3), "CreatedDateTime": created, "UserId": APPROVERS[le],
        "CompanyId": le, "DocumentType": "VendorInvoice", "DocumentId": ref, "Outcomes": WORK_ITEM_OUTCOMES,
        "CompletedBy": APPROVERS[le] if completed else "", "Outcome": "Approve" if completed else "",
        "Comment": "OK" if completed else "", "CompletedDateTime": created + dt.timedelta(hours=2) if completed
        else None, "ReassignedTo": "", "ReassignedWorkItemId": "", "PreviousWorkItemId": "", "IsEscalated": "No"})


def _payments(state: FnoState, rng: random.Random, le: str, currency: str, today: dt.date) -> None:
    posted = [r for r in state.rows("PostedVendorInvoiceHeaders") if r["dataAreaId"] == le]
    for j in range(1, 4):
        batch = f"{le.upper()}-PAY-{j:05d}"
        is_posted = j < 3
        when = dt.datetime.combine(today - dt.timedelta(days=10 * (3 - j) + 1), dt.time(16, 30), dt.timezone.utc)
        state.insert("VendorPaymentJournalHeaders", {
            "dataAreaId": le, "JournalBatchNumber": batch, "JournalName": "VendPay",
            "Description": f"Vendor payments run {j}", "IsPosted": "Yes" if is_posted else "No",
            "PostedDateTime": when if is_posted else None})
        for ln, inv in enumerate(rng.sample(posted, min(len(posted), rng.randint(1, 4))), start=1):
            state.insert("VendorPaymentJournalLines", {
                "dataAreaId": le, "JournalBatchNumber": batch, "LineNumber": ln,
                "AccountDisplayValue": inv["VendorAccount"], "CreditAmount": 0.0, "DebitAmount": inv["InvoiceAmount"],
                "CurrencyCode": currency, "TransactionDate": when.date(),
                "PaymentReference": f"PMT-{rng.randint(100000, 999999)}",
                "MethodOfPayment": rng.choice(["ACH", "SEPA", "BACS", "CHECK"]),
                "TransactionText": f"Payment of invoice {inv['InvoiceNumber']}",
                "Voucher": f"APPAY{rng.randint(100000, 999999)}" if is_posted else ""})


def _customers_and_ledger(state: FnoState, rng: random.Random, le: str, currency: str, today: dt.date) -> None:
    for i, name in enumerate(["Retail Partners", "City Hardware", "Metro Foods", "Harbor Marine", "Summit Sports"]):
        state.insert("CustomersV3", {"dataAreaId": le, "CustomerAccount": f"{le.upper()}-C{i + 1:03d}",
                                     "OrganizationName": f"{name} ({le.upper()})", "CustomerGroupId": "10",
                                     "SalesCurrencyCode": currency, "PrimaryContactEmail": ""})
    batch = f"{le.upper()}-GJ-00001"
    state.insert("LedgerJournalHeaders", {"dataAreaId": le, "JournalBatchNumber": batch, "JournalName": "GenJrn",
                                          "Description": "Month-end accruals", "IsPosted": "No"})
    for ln, (acct, amount) in enumerate([("600100", 1250.0), ("200150", -1250.0)], start=1):
        state.insert("LedgerJournalLines", {
            "dataAreaId": le, "JournalBatchNumber": batch, "LineNumber": ln, "AccountDisplayValue": acct,
            "DebitAmount": max(amount, 0.0), "CreditAmount": max(-amount, 0.0), "CurrencyCode": currency,
            "TransactionDate": today, "Text": "Freight accrual"})


def _main_accounts(state: FnoState) -> None:
    for acct, name, kind in [("110110", "Bank account - USD", "BalanceSheet"), ("140200", "Inventory", "Asset"),
                             ("200100", "Accounts payable - domestic", "Liability"),
                             ("200150", "Accrued liabilities", "Liability"), ("401100", "Sales - goods", "Revenue"),
                             ("600100", "Freight expense", "Expense"), ("600200", "Warehouse supplies", "Expense")]:
        state.insert("MainAccounts", {"ChartOfAccounts": "Shared", "MainAccountId": acct, "Name": name,
                                      "Type": kind})
