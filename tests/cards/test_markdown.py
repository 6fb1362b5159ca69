"""Text from F&O cannot post links, emphasis, lists, HTML or mentions: it is escaped for Teams' markdown wherever a
template binds it into a TextBlock or a FactSet, and still reads as written. Our own mention text stays a mention
(`${raw(...)}`), URLs in Action.OpenUrl and Action.Execute data are untouched.

The rendering check runs the escaped texts through markdown-it (cards/vendor, the markdown engine Microsoft's
JavaScript renderer is paired with in our preview) under Node: no `<a>`, `<strong>`, `<em>`, list or code element
may come out, and the text a reader sees must be the F&O text itself.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from card_variants import TEMPLATES, sample
from cards import expand
from cards.catalog import Catalog
from cards.markdown import escape_markdown
from cards.render import render
from cards.validate import validate_card

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN_IT = ROOT / "cards" / "vendor" / "markdown-it" / "markdown-it.min.js"

LINK = "[Fabrikam – re-enter bank details](https://evil.example/login)"
HOSTILE = [
    LINK,
    "**URGENT** pay _now_ *here*",
    "<at>Megan Bowen</at>",
    "<b>bold</b> <img src=x onerror=alert(1)> <https://evil.example>",
    "Line one\n\n- fake item\r\n1. another\rthird\u2028fourth",
    "- starts a list",
    "12. starts a numbered list",
    "![logo](https://evil.example/a.png) `code` \\[not a link\\](x)",
    "&#91;entity&#93;(https://evil.example) &lt;at&gt;",
]
ORDINARY = ["Tailspin Freight", "1,234,567.89", "INV-001_A", "Müller & Söhne GmbH", "US-104", "50 %",
            "DOMAIN\\alex", "PO 00000123 · Fabrikam Supplier", "C++ (x86)", "a_b_c", "2026-11-26", "−1.234,56"]


# ---------------------------------------------------------------- the escaper itself

@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_as_it_is(text: str) -> None:
    assert escape_markdown(text) == text


@pytest.mark.parametrize("text,expected", [
    (LINK, "\\[Fabrikam – re-enter bank details\\](https://evil.example/login)"),
    ("**b** _i_ *i*", "\\*\\*b\\*\\* \\_i\\_ \\*i\\*"),
    ("<at>Megan Bowen</at>", "\\<at\\>Megan Bowen\\</at\\>"),
    ("a\nb\r\nc\n\nd", "a b c  d"),
    ("- x", "\\- x"), ("+ x", "\\+ x"), ("* x", "\\* x"), ("3. x", "3\\. x"), ("3) x", "3\\) x"),
    ("3.5 x", "3.5 x"), ("-5 USD", "-5 USD"),
    ("_lead", "\\_lead"), ("trail_", "trail\\_"), ("snake_case_name", "snake_case_name"),
    ("\\[", "\\\\\\["), ("ends with \\", "ends with \\\\"),
    ("&amp; &#91; &#x5B;", "\\&amp; \\&#91; \\&#x5B;"), ("R&D", "R&D"),
    ("`x`", "\\`x\\`"),
])
def test_markdown_that_teams_renders_is_escaped(text: str, expected: str) -> None:
    assert escape_markdown(text) == expected


# ---------------------------------------------------------------- the engine: where escaping applies

def test_only_bound_values_in_markdown_properties_are_escaped() -> None:
    template = {"type": "AdaptiveCard", "body": [
        {"type": "TextBlock", "text": "**Vendor** ${v}"},
        {"type": "TextBlock", "text": "${v}"},
        {"type": "TextBlock", "text": "${raw(v)} and ${v}"},
        {"type": "TextBlock", "text": "${concat(raw(m), ' / ', v)}"},
        {"type": "FactSet", "facts": [{"title": "${v}", "value": "${v}"},
                                      {"$data": "${rows}", "title": "${t}", "value": "x ${t}"}]},
        {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "${v}"}]},
        {"type": "Input.Text", "id": "c", "label": "${v}", "placeholder": "${v}"},
    ], "actions": [{"type": "Action.OpenUrl", "title": "${v}", "url": "${url}"},
                   {"type": "Action.Execute", "title": "Go", "data": {"id": "${v}"}}]}
    data = {"v": "[x](https://e.example) *y*", "m": "<at>Megan</at>", "rows": [{"t": "_a_"}],
            "url": "https://contoso.example/?mi=Purch_Table&x=[1](2)"}
    esc = escape_markdown(data["v"])
    card = expand(template, data, escape=escape_markdown)
    body = card["body"]
    assert body[0]["text"] == "**Vendor** " + esc  # the template's own markdown is kept
    assert body[1]["text"] == esc
    assert body[2]["text"] == "[x](https://e.example) *y* and " + esc
    assert body[3]["text"] == "<at>Megan</at> / " + esc
    assert body[4]["facts"] == [{"title": esc, "value": esc}, {"title": "\\_a\\_", "value": "x \\_a\\_"}]
    # not markdown in Teams: plain text runs, input labels, action titles, URLs and submitted data
    assert body[5]["inlines"][0]["text"] == data["v"]
    assert body[6]["label"] == data["v"] and body[6]["placeholder"] == data["v"]
    assert card["actions"][0] == {"type": "Action.OpenUrl", "title": data["v"], "url": data["url"]}
    assert card["actions"][1]["data"] == {"id": data["v"]}
    # without `escape` the engine is Microsoft's: nothing is escaped, raw() is the value itself
    plain = expand(template, data)
    assert plain["body"][1]["text"] == data["v"] and plain["body"][2]["text"] == f"{data['v']} and {data['v']}"


def test_numbers_and_unresolved_bindings_are_not_escaped() -> None:
    template = {"type": "TextBlock", "text": "${n}", "x": 1}
    assert expand(template, {"n": 5}, escape=escape_markdown)["text"] == 5
    tb = {"type": "TextBlock", "text": "a ${missing_x} ${n}"}
    assert expand(tb, {"n": 1.5}, escape=escape_markdown)["text"] == "a ${missing_x} 1.5"


# ---------------------------------------------------------------- every template, every bound field

def _poison(node: Any, text: str) -> Any:
    """Every string in the data (events, records, fields, digest rows) replaced by `text`, except what is not F&O
    display text: URLs, ids the card posts back, mentions (resolved by us, not F&O), the locale and dates, and the
    card mechanics "my approvals" computes (button verbs, styles and data, input ids)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("openUrl", "baseUrl", "cardUrl", "mentions", "locale", "workItemId", "eventId", "outcomes",
                     "verb", "style", "data", "commentId"):
                out[k] = copy.deepcopy(v)
            else:
                out[k] = _poison(v, text)
        return out
    if isinstance(node, list):
        return [_poison(v, text) for v in node]
    return text if isinstance(node, str) and not _DATE.match(node) else node


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|/Date\(")  # dates stay dates: the templates format them


def markdown_texts(card: Any, fact: bool = False) -> Iterator[str]:
    """Every string Teams renders as markdown: TextBlock text, fact titles and values."""
    if isinstance(card, dict):
        if card.get("type") == "TextBlock" and isinstance(card.get("text"), str):
            yield card["text"]
        if fact:
            for key in ("title", "value"):
                if isinstance(card.get(key), str):
                    yield card[key]
        for key, value in card.items():
            yield from markdown_texts(value, fact=(card.get("type") == "FactSet" and key == "facts"))
    elif isinstance(card, list):
        for item in card:
            yield from markdown_texts(item, fact=fact)


_MENTION = re.compile(r"<at>[^<]*</at>")


def _unescaped(text: str, chars: str) -> list[int]:
    """Positions of `chars` not preceded by an odd number of backslashes."""
    hits = []
    for i, c in enumerate(text):
        if c in chars:
            j, slashes = i - 1, 0
            while j >= 0 and text[j] == "\\":
                slashes, j = slashes + 1, j - 1
            if slashes % 2 == 0:
                hits.append(i)
    return hits


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


CASES = [(name, i) for name in TEMPLATES for i in range(len(HOSTILE))]


@pytest.mark.parametrize("name,i", CASES, ids=[f"{n}:{i}" for n, i in CASES])
def test_fno_text_in_every_bound_field_is_inert(catalog: Catalog, name: str, i: int) -> None:
    hostile = HOSTILE[i]
    data = _poison(sample(name), hostile)
    data["mentions"] = {"initiator": {"id": "8f3a2c1e-5b7d-4e9a-a1c2-3d4e5f607182", "name": "Alex Wilber"},
                        "approver": {"id": "megan@contoso.example", "name": "Megan Bowen"}}
    card = render(name, data, catalog=catalog).card
    assert validate_card(card) == []
    texts = list(markdown_texts(card))
    assert any(escape_markdown(hostile) in t for t in texts), "the hostile text is shown (escaped) somewhere"
    for text in texts:
        without_ours = _MENTION.sub("", text) if "<at>" in text else text
        # our own mentions are the only <at> tags; nothing else opens a link, emphasis, code, tag or line
        assert all(m in ("<at>Alex Wilber</at>", "<at>Megan Bowen</at>") for m in _MENTION.findall(text)), text
        assert not _unescaped(without_ours, "[]*`<>"), text
        assert "\n" not in text and "\r" not in text, text
    # Teams matches mention entities verbatim: a vendor called "<at>Megan Bowen</at>" must not become one
    entities = card.get("msteams", {}).get("entities", [])
    for entity in entities:
        assert entity["text"] in ("<at>Alex Wilber</at>", "<at>Megan Bowen</at>")
    # links and posted-back data are not markdown: never escaped
    urls = [a["url"] for a in _actions(card, "Action.OpenUrl")]
    assert all("\\" not in u for u in urls)


def _actions(card: Any, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == kind:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def test_our_mentions_stay_mentions(catalog: Catalog) -> None:
    data = sample("purchase-order-confirmed")
    data["mentions"] = {"initiator": {"id": "8f3a2c1e-5b7d-4e9a-a1c2-3d4e5f607182", "name": "Alex Wilber"}}
    card = render("purchase-order-confirmed", data, catalog=catalog).card
    assert "Confirmed by <at>Alex Wilber</at>" in list(markdown_texts(card))
    assert [e["text"] for e in card["msteams"]["entities"]] == ["<at>Alex Wilber</at>"]
    approval = sample("workflow-approval")
    approval["mentions"] = {"approver": {"id": "megan@contoso.example", "name": "Megan Bowen"}}
    card = render("workflow-approval", approval, catalog=catalog).card
    assert "<at>Megan Bowen</at>" in list(markdown_texts(card))
    assert [e["mentioned"]["id"] for e in card["msteams"]["entities"]] == ["megan@contoso.example"]


def test_open_url_and_action_data_keep_fno_values_verbatim(catalog: Catalog) -> None:
    data = sample("workflow-approval")
    data["openUrl"] = "https://contoso.example/?cmp=usmf&mi=Purch_Table&PurchId=PO_[1]*"
    data["approval"]["workItemId"] = "WI_*[7]"
    card = render("workflow-approval", data, catalog=catalog).card
    assert data["openUrl"] in [a["url"] for a in _actions(card, "Action.OpenUrl")]
    assert {a["data"]["workItemId"] for a in _actions(card, "Action.Execute")} == {"WI_*[7]"}


# ---------------------------------------------------------------- what a reader sees (markdown-it under Node)

_MD_JS = r"""
const md = require(process.argv[1])();
const texts = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(texts.map((t) => md.render(t))));
"""


def _markdown_it(texts: list[str]) -> list[str]:
    if shutil.which("node") is None:
        if os.environ.get("ML_REQUIRE_ORACLES") == "1":
            pytest.fail("ML_REQUIRE_ORACLES=1 but node is not installed")
        pytest.skip("node is not installed")
    proc = subprocess.run(["node", "-e", _MD_JS, str(MARKDOWN_IT)], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.node
def test_markdown_renderer_shows_the_text_and_no_markup() -> None:
    originals = HOSTILE + ORDINARY
    rendered = _markdown_it([escape_markdown(t) for t in originals])
    for original, out in zip(originals, rendered, strict=True):
        assert not re.search(r"<(a|strong|em|ul|ol|li|code|img|h\d|blockquote|pre|s|del)\b", out), (original, out)
        assert out.count("<p>") <= 1, (original, out)
        seen = html.unescape(re.sub(r"</?p>", "", out)).strip()
        expected = re.sub(r"\r\n|[\r\n\u2028\u2029]", " ", original).strip()
        assert seen == expected, (original, out)
