"""How fast parse_events validates typical bodies (not run by the test suite).

    .venv/bin/python bench/bench_parse.py [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import time

from dynamics import EventRejected, parse_events

EVENT = {
    "BusinessEventId": "PurchaseOrderConfirmedBusinessEvent", "BusinessEventLegalEntity": "usmf",
    "ContextRecordSubject": "", "ControlNumber": 5637985363, "EventId": "9C091AF1-5BAF-4CA9-B0A4-94D6E59A0D1C",
    "EventTime": "/Date(1697470966000)/", "EventTimeIso8601": "2023-10-16T15:42:46.3440655Z",
    "InitiatingUserAADObjectId": "{C600136F-6814-41D9-8642-40CA0EC4EDD4}", "LegalEntity": "usmf",
    "MajorVersion": 0, "MinorVersion": 0, "ParentContextRecordSubjects": [], "PurchaseJournal": "00000123-1",
    "PurchaseOrderDate": "/Date(1697414400000)/", "PurchaseOrderNumber": "00000123", "PurchaseType": "Purch",
    "TransactionCurrencyAmount": 1250.0, "TransactionCurrencyCode": "USD", "VendorAccount": "US-101",
}


def measure(label: str, body: bytes, n: int) -> None:
    start = time.perf_counter()
    for _ in range(n):
        try:
            parse_events(body)
        except EventRejected:
            pass
    elapsed = time.perf_counter() - start
    print(f"{label:<34} {len(body):>8} B  {elapsed / n * 1e6:9.1f} µs/body  {n / elapsed:10.0f} bodies/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args().n
    measure("one event (current envelope)", json.dumps(EVENT).encode(), n)
    measure("array of 100 events", json.dumps([EVENT] * 100).encode(), max(1, n // 100))
    measure("rejected: bad EventId", json.dumps(dict(EVENT, EventId="x")).encode(), n)
    measure("rejected: 1 MiB of nesting", b"[" * (1 << 19) + b"]" * (1 << 19), 20)


if __name__ == "__main__":
    main()
