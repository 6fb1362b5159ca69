"""Variants of the sample card data that stress the templates: missing fields, long and non-ASCII text, no lines and
1,000 lines, negative amounts, and the template-specific states (decided approval, pending invoice...)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Iterator

SAMPLES = Path(__file__).resolve().parents[2] / "cards" / "samples"
TEMPLATES = sorted(p.stem for p in (SAMPLES.parent / "templates").glob("*.json"))

LONG = ("Internationale Großhandelsgesellschaft für Unterhaltungselektronik und Zubehör " * 6).strip()
NON_ASCII = "Müller & Söhne Größenwahn GmbH · 深圳市华强电子有限公司 · 🚚📦✅ — Ærøskøbing"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _walk(node: Any, fn: Callable[[dict[str, Any], str, Any], None]) -> None:
    if isinstance(node, dict):
        for key in list(node):
            fn(node, key, node[key])
            _walk(node.get(key), fn)
    elif isinstance(node, list):
        for item in node:
            _walk(item, fn)


def _lines_key(data: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    if isinstance(data.get("record", {}).get("lines"), list):
        return data["record"], "lines"
    if isinstance(data.get("digest", {}).get("items"), list):
        return data["digest"], "items"
    return None


def missing_optional(d: dict[str, Any]) -> dict[str, Any]:
    """Only what connector/ always sends: the event, its type and time, the legal entity, empty record."""
    keep = {k: d[k] for k in ("event", "eventType", "eventTime", "legalEntity") if k in d}
    if "approval" in d:
        keep["approval"] = {"workItemId": d["approval"]["workItemId"]}
    if "digest" in d:
        keep["digest"] = {"count": 2, "items": [{"title": "only a title"}, {"title": "no link", "amount": 5}]}
    return {**keep, "record": {}, "missing": []}


def nulls(d: dict[str, Any]) -> dict[str, Any]:
    """Optional parts present but null (a fetch that found nothing, a person nobody could resolve)."""
    d["record"] = {key: None for key in d.get("record", {})}
    for key in ("mentions", "openUrl", "environment", "moreLines", "fields", "title"):
        d[key] = None
    if "approval" in d:
        d["approval"] = {key: None for key in d["approval"]}
    return d


def sparse_rows(d: dict[str, Any]) -> dict[str, Any]:
    """Every record row loses every other field (OData `$select` configured differently by an admin)."""
    def thin(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for i, (k, v) in enumerate(row.items()) if i % 2 == 0}

    record = d.get("record", {})
    for key, value in list(record.items()):
        if isinstance(value, dict):
            record[key] = thin(value)
        elif isinstance(value, list):
            record[key] = [thin(r) for r in value]
    return d


def long_texts(d: dict[str, Any]) -> dict[str, Any]:
    def stretch(holder: dict[str, Any], key: str, value: Any) -> None:
        if isinstance(value, str) and any(w in key for w in ("Name", "Description", "Subject", "title", "Text")):
            holder[key] = f"{value} {LONG}"

    _walk(d.get("record"), stretch)
    _walk(d.get("digest"), stretch)
    for mention in d.get("mentions", {}).values():
        mention["name"] = f"{mention['name']} {LONG[:120]}"
    return d


def non_ascii(d: dict[str, Any]) -> dict[str, Any]:
    def swap(holder: dict[str, Any], key: str, value: Any) -> None:
        if isinstance(value, str) and any(w in key for w in ("Name", "Description", "Subject", "title", "Text")):
            holder[key] = NON_ASCII

    _walk(d.get("record"), swap)
    _walk(d.get("digest"), swap)
    for f in d.get("fields", []):
        f["value"] = NON_ASCII
    for mention in d.get("mentions", {}).values():
        mention["name"] = "Jürgen Groß 山田太郎 🎉"
    return d


def negative_amounts(d: dict[str, Any]) -> dict[str, Any]:
    def negate(holder: dict[str, Any], key: str, value: Any) -> None:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and ("Amount" in key or key == "amount"):
            holder[key] = -abs(value)

    _walk(d, negate)
    return d


def no_lines(d: dict[str, Any]) -> dict[str, Any]:
    found = _lines_key(d)
    if found:
        found[0][found[1]] = []
        if found[1] == "items":
            found[0]["count"] = 0
    return d


def thousand_lines(d: dict[str, Any]) -> dict[str, Any]:
    found = _lines_key(d)
    if found is None:
        return d
    holder, key = found
    template = holder[key][0] if holder[key] else {"title": "line"}
    rows = []
    for i in range(1000):
        row = copy.deepcopy(template)
        if "LineNumber" in row:
            row["LineNumber"] = i + 1
        for text_key in ("LineDescription", "title", "TransactionText"):
            if text_key in row:
                row[text_key] = f"{row[text_key]} #{i + 1}"
        rows.append(row)
    holder[key] = rows
    if key == "items":
        holder["count"] = 1000
    return d


COMMON: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sample": lambda d: d,
    "missing-optional": missing_optional,
    "nulls": nulls,
    "sparse-rows": sparse_rows,
    "long-texts": long_texts,
    "non-ascii": non_ascii,
    "negative-amounts": negative_amounts,
    "no-lines": no_lines,
    "1000-lines": thousand_lines,
}


def _decided(d: dict[str, Any]) -> dict[str, Any]:
    d["approval"].update(status="Completed", decision="Approve", decidedBy="<at>Megan Bowen</at>", comment="OK")
    return d


def _rejected(d: dict[str, Any]) -> dict[str, Any]:
    d["approval"].update(status="Completed", decision="Reject")
    return d


def _no_outcomes(d: dict[str, Any]) -> dict[str, Any]:
    del d["approval"]["outcomes"]
    return d


def _pending_invoice(d: dict[str, Any]) -> dict[str, Any]:
    posted = d["record"].pop("invoice")
    d["record"]["pendingInvoice"] = {
        "dataAreaId": "demf", "HeaderReference": "APINV-H-000311", "InvoiceNumber": posted["InvoiceNumber"],
        "VendorAccount": "DE-001", "InvoiceAccount": "DE-001", "VendorName": "Büroausstattung Müller GmbH",
        "Currency": "EUR", "InvoiceDate": posted["InvoiceDate"], "DueDate": posted["DueDate"],
        "PurchaseOrderNumber": posted["PurchaseOrderNumber"], "ImportedAmount": posted["InvoiceAmount"],
        "InvoiceDescription": "Hardware für Filiale München", "DocumentNumber": "", "VendorInvoiceReviewStatus": "None",
        "IsApproved": "Yes", "ApprovedBy": "Megan Bowen",
    }
    d["record"]["lines"] = [
        {"ItemNumber": r["ItemNumber"], "ProcurementCategoryName": "Hardware", "ReceiveNow": r["Quantity"],
         "UnitPrice": r["UnitPrice"], "NetAmount": r["LineAmount"], "Currency": "EUR"} for r in d["record"]["lines"]]
    return d


def _bare_digest(d: dict[str, Any]) -> dict[str, Any]:
    """A digest with nothing but its items: no eventType, no title (the headline once read "50 ${eventType}")."""
    return {"digest": {"count": 50, "items": d["digest"]["items"]}}


SPECIFIC: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "digest": {"bare-digest": _bare_digest},
    "workflow-approval": {"decided": _decided, "rejected": _rejected, "no-outcomes": _no_outcomes},
    "vendor-invoice-posted": {"pending-invoice": _pending_invoice},
}


def variants(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for label, fn in {**COMMON, **SPECIFIC.get(name, {})}.items():
        yield label, fn(sample(name))


def all_cases() -> list[tuple[str, str]]:
    return [(name, label) for name in TEMPLATES for label, _ in variants(name)]


def case(name: str, label: str) -> dict[str, Any]:
    return dict(variants(name))[label]
