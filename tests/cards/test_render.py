"""render(): line caps, size limit (shrink, never fail), attachment; validate_card() catches what it should."""

from __future__ import annotations

import json

import pytest

from card_variants import LONG, case, sample
from cards.limits import card_size, minimal_card
from cards.render import card_attachment, event_fields, render
from cards.validate import leftover_expressions, validate_card


def shown(card: dict) -> str:
    return json.dumps(card, ensure_ascii=False)


def test_lines_capped_with_more_lines_text() -> None:
    rendered = render("purchase-order-confirmed", case("purchase-order-confirmed", "1000-lines"))
    assert (rendered.lines_shown, rendered.lines_dropped) == (20, 980)
    assert "and 980 more lines in Dynamics" in shown(rendered.card)
    assert "Lines (1000)" in shown(rendered.card)
    assert rendered.shrunk == ()  # 20 lines fit: capped by max_lines, not shrunk for size


def test_callers_more_lines_add_up() -> None:
    data = sample("purchase-order-confirmed")
    data["moreLines"] = 100
    rendered = render("purchase-order-confirmed", data, max_lines=2)
    assert "and 103 more lines in Dynamics" in shown(rendered.card)


def test_thousand_lines_shrink_below_a_small_cap() -> None:
    data = case("purchase-order-confirmed", "1000-lines")
    full = render("purchase-order-confirmed", data, max_lines=1000, max_bytes=10**9)
    assert full.bytes > 100_000  # the cap below really has work to do
    rendered = render("purchase-order-confirmed", data, max_lines=1000)
    assert rendered.bytes <= 28_000 and rendered.bytes == card_size(rendered.card)
    assert rendered.shrunk == ("lines",)
    assert 20 < rendered.lines_shown < 1000 and rendered.lines_shown + rendered.lines_dropped == 1000
    assert f"and {rendered.lines_dropped} more lines in Dynamics" in shown(rendered.card)
    assert validate_card(rendered.card) == []
    # it kept as many lines as fit: one more would not
    one_more = render("purchase-order-confirmed", data, max_lines=rendered.lines_shown + 1, max_bytes=10**9)
    assert one_more.bytes > 28_000


@pytest.mark.parametrize("limit", [6_000, 12_000])
def test_max_bytes_is_a_parameter(limit: int) -> None:
    rendered = render("vendor-invoice-posted", case("vendor-invoice-posted", "1000-lines"), max_bytes=limit,
                      max_lines=1000)
    assert rendered.bytes <= limit
    assert validate_card(rendered.card) == []


def test_long_texts_are_cut_when_lines_are_not_enough() -> None:
    data = sample("purchase-order-confirmed")
    data["record"]["order"]["PurchaseOrderName"] = LONG * 60  # ~30 KB in one field
    rendered = render("purchase-order-confirmed", data)
    assert rendered.bytes <= 28_000
    assert rendered.shrunk == ("lines", "texts") and rendered.lines_shown == 0
    assert "…" in shown(rendered.card) and "<at>Alex Wilber</at>" in shown(rendered.card)
    assert validate_card(rendered.card) == []


def test_minimal_card_as_last_resort() -> None:
    data = sample("purchase-order-confirmed")
    data["record"]["lines"] = [{"ItemNumber": f"I{i}", "LineDescription": "x" * 50} for i in range(20)]
    data["record"]["order"]["PurchaseOrderName"] = "y" * 3000
    rendered = render("purchase-order-confirmed", data, max_bytes=1_500)
    assert rendered.shrunk[-1] == "minimal" and rendered.bytes <= 1_500
    assert validate_card(rendered.card) == []
    assert rendered.card["actions"][0]["url"] == data["openUrl"]
    assert "PurchaseOrderConfirmedBusinessEvent" in shown(rendered.card)


def test_minimal_card_never_raises_even_when_tiny() -> None:
    card = minimal_card({"eventType": "X" * 500, "openUrl": "https://x/" + "a" * 5000}, max_bytes=300)
    assert validate_card(card) == []


def test_render_does_not_touch_the_callers_data() -> None:
    data = case("digest", "1000-lines")
    before = json.dumps(data, sort_keys=True)
    render("digest", data)
    assert json.dumps(data, sort_keys=True) == before


def test_digest_items_are_capped_too() -> None:
    rendered = render("digest", case("digest", "1000-lines"), max_lines=10)
    assert (rendered.lines_shown, rendered.lines_dropped) == (10, 990)
    assert "and 990 more" in shown(rendered.card)


def test_inline_template_and_attachment() -> None:
    template = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi ${name}"}]}
    rendered = render(template, {"name": "Zoë"})
    assert rendered.template_name == "<inline>"
    assert card_attachment(rendered.card) == {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi Zoë"}]},
    }


def test_unknown_template_name() -> None:
    with pytest.raises(KeyError, match="no card template named 'nope'"):
        render("nope", {})


def test_event_fields_skip_the_envelope() -> None:
    fields = event_fields(sample("purchase-order-confirmed")["event"])
    names = [f["name"] for f in fields]
    assert names == ["LegalEntity", "PurchaseJournal", "PurchaseOrderDate", "PurchaseOrderNumber", "PurchaseType",
                     "TransactionCurrencyAmount", "TransactionCurrencyCode", "VendorAccount"]
    assert all(isinstance(f["value"], str) for f in fields)


# ------------------------------------------------------------------ validate_card catches problems
GOOD = {"type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"},
        "body": [{"type": "TextBlock", "text": "ok"}]}


@pytest.mark.parametrize("change,expected", [
    (lambda c: c.update(version="1.6"), "newer than 1.5"),
    (lambda c: c["msteams"].update(width="Wide"), "$.msteams.width"),
    (lambda c: c["body"].append({"type": "TextBlock"}), "$.body[1]"),
    (lambda c: c["body"].append({"type": "FactSet", "facts": [{"title": "n", "value": 5}]}), "$.body[1]"),
    (lambda c: c.update(bogus=1), "bogus"),
    (lambda c: c["msteams"].update(entities=[{"type": "mention", "text": "<at>A</at>",
                                              "mentioned": {"id": "a@b.com", "name": "A"}}]), "does not occur"),
])
def test_validate_card_reports(change, expected: str) -> None:
    card = json.loads(json.dumps(GOOD))
    assert validate_card(card) == []
    change(card)
    problems = validate_card(card)
    assert any(expected in p for p in problems), problems


def test_leftover_expressions_found() -> None:
    assert leftover_expressions({"body": [{"text": "Hi ${name}"}]}) == ["$.body[0].text: unexpanded ${name}"]
