"""The catalog: our templates load; an admin folder overrides or adds; a broken template is refused, named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from card_variants import TEMPLATES, sample
from cards.catalog import Catalog, TemplateInvalid
from cards.render import render

OURS = Path(__file__).resolve().parents[2] / "cards" / "templates"


def ours(name: str) -> dict:
    return json.loads((OURS / f"{name}.json").read_text(encoding="utf-8"))


def write(path: Path, value: object) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value, indent=2), encoding="utf-8")
    return path


def test_builtin_has_every_template_with_its_sample() -> None:
    catalog = Catalog.builtin()
    assert catalog.names() == TEMPLATES
    assert catalog.sample("digest") == sample("digest")
    assert catalog.get("digest") == ours("digest")
    catalog.get("digest")["body"].clear()  # a copy: the catalog is not changed through it
    assert catalog.get("digest") == ours("digest")


def test_override_by_name_and_add_new(tmp_path: Path) -> None:
    po = ours("purchase-order-confirmed")
    po["body"].insert(1, {"type": "TextBlock", "text": "Contoso buyers: check the delivery date", "wrap": True})
    write(tmp_path / "purchase-order-confirmed.json", po)
    write(tmp_path / "sales-order-shipped.json", {
        "type": "AdaptiveCard", "version": "1.5",
        "body": [{"type": "TextBlock", "text": "Order ${event.SalesOrder} shipped", "wrap": True}]})
    write(tmp_path / "sales-order-shipped.sample.json", {"event": {"SalesOrder": "SO-1"}})

    catalog = Catalog.load(tmp_path)
    assert catalog.names() == sorted([*TEMPLATES, "sales-order-shipped"])
    assert catalog.source("purchase-order-confirmed") == tmp_path / "purchase-order-confirmed.json"
    card = render("purchase-order-confirmed", sample("purchase-order-confirmed"), catalog=catalog).card
    assert card["body"][1]["text"] == "Contoso buyers: check the delivery date"
    assert catalog.sample("sales-order-shipped") == {"event": {"SalesOrder": "SO-1"}}
    assert Catalog.builtin().get("purchase-order-confirmed") == ours("purchase-order-confirmed")


@pytest.mark.parametrize("content,path,problem", [
    ('{"type": "AdaptiveCard", "version": "1.5",\n "body": [,]}', "line 2 column 11", "not valid JSON"),
    ({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "a"},
                                                          {"type": "TextBlock", "size": "Huge", "text": "b"}]},
     "expanded card $.body[1].size", "'Huge'"),
    ({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "${formatNumber(}"}]},
     "$.body[0].text", "does not expand"),
    ({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "${record.order.Nope}"}]},
     "expanded card $.body[0].text", "unexpanded ${record.order.Nope}"),
    ({"type": "AdaptiveCard", "version": "1.6", "body": []}, "expanded card $.version", "newer than 1.5"),
    ([1, 2], "$", "a JSON object"),
])
def test_broken_admin_template_is_refused_with_file_and_path(tmp_path: Path, content, path: str, problem: str) -> None:
    broken = write(tmp_path / "purchase-order-confirmed.json", content)
    with pytest.raises(TemplateInvalid) as caught:
        Catalog.load(tmp_path)
    error = caught.value
    assert error.file == broken
    assert error.path.startswith(path), error.path
    assert problem in error.problem, error.problem
    assert str(broken) in str(error)


def test_broken_sample_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "digest.json", ours("digest"))
    bad_sample = write(tmp_path / "digest.sample.json", "[]")
    with pytest.raises(TemplateInvalid) as caught:
        Catalog.load(tmp_path)
    assert caught.value.file == bad_sample


def test_missing_override_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Catalog.load(tmp_path / "nope")
