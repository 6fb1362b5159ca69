"""The lean render path: every card measured once, no deep copy of the data, and output byte-identical to before.

render_golden.json holds digests of what main's render produced (before this change) for every template × variant
(tests/cards/card_variants.py) × four size limits (the default, and limits that cut lines, texts, or fall back to
the minimal card); regenerate it with `python tests/cards/render_golden.py` only when a card is meant to change.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import render_golden  # noqa: E402
from card_variants import all_cases, case  # noqa: E402

import cards.limits  # noqa: E402
import cards.render  # noqa: E402
from cards.render import render  # noqa: E402

GOLDEN: dict[str, Any] = json.loads((Path(__file__).with_name("render_golden.json")).read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "label"), all_cases())
def test_render_output_is_byte_identical_to_before(name: str, label: str) -> None:
    for limit in render_golden.LIMITS:
        key = f"{name}/{label}/{limit}"
        assert render_golden.digest(name, label, limit) == GOLDEN[key], key


def test_golden_covers_every_shrinking_path() -> None:
    shrunk = {tuple(v["shrunk"]) for v in GOLDEN.values()}
    assert {(), ("lines",), ("texts",), ("minimal",), ("lines", "minimal")} <= shrunk
    assert len(GOLDEN) == len(all_cases()) * len(render_golden.LIMITS)


def _count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cards.limits.card_size

    def counting(card: Any) -> int:
        calls.append(1)
        return real(card)

    monkeypatch.setattr(cards.limits, "card_size", counting)
    monkeypatch.setattr(cards.render, "card_size", counting)
    return calls


def test_a_card_that_fits_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_encodes(monkeypatch)
    out = render("purchase-order-confirmed", case("purchase-order-confirmed", "sample"))
    assert out.shrunk == ()
    assert len(calls) == 1


def test_a_card_cut_to_fit_encodes_each_candidate_once(monkeypatch: pytest.MonkeyPatch) -> None:
    data = case("purchase-order-confirmed", "1000-lines")
    calls = _count_encodes(monkeypatch)
    out = render("purchase-order-confirmed", data, max_bytes=6_000)
    assert out.shrunk == ("lines",)
    builds = 1 + (20 - 1).bit_length()  # the first try, then at most one binary search step per bit
    assert len(calls) <= builds


def test_render_does_not_deep_copy_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    data = case("workflow-approval", "sample")
    before = copy.deepcopy(data)

    real = copy.deepcopy

    def refuse_big(obj: Any, *a: Any, **k: Any) -> Any:
        # A mention entry ({"id", "name"}) may still be copied; the card data or its records may not.
        if isinstance(obj, dict) and ({"event", "record", "lines"} & obj.keys() or obj is data):
            raise AssertionError("render deep-copied the card data")
        return real(obj, *a, **k)

    monkeypatch.setattr(copy, "deepcopy", refuse_big)
    out = render("workflow-approval", data)
    monkeypatch.undo()
    assert data == before  # not changed either
    out.card["body"].clear()  # the card aliases nothing of the data
    assert data == before
