"""The compiled render path (issue 11, goal 5): a template is compiled once into closures, names are looked up
without lower-casing every key per access, and the fast paths (markdown escaping of plain text, toFixed without
Decimal, one search per mention) give exactly what the full paths give.

Byte-identity of every built-in card is test_render_lean.py's job; Microsoft's semantics are test_differential.py's.
Here: the properties that make the path fast, and the edges the fast paths could get wrong, each checked against
the implementation it replaced (kept below as the reference).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cards.template
from card_variants import case
from cards import expand
from cards.errors import TemplateError
from cards.functions import d3_fixed, num_str, to_fixed
from cards.locales import EN_US_NUMBERS, NumberSymbols, number_symbols
from cards.markdown import escape_markdown
from cards.mentions import Mention, attach_mentions
from cards.render import render

FAST = settings(derandomize=True, database=None, deadline=None, max_examples=400)


# ---------------------------------------------------------------- compiled once

def test_a_template_is_walked_once_then_only_its_compiled_form_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    data = case("purchase-order-confirmed", "sample")
    first = render("purchase-order-confirmed", data)  # compiles (and caches) the catalog template
    walks: list[int] = []
    real = cards.template._expand

    def counting(*args: Any, **kwargs: Any) -> Any:
        walks.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cards.template, "_expand", counting)
    again = render("purchase-order-confirmed", data)
    assert walks == []  # no node of the template is classified again: the compiled closures build the card
    assert again.card == first.card


def _containers(value: Any, out: list[Any]) -> list[Any]:
    if isinstance(value, dict):
        out.append(value)
        for v in value.values():
            _containers(v, out)
    elif isinstance(value, list):
        out.append(value)
        for v in value:
            _containers(v, out)
    return out


def test_static_parts_are_fresh_objects_in_every_card() -> None:
    data = case("purchase-order-confirmed", "sample")
    one, two = render("purchase-order-confirmed", data).card, render("purchase-order-confirmed", data).card
    assert one == two
    assert not {id(c) for c in _containers(one, [])} & {id(c) for c in _containers(two, [])}
    one["msteams"]["width"] = "changed"  # a static object of the template
    one["body"][0]["items"][0]["columns"][0]["items"][0]["text"] = "changed"
    assert render("purchase-order-confirmed", data).card == two


def test_static_arrays_drop_nulls_and_splice_arrays_as_before() -> None:
    template = {"a": [1, None, [2, [3, None]], {"b": [None, 4]}], "c": {"$when": True, "d": [None]},
                "e": [{"$when": False}, 5], "f": "${x}"}
    # (a $when that is not a binding drops its element when truthy, as Microsoft's engine does)
    want = {"a": [1, 2, 3, {"b": [4]}], "c": None, "e": [{}, 5], "f": "y"}
    assert expand(template, {"x": "y"}) == want
    assert expand(template, {"x": "y"}) is not expand(template, {"x": "y"})


def test_an_output_budget_overflow_inside_a_static_part_names_the_same_path() -> None:
    # 200,000 objects and arrays at most: root, body, then 4 per item; item 49,999 runs out inside its static part
    template = {"body": [{"$data": "${items}", "k": "${$index}", "static": {"a": [{"b": 1}]}}]}
    with pytest.raises(TemplateError) as err:
        expand(template, {"items": list(range(60_000))})
    assert "expansion produced more than 200000 objects and arrays" in str(err.value)
    assert "$.body[0].static.a" in str(err.value)


# ---------------------------------------------------------------- name lookups

class _CountingKey(str):
    """A dict key that counts how often it is lower-cased."""

    calls: list[str] = []

    def lower(self) -> str:
        _CountingKey.calls.append(str(self))
        return str.lower(self)


def test_a_dict_key_is_lower_cased_at_most_once_per_expansion() -> None:
    _CountingKey.calls = []
    record: dict[str, Any] = {_CountingKey(f"Field{i}"): i for i in range(10)}
    record[_CountingKey("Name")] = "Fabrikam"
    template = {"type": "TextBlock", "text": "${record.Name} ${record.name} ${record.NAME} ${record.Field3}",
                "$when": "${exists(record.Name) && record.Name != ''}"}
    assert expand(template, {"record": record}) == {"type": "TextBlock", "text": "Fabrikam Fabrikam Fabrikam 3"}
    assert len(_CountingKey.calls) <= len(record)  # not once per key per lookup (6 lookups here)


def test_case_insensitive_lookup_still_takes_the_first_matching_key() -> None:
    data = {"r": {"name": "first", "Name": "second", "NAME": "third"}, "s": {"Name": "exact last", "x": 1}}
    out = expand({"a": "${r.Name}", "b": "${r.NAME}", "c": "${s.name}", "d": "${r.missing}"}, data)
    assert out == {"a": "first", "b": "first", "c": "exact last", "d": "${r.missing}"}


def test_lookups_through_a_dict_with_a_non_string_key_behave_as_before() -> None:
    # access_property lower-cases the keys before the match: a non-string key there fails the binding as it did
    assert expand({"a": "${r.b}"}, {"r": {"b": 1, 2: "x"}}) == {"a": 1}
    with pytest.raises(AttributeError):
        expand({"a": "${r.c}"}, {"r": {2: "x", "c": 1}})


# ---------------------------------------------------------------- markdown: plain text skips the loop

def _escape_markdown_before(text: str) -> str:
    """cards.markdown.escape_markdown as it was before the plain-text fast path."""
    always, punct = frozenset("[]*`<>"), frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    entity = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
    text = re.sub(r"\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]", " ", text)
    out, n = [], len(text)
    for i, c in enumerate(text):
        if c in always:
            out.append("\\" + c)
        elif c == "_":
            before, after = (text[i - 1] if i > 0 else ""), (text[i + 1] if i + 1 < n else "")
            out.append("_" if before.isalnum() and after.isalnum() else "\\_")
        elif c == "\\":
            after = text[i + 1] if i + 1 < n else ""
            out.append("\\\\" if after == "" or after in punct else "\\")
        elif c == "&" and entity.match(text, i):
            out.append("\\&")
        else:
            out.append(c)
    escaped = "".join(out)
    m = re.match(r"([ ]{0,3})(?:([-+])|([0-9]{1,9})([.)]))(?=[ \t]|$)", escaped)
    if m:
        if m.group(2):
            escaped = f"{m.group(1)}\\{m.group(2)}{escaped[m.end():]}"
        else:
            escaped = f"{m.group(1)}{m.group(3)}\\{m.group(4)}{escaped[m.end():]}"
    return escaped


@FAST
@given(st.text(alphabet=st.sampled_from(list("aZ9 .)-+_*[]`<>\\&#;ltx\r\n\u2028\x85é·")), max_size=24))
def test_escape_markdown_is_what_the_full_loop_gives(text: str) -> None:
    assert escape_markdown(text) == _escape_markdown_before(text)


@pytest.mark.parametrize("text", ["12. starts a list", "- item", "  + item", "1) x", "123456789. x", "7.", "",
                                  "Tailspin Freight", "10,740.00", "120 ea"])
def test_plain_text_keeps_its_list_marker_escape(text: str) -> None:
    assert escape_markdown(text) == _escape_markdown_before(text)


# ---------------------------------------------------------------- numbers: toFixed without Decimal

def _to_fixed_before(x: float | int, digits: int) -> str:
    if not math.isfinite(x) or abs(x) >= 1e21:
        return num_str(x)
    q = Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{q:f}"
    if text.startswith("-") and q == 0:
        text = text[1:]
    return text


def _d3_fixed_before(x: float | int, precision: int, symbols: NumberSymbols = EN_US_NUMBERS) -> str:
    precision = max(0, min(20, precision))
    negative = x < 0 or (x == 0 and math.copysign(1.0, x) < 0)
    text = _to_fixed_before(abs(x), precision)
    i = 0
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    whole, suffix = text[:i], text[i:]
    if negative and float(text if text[:1].isdigit() else "nan") == 0:
        negative = False
    groups, size = [], symbols.primary
    while len(whole) > size:
        groups.append(whole[-size:])
        whole, size = whole[:-size], symbols.secondary
    groups.append(whole)
    if suffix.startswith("."):
        suffix = symbols.decimal + suffix[1:]
    return ("\u2212" if negative else "") + symbols.group.join(reversed(groups)) + suffix


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ArithmeticError as exc:  # Decimal's 28-digit context: the binding fails, as before
        return type(exc)


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e7, max_value=1e7),
    st.integers(min_value=-(10**22), max_value=10**22),
    st.integers(min_value=-(10**6), max_value=10**6).map(lambda n: n / 8),  # exact ties: 0.125, 2.5...
    st.integers(min_value=-(10**6), max_value=10**6).map(lambda n: n / 1000),
    st.sampled_from([0.5, 1.5, 2.5, -2.5, 0.125, 1.005, 2.675, 0.045, -0.0, 0.0, 1e20, 9.999e20, 1e-7, 5e-324]),
)
LOCALES = [EN_US_NUMBERS, number_symbols("de-DE"), number_symbols("fr-FR"), number_symbols("en-IN"),
           number_symbols("de-CH")]


@FAST
@given(NUMBERS, st.integers(min_value=0, max_value=24))
def test_to_fixed_is_what_decimal_gives(x: float | int, digits: int) -> None:
    assert _outcome(to_fixed, x, digits) == _outcome(_to_fixed_before, x, digits)


@FAST
@given(NUMBERS, st.integers(min_value=-1, max_value=22), st.sampled_from(LOCALES))
def test_d3_fixed_is_what_it_was(x: float | int, precision: int, symbols: NumberSymbols) -> None:
    assert _outcome(d3_fixed, x, precision, symbols) == _outcome(_d3_fixed_before, x, precision, symbols)


# ---------------------------------------------------------------- mentions: one search per mention

def test_a_mention_text_is_never_matched_across_two_texts() -> None:
    upn = Mention(id="alex@contoso.com\n", name="")  # a UPN may end in a line break, and names the mention
    assert "\n" in upn.text
    card: dict[str, Any] = {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "by <at>alex@contoso.com"},
                                             {"type": "TextBlock", "text": "</at>"}]}
    assert "msteams" not in attach_mentions(card, [upn])
    card["body"].append({"type": "TextBlock", "text": f"for {upn.text}"})
    assert attach_mentions(card, [upn])["msteams"]["entities"] == [upn.entity()]


def test_mentions_are_found_in_body_values_only() -> None:
    alex = Mention(id="alex@contoso.com", name="Alex")
    nested = {"type": "AdaptiveCard", "actions": [{"title": alex.text}],
              "body": [{"type": "Container", "items": [{"type": "FactSet", "facts": [{"value": f"x {alex.text}"}]}]}]}
    assert attach_mentions(nested, [alex])["msteams"]["entities"] == [alex.entity()]
    elsewhere = {"type": "AdaptiveCard", "actions": [{"title": alex.text}], "body": [{alex.text: "a key"}]}
    assert "msteams" not in attach_mentions(elsewhere, [alex])
    text_body = {"body": f"just {alex.text}"}
    assert attach_mentions(text_body, [alex])["msteams"]["entities"] == [alex.entity()]
