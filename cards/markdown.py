"""Escape text from F&O for the markdown Teams renders in a TextBlock's `text` and a Fact's `title` and `value`.

Teams renders a subset of CommonMark there (msteams-docs `task-modules-and-cards/cards/cards-format.md`): bold
(`**x**`), italic (`_x_`), bulleted and numbered lists (`- x`, `1. x`, one per line) and links (`[title](url)`);
HTML is not supported but `<at>Name</at>` is a mention when the card carries the matching entity. So a vendor named
`[Fabrikam - re-enter bank details](https://evil.example/login)` would post a clickable link to everyone in the
channel, and one named `<at>Megan Bowen</at>` would look like (or become) a mention.

`escape_markdown` neutralises exactly that with CommonMark backslash escapes, which Teams' renderers honour (desktop
and web through markdown, iOS and Android since Teams-AdaptiveCards-Mobile #58/#83), and leaves everything else as
it is, so "Tailspin Freight", "1,234.50" and "INV-001_A" read exactly as before:

- `[` `]` (links and images), `*` (bold, italic, `* ` lists), `` ` `` (a code span would show our backslashes),
  `<` `>` (mentions, HTML, autolinks);
- `_` only where it could open or close emphasis: not between two letters or digits (CommonMark ignores those);
- a backslash that would escape what follows it (before ASCII punctuation or at the end of the value);
- `&` only where it starts an entity such as `&lt;` or `&#91;`;
- a `-`, `+` or `1.`/`1)` list marker at the start of the value;
- line breaks become spaces: a value cannot start a new paragraph or list item, or push a fake line into the card.

Templates bind F&O text into those properties through `${...}`; `cards.template.expand(escape=...)` applies this
to each bound value (never to the template's own text), and `${raw(expr)}` opts a binding out (our own mention text).
"""

from __future__ import annotations

import re

__all__ = ["escape_markdown"]

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ALWAYS = frozenset("[]*`<>")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_LIST_MARKER = re.compile(r"([ ]{0,3})(?:([-+])|([0-9]{1,9})([.)]))(?=[ \t]|$)")
# Every character the loop below may change: text without any of them (most of F&O's) skips the loop.
_MAYBE_SPECIAL = re.compile(r"[\[\]*`<>_\\&\r\n\u2028\u2029\x0b\x0c\x85]")


def escape_markdown(text: str) -> str:
    """`text` with every markdown construct Teams renders in a TextBlock or Fact escaped (see the module docstring)."""
    if _MAYBE_SPECIAL.search(text) is None:
        return _escape_list_marker(text)
    text = _LINE_BREAKS.sub(" ", text)
    out: list[str] = []
    n = len(text)
    for i, c in enumerate(text):
        if c in _ALWAYS:
            out.append("\\" + c)
        elif c == "_":
            before = text[i - 1] if i > 0 else ""
            after = text[i + 1] if i + 1 < n else ""
            out.append("_" if before.isalnum() and after.isalnum() else "\\_")
        elif c == "\\":
            after = text[i + 1] if i + 1 < n else ""
            out.append("\\\\" if after == "" or after in _ASCII_PUNCT else "\\")
        elif c == "&" and _ENTITY.match(text, i):
            out.append("\\&")
        else:
            out.append(c)
    return _escape_list_marker("".join(out))


_MARKER_START = frozenset(" -+0123456789")  # what _LIST_MARKER can start with


def _escape_list_marker(escaped: str) -> str:
    if escaped[:1] not in _MARKER_START:  # "" is in no frozenset: an empty text has no marker either
        return escaped
    m = _LIST_MARKER.match(escaped)
    if m:
        if m.group(2):
            escaped = f"{m.group(1)}\\{m.group(2)}{escaped[m.end():]}"
        else:
            escaped = f"{m.group(1)}{m.group(3)}\\{m.group(4)}{escaped[m.end():]}"
    return escaped
