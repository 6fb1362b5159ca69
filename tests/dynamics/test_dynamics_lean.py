"""Per-event costs of enrichment kept off the hot path (perf goal 3), with the same results."""

from __future__ import annotations

import threading

import pytest

from dynamics import DroppedFields
from dynamics.templates import Template


def test_dropped_fields_hands_out_one_set_until_it_changes() -> None:
    """Read for every event: the same frozenset until a field is added (no lock and no copy per read)."""
    dropped = DroppedFields("contoso-test")
    empty = dropped.fields("VendorsV2")
    assert empty == frozenset() and dropped.fields("VendorsV2") is empty
    generation = dropped.generation
    assert dropped.add("VendorsV2", "OnHoldStatus") is True
    after = dropped.fields("VendorsV2")
    assert after == {"OnHoldStatus"} and dropped.fields("VendorsV2") is after and dropped.generation > generation
    assert dropped.add("VendorsV2", "OnHoldStatus") is False and dropped.fields("VendorsV2") is after
    assert dropped.fields("PurchaseOrderLinesV2") == frozenset()


def test_dropped_fields_read_from_another_thread_sees_every_add() -> None:
    dropped = DroppedFields("contoso-test")
    names = [f"Field{i}" for i in range(200)]

    def add_all() -> None:
        for name in names:
            dropped.add("VendorsV2", name)

    writer = threading.Thread(target=add_all)
    writer.start()
    while writer.is_alive():
        assert dropped.fields("VendorsV2") <= set(names)
    writer.join()
    assert dropped.fields("VendorsV2") == set(names)


def test_a_url_template_quotes_only_what_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text of unreserved characters (a company id, a PO number) is its own percent-encoding: not passed through
    quote() per event; anything else is encoded as before."""
    import dynamics.templates as templates

    quoted: list[str] = []
    real_quote = templates.quote
    monkeypatch.setattr(templates, "quote", lambda text, safe="": quoted.append(text) or real_quote(text, safe=safe))
    template = Template.parse("{base_url}/?cmp={company}&po={event.PurchaseOrderNumber}")
    context = {"base_url": "https://contoso.example/a b", "company": "usmf",
               "event": {"PurchaseOrderNumber": "00000123"}}
    url = template.render(context, url_quote_except=frozenset({"base_url"}))
    assert url == "https://contoso.example/a b/?cmp=usmf&po=00000123" and quoted == []
    context["event"]["PurchaseOrderNumber"] = "PO 1/2&ü"
    url = template.render(context, url_quote_except=frozenset({"base_url"}))
    assert url == "https://contoso.example/a b/?cmp=usmf&po=PO%201%2F2%26%C3%BC" and quoted == ["PO 1/2&ü"]
