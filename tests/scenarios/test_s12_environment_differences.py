"""Scenario 12: a real environment's differences degrade the card, they don't park it.

This F&O environment's PurchaseOrderHeadersV2 has no BuyerGroupId and its PurchaseOrderLinesV2 no CurrencyCode
(the sandbox's schema knob). A confirmed PO still gets its card with everything else; the event's history names the
dropped fields; the next event of that type asks only for what exists (no failing request first)."""

from __future__ import annotations

import json
from pathlib import Path

from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, inproc_connector, posted_messages, raise_events, steps, wait_finished

DROPPED = {"PurchaseOrderHeadersV2": ["BuyerGroupId"], "PurchaseOrderLinesV2": ["CurrencyCode"]}


async def test_missing_fields_degrade_the_card(sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        await admin.post(f"{sandbox.fno_admin}/schema", {"remove_fields": DROPPED})
        await admin.post(f"{sandbox.fno_admin}/stats/reset")

        [first] = await raise_events(admin, sandbox, "confirm_po", 1)
        [record] = (await wait_finished(store, [first], 60, what="the first PO event")).values()
        assert record.status is EventStatus.DONE, (record.status, record.last_error)
        [enriched] = steps(await store.history(record.id), "enrich", "ok")
        assert "field BuyerGroupId dropped: not in this environment's PurchaseOrderHeadersV2" in enriched.detail
        assert "field CurrencyCode dropped: not in this environment's PurchaseOrderLinesV2" in enriched.detail
        stats = await admin.get(f"{sandbox.fno_admin}/stats")
        assert stats["by_status"].get("400") == 2, stats["recent"]  # one refused read per gap, once

        # The card went out with what is available: the order's name, not the buyer group this F&O lacks.
        [card] = await store.cards_for_event(record.id)
        message = json.dumps((await posted_messages(admin, sandbox))[card.activity_id])
        order = await admin.get(f"{sandbox.fno_admin}/record?entity_set=PurchaseOrderHeadersV2&dataAreaId=usmf"
                                f"&PurchaseOrderNumber={first['PurchaseOrderNumber']}")
        assert order["PurchaseOrderName"] in message and first["PurchaseOrderNumber"] in message
        assert "Buyer group" not in message and order["BuyerGroupId"] not in message

        env = next(iter(conn.services.environments.values()))
        assert {k: list(v) for k, v in env.dropped_fields.as_dict().items()} == DROPPED

        # The second event of that type makes no failing request first.
        await admin.post(f"{sandbox.fno_admin}/stats/reset")
        [second] = await raise_events(admin, sandbox, "confirm_po", 1)
        [again] = (await wait_finished(store, [second], 60, what="the second PO event")).values()
        assert again.status is EventStatus.DONE, (again.status, again.last_error)
        stats = await admin.get(f"{sandbox.fno_admin}/stats")
        assert [r for r in stats["recent"] if r["status"] != 200] == [], stats["recent"]
        # one request: the header with its lines and vendor ($expand), lines still without CurrencyCode
        assert stats["by_set"] == {"PurchaseOrderHeadersV2": 1}, stats["recent"]
        assert "CurrencyCode" not in stats["recent"][-1]["path"].split("PurchaseOrderLines(")[1].split(")")[0]
        [enriched] = steps(await store.history(again.id), "enrich", "ok")
        assert "field BuyerGroupId dropped" in enriched.detail
        assert await store.cards_for_event(again.id)
