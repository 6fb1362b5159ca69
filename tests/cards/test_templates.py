"""Every template × every data variant: expands, passes the 1.5 schema, leaves no `${...}`, fits in 28 KB; and each
template shows what a finance user acts on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from card_variants import TEMPLATES, all_cases, case, sample
from cards.catalog import Catalog
from cards.render import render
from cards.validate import leftover_expressions, validate_card

CASES = all_cases()


def texts(card: dict[str, Any]) -> str:
    """Everything the card shows, as one string (to assert on content)."""
    return json.dumps(card, ensure_ascii=False)


def actions(card: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Elements or actions of type `kind`, in document order."""
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == kind:
                found.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(card)
    return found


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


def test_every_template_has_a_sample() -> None:
    assert TEMPLATES == sorted([
        "digest", "generic-event", "my-approvals", "purchase-order-confirmed", "record-unavailable",
        "vendor-invoice-posted",
        "vendor-payment-posted", "workflow-approval",
    ])


@pytest.mark.parametrize("name,label", CASES, ids=[f"{n}:{label}" for n, label in CASES])
def test_variant_renders_valid_card(catalog: Catalog, name: str, label: str) -> None:
    data = case(name, label)
    rendered = render(name, data, catalog=catalog)
    card = rendered.card
    assert validate_card(card) == []
    assert leftover_expressions(card) == []
    assert rendered.bytes <= 28_000
    assert card["version"] == "1.5" and card["msteams"]["width"] == "Full"
    assert "minimal" not in rendered.shrunk
    # the link to Dynamics is bound to openUrl whenever there is one
    urls = [a["url"] for a in actions(card, "Action.OpenUrl") if a.get("title") == "Open in Dynamics"]
    assert urls == ([data["openUrl"]] if data.get("openUrl") else [])


def test_purchase_order_shows_what_a_buyer_acts_on(catalog: Catalog) -> None:
    card = render("purchase-order-confirmed", sample("purchase-order-confirmed"), catalog=catalog).card
    shown = texts(card)
    for expected in ("Purchase order 00000123", "Fabrikam Supplier (US-104)", "50,657.50 USD", "26 Nov 2026",
                     "10 Dec 2026", "USMF", "Confirmed by <at>Alex Wilber</at>", "HDMI cable 2 m, braided",
                     "1,000 ea", "24,400.00"):
        assert expected in shown, expected


def test_invoice_falls_back_to_pending_invoice(catalog: Catalog) -> None:
    posted = texts(render("vendor-invoice-posted", case("vendor-invoice-posted", "sample"), catalog=catalog).card)
    pending = texts(render("vendor-invoice-posted", case("vendor-invoice-posted", "pending-invoice"),
                           catalog=catalog).card)
    assert "Invoice RE-2026-04417" in posted and "Büroausstattung Müller GmbH (DE-001)" in posted
    assert "APINV-000982" in posted and "showing the pending invoice" not in posted
    assert "showing the pending invoice" in pending and "Approved by Megan Bowen" in pending
    assert "Invoice RE-2026-04417" in pending and "Surface Dock 2" not in pending  # pending lines carry no text


def test_payment_shows_amount_vendor_and_reference(catalog: Catalog) -> None:
    shown = texts(render("vendor-payment-posted", sample("vendor-payment-posted"), catalog=catalog).card)
    for expected in ("Payment BACS-2026-1126-07", "48,250.75 GBP", "Northwind Logistics Ltd (GB-207)", "GBSI",
                     "GBSI-PAY-000311 (VendPay)", "31,200.00 GBP", "Posted by <at>Nestor Wilke</at>"):
        assert expected in shown, expected


def test_negative_amounts_keep_their_sign(catalog: Catalog) -> None:
    shown = texts(render("purchase-order-confirmed", case("purchase-order-confirmed", "negative-amounts"),
                         catalog=catalog).card)
    assert "\u221250,657.50 USD" in shown  # formatNumber writes the Unicode minus, as Microsoft's engine does


