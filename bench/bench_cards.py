"""Benchmark: purchase-order-confirmed cards expanded per second, ours against Microsoft's engine under Node.

    .venv/bin/python bench/bench_cards.py [--seconds 3]

Uses cards/templates/purchase-order-confirmed.json with its sample data (cards/samples/), the order grown to
20 lines; falls back to an embedded representative template when those files are absent. Both engines build
the template from its JSON per card (Microsoft: ``new Template(json).expand(...)``; ours: ``expand(dict, ...)``,
which parses each distinct expression once and then reuses it), and each loop measures itself. Microsoft's
engine needs node and ./run test's .oracles/; without them only our figure is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cards import expand  # noqa: E402

HELPER = ROOT / "tests" / "cards" / "oracle_expand.js"
LINES = 20

EMBEDDED_TEMPLATE: dict[str, Any] = {
    "type": "AdaptiveCard", "version": "1.5",
    "body": [
        {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": True,
         "text": "Purchase order ${record.order.PurchaseOrderNumber} confirmed"},
        {"type": "TextBlock", "isSubtle": True, "text": "${record.order.PurchaseOrderName}",
         "$when": "${exists(record.order.PurchaseOrderName)}"},
        {"type": "FactSet", "facts": [
            {"title": "Vendor", "value": "${record.vendor.VendorOrganizationName} (${event.VendorAccount})"},
            {"title": "Amount",
             "value": "${formatNumber(event.TransactionCurrencyAmount, 2)} ${event.TransactionCurrencyCode}"},
            {"title": "Order date", "value": "${formatDateTime(record.order.AccountingDate, 'dd MMM yyyy')}"},
            {"title": "Delivery", "value": "${formatDateTime(record.order.RequestedDeliveryDate, 'MMMM d, yyyy')}"},
            {"title": "Status", "value": "${record.order.DocumentApprovalStatus}"},
            {"title": "Legal entity", "value": "${toUpper(legalEntity)}"}]},
        {"type": "Container", "$when": "${count(record.lines) > 0}", "items": [
            {"type": "ColumnSet", "$data": "${record.lines}", "columns": [
                {"type": "Column", "width": "stretch", "items": [
                    {"type": "TextBlock", "wrap": True, "text": "${LineNumber}. ${ItemNumber} ${LineDescription}"},
                    {"type": "TextBlock", "isSubtle": True, "spacing": "None",
                     "text": "${formatNumber(OrderedPurchaseQuantity, 2)} ${PurchaseUnitSymbol} x "
                             "${formatNumber(PurchasePrice, 2)} ${$root.record.order.CurrencyCode}"}]},
                {"type": "Column", "width": "auto", "items": [
                    {"type": "TextBlock", "horizontalAlignment": "Right",
                     "text": "${formatNumber(LineAmount, 2)}"}]}]}]},
        {"type": "TextBlock", "$when": "${contains(missing, 'order')}", "color": "Warning",
         "text": "This order no longer exists in F&O."}],
    "actions": [{"type": "Action.OpenUrl", "title": "Open in F&O", "url": "${openUrl}"}],
}

EMBEDDED_DATA: dict[str, Any] = {
    "event": {"VendorAccount": "US-104", "TransactionCurrencyAmount": 48230.5, "TransactionCurrencyCode": "USD"},
    "legalEntity": "usmf", "missing": [], "openUrl": "https://contoso.operations.dynamics.com/?cmp=usmf",
    "record": {
        "order": {"PurchaseOrderNumber": "00000123", "PurchaseOrderName": "Office furniture", "CurrencyCode": "USD",
                  "AccountingDate": "2026-11-26T00:00:00Z", "RequestedDeliveryDate": "2026-12-10T00:00:00Z",
                  "DocumentApprovalStatus": "Confirmed"},
        "vendor": {"VendorOrganizationName": "Fabrikam Supplier"},
        "lines": [{"LineNumber": 1, "ItemNumber": "D0001", "LineDescription": "Desk", "OrderedPurchaseQuantity": 4,
                   "PurchaseUnitSymbol": "ea", "PurchasePrice": 1205.75, "LineAmount": 4823.0}],
    },
}


def load_case() -> tuple[str, dict[str, Any], dict[str, Any]]:
    template_file = ROOT / "cards" / "templates" / "purchase-order-confirmed.json"
    sample_file = ROOT / "cards" / "samples" / "purchase-order-confirmed.json"
    if template_file.exists() and sample_file.exists():
        source = "cards/templates/purchase-order-confirmed.json"
        template = json.loads(template_file.read_text(encoding="utf-8"))
        data = json.loads(sample_file.read_text(encoding="utf-8"))
    else:
        source, template, data = "embedded template", EMBEDDED_TEMPLATE, copy.deepcopy(EMBEDDED_DATA)
    lines = data.setdefault("record", {}).setdefault("lines", [])
    seed = lines or EMBEDDED_DATA["record"]["lines"]
    grown = []
    for i in range(LINES):
        line = copy.deepcopy(seed[i % len(seed)])
        line["LineNumber"] = i + 1
        grown.append(line)
    data["record"]["lines"] = grown
    return source, template, data


def bindings(template: Any) -> int:
    return json.dumps(template).count("${")


def bench_ours(template: Any, data: Any, seconds: float) -> float:
    expand(template, data)  # warm the expression cache, as a running service has
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            expand(template, data)
        n += 20
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def bench_microsoft(template: Any, data: Any, seconds: float) -> dict[str, float] | None:
    modules = ROOT / ".oracles" / "node_modules" / "adaptivecards-templating"
    if shutil.which("node") is None or not modules.exists():
        return None
    env = dict(os.environ, BENCH_SECONDS=str(seconds), TZ="UTC")
    proc = subprocess.run(["node", str(HELPER), "--bench"], input=json.dumps([{"template": template, "data": data}]),
                          capture_output=True, text=True, env=env, check=True)
    (result,) = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    source, template, data = load_case()
    card = expand(template, data)
    print(f"template: {source}, {bindings(template)} bindings, {LINES} order lines, "
          f"card {len(json.dumps(card)):,} bytes")
    ms = bench_microsoft(template, data, args.seconds)
    ours = bench_ours(template, data, args.seconds)
    ours_text = bench_ours(json.dumps(template), data, args.seconds)
    print(f"ours, template dict per card:            {ours:10,.0f} cards/s")
    print(f"ours, template JSON text (prepared once): {ours_text:10,.0f} cards/s")
    if ms is None:
        print("microsoft: not run (node or .oracles/ missing)")
        return
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"microsoft (node {node}), new Template per card: {ms['fresh']:10,.0f} cards/s")
    print(f"microsoft (node {node}), one Template reused:   {ms['reused']:10,.0f} cards/s")
    print(f"ratio ours/microsoft: {ours / ms['fresh']:.1f}x per card, {ours_text / ms['reused']:.1f}x reused")

if __name__ == "__main__":
    main()
