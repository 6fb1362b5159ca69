"""The small template language of enrichment plans: `{event.PurchaseOrderNumber}`, `{order.X|event.Y}`.

A template is text with references in braces. A reference is a dotted path whose first name is a root the caller
provides (`event`, `company`, `base_url`, or an earlier fetch); `a|b` means "a, or b when a resolves to nothing".
`{{` and `}}` are literal braces. Nothing here knows about OData or plans; errors are ValueError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = ["NOTHING", "Template"]

_SEGMENT = re.compile(r"[A-Za-z_@][A-Za-z0-9_@]*|\d+")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote(text, safe="") leaves as it is (RFC 3986 unreserved)


class _Nothing:
    """What a reference resolves to when the value is absent, null or blank."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


@dataclass(frozen=True)
class _Ref:
    alternatives: tuple[tuple[str, ...], ...]  # each a path; the first that resolves wins

    @property
    def roots(self) -> frozenset[str]:
        return frozenset(path[0] for path in self.alternatives)

    def resolve(self, context: Mapping[str, Any]) -> Any:
        for path in self.alternatives:
            value = _walk(context, path)
            if value is not NOTHING:
                return value
        return NOTHING


@dataclass(frozen=True)
class Template:
    """A parsed template. `Template.parse(text)` raises ValueError saying what is wrong."""

    text: str
    parts: tuple[str | _Ref, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | _Ref] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char == "{" and text.startswith("{{", i):
                literal.append("{")
                i += 2
            elif char == "}" and text.startswith("}}", i):
                literal.append("}")
                i += 2
            elif char == "{":
                end = text.find("}", i)
                if end < 0:
                    raise ValueError(f"unclosed '{{' in {text!r}")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(_parse_ref(text[i + 1 : end], text))
                i = end + 1
            elif char == "}":
                raise ValueError(f"unmatched '}}' in {text!r} (write '}}}}' for a literal brace)")
            else:
                literal.append(char)
                i += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    @property
    def roots(self) -> set[str]:
        """First names of every reference, to check them against what will exist."""
        return {path[0] for part in self.parts if isinstance(part, _Ref) for path in part.alternatives}

    @property
    def is_literal(self) -> bool:
        return not any(isinstance(part, _Ref) for part in self.parts)

    def render_value(self, context: Mapping[str, Any]) -> Any:
        """A lone reference keeps its JSON type (an int key stays an int); anything else renders as text.

        Returns NOTHING when any reference resolves to nothing.
        """
        if len(self.parts) == 1 and isinstance(self.parts[0], _Ref):
            return self.parts[0].resolve(context)
        return self.render(context)

    def render(self, context: Mapping[str, Any], *, url_quote_except: frozenset[str] = frozenset()) -> Any:
        """Text with every reference substituted, or NOTHING.

        Args:
            url_quote_except: when not empty, substituted values are percent-encoded for a URL, except references
                whose root is in this set (e.g. `base_url`, which is already a URL).
        """
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.resolve(context)
            if value is NOTHING:
                return NOTHING
            text = _scalar_text(value)
            if url_quote_except and not _UNRESERVED.fullmatch(text) and not part.roots & url_quote_except:
                text = quote(text, safe="")  # (text of unreserved characters only is its own encoding)
            out.append(text)
        return "".join(out)


def _parse_ref(expr: str, text: str) -> _Ref:
    alternatives = []
    for alternative in expr.split("|"):
        path = tuple(segment.strip() for segment in alternative.split("."))
        if not path or not all(_SEGMENT.fullmatch(segment) for segment in path) or path[0].isdigit():
            raise ValueError(f"bad reference {{{expr}}} in {text!r}: expected names like event.PurchaseOrderNumber")
        alternatives.append(path)
    return _Ref(tuple(alternatives))


def _walk(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = context
    for segment in path:
        if isinstance(value, Mapping):
            value = value.get(segment, NOTHING)
        elif isinstance(value, list) and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else NOTHING
        else:
            return NOTHING
        if value is NOTHING or value is None:
            return NOTHING
    if isinstance(value, str) and not value.strip():
        return NOTHING
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise ValueError("a reference inside text resolved to an object or array")
    return str(value)