def test_non_ascii_text_survives(catalog: Catalog) -> None:
    rendered = render("vendor-invoice-posted", case("vendor-invoice-posted", "non-ascii"), catalog=catalog)
    shown = texts(rendered.card)
    assert "深圳市华强电子有限公司" in shown and "🚚📦✅" in shown and "Größenwahn" in shown
    assert rendered.card["msteams"]["entities"][0]["text"] == "<at>Jürgen Groß 山田太郎 🎉</at>"


def test_pending_approval_offers_outcomes_with_ids(catalog: Catalog) -> None:
    data = sample("workflow-approval")
    card = render("workflow-approval", data, catalog=catalog).card
    submits = actions(card, "Action.Submit")
    assert [a["title"] for a in submits] == ["Approve", "Reject"]
    assert [a["data"] for a in submits] == [
        {"action": "approve", "workItemId": "5637169327", "eventId": data["event"]["EventId"]},
        {"action": "reject", "workItemId": "5637169327", "eventId": data["event"]["EventId"]},
    ]
    assert [i["id"] for i in actions(card, "Input.Text")] == ["comment"]


def test_outcomes_come_from_the_data(catalog: Catalog) -> None:
    data = sample("workflow-approval")
    data["approval"]["outcomes"] = ["Approve", "Reject", "RequestChange"]
    card = render("workflow-approval", data, catalog=catalog).card
    assert [a["data"]["action"] for a in actions(card, "Action.Submit")] == ["approve", "reject", "requestchange"]
    no_outcomes = render("workflow-approval", case("workflow-approval", "no-outcomes"), catalog=catalog).card
    assert [a["data"]["action"] for a in actions(no_outcomes, "Action.Submit")] == ["approve", "reject"]


@pytest.mark.parametrize("label,word", [("decided", "Approved"), ("rejected", "Rejected")])
def test_decided_approval_shows_state_and_no_buttons(catalog: Catalog, label: str, word: str) -> None:
    card = render("workflow-approval", case("workflow-approval", label), catalog=catalog).card
    assert actions(card, "Action.Submit") == [] and actions(card, "Input.Text") == []
    assert f'"text": "{word}"' in texts(card) and "Status in Dynamics: Completed" in texts(card)


def test_generic_event_lists_fields(catalog: Catalog) -> None:
    card = render("generic-event", sample("generic-event"), catalog=catalog).card
    facts = actions(card, "FactSet")[0]["facts"]
    assert {"title": "InvoiceId", "value": "FTI-00000871"} in facts


def test_record_unavailable_says_so_with_identifiers(catalog: Catalog) -> None:
    shown = texts(render("record-unavailable", sample("record-unavailable"), catalog=catalog).card)
    for expected in ("no longer exists", "Not found: order, lines", "6E7F8091-A2B3-4C4D-8E5F-6A7B8C9D0E1F",
                     "5637995123", "00000131"):
        assert expected in shown, expected


def test_digest_counts_and_links(catalog: Catalog) -> None:
    data = sample("digest")
    rendered = render("digest", data, catalog=catalog, max_lines=5)
    shown = texts(rendered.card)
    assert "14 purchase orders confirmed" in shown and "and 9 more" in shown
    links = [a["url"] for a in actions(rendered.card, "Action.OpenUrl") if a.get("title") == "Open"]
    assert links == [i["openUrl"] for i in data["digest"]["items"][:5]]


@pytest.mark.parametrize("empty", ["1900-01-01T12:00:00Z", "/Date(-2208988800000)/"])
def test_fo_empty_dates_are_not_shown(catalog: Catalog, empty: str) -> None:
    data = sample("purchase-order-confirmed")
    data["record"]["order"]["RequestedDeliveryDate"] = empty
    shown = texts(render("purchase-order-confirmed", data, catalog=catalog).card)
    assert "Delivery date" not in shown and "1900" not in shown
