"""Turn card data into a card that is fit to post: mentions, line caps, expansion, size limit.

`render` is what connector/ calls. It takes the card data described in DEVELOPERS.md "Card data" and never fetches
anything. On top of that contract, the templates read a few optional keys the caller may add:

- `fields`: `[{"name": str, "value": str}]`, the event's own (non-envelope) fields, for `generic-event` and
  `record-unavailable`; build it with `event_fields(event)`.
- `title`: a heading for `generic-event` / `record-unavailable` (default: `eventType`).
- `moreLines`: lines the caller already left out (e.g. fetched with `$top`); `render` adds the ones it drops.
- `digest.title` (e.g. "purchase orders confirmed"; default `eventType`) and `digest.since` (ISO time).
- `approval.decidedBy` (display text) and `approval.comment`, shown once decided.
- `locale` (BCP 47, e.g. `de-DE`): numbers and dates are formatted for it (CLDR, `cards.locales`); `render` sets it
  to `en-US` when missing or unknown, so templates can always pass `$root.locale` to formatNumber/formatDateTime.

Every value bound into a TextBlock's `text` or a fact's `title`/`value` is escaped for Teams' markdown
(`cards.markdown`), so F&O text cannot post links, emphasis, lists or mentions; `${raw(expr)}` opts a binding out (the
templates use it for `mentions.<role>.text` only).

Line arrays (`record.lines`, `digest.items`) are cut to `max_lines`, then further while the card is over
`max_bytes` (see `cards.limits`). `digest.count` stays the total so the card can say "and N more".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cards.catalog import Catalog
from cards.locales import DEFAULT_LOCALE, canonical_locale
from cards.limits import DEFAULT_MAX_BYTES, card_size, fit_lines_sized, minimal_card, truncate_texts_sized
from cards.markdown import escape_markdown
from cards.mentions import attach_mentions, prepare_mentions
from cards.template import expand

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"

# Business Event envelope fields (dynamics.md §1.1): everything else in the payload is the event's own.
ENVELOPE_FIELDS = frozenset({
    "BusinessEventId", "BusinessEventLegalEntity", "ContextRecordSubject", "ControlNumber", "EventId", "EventTime",
    "EventTimeIso8601", "InitiatingUserAADObjectId", "MajorVersion", "MinorVersion", "ParentContextRecordSubjects",
})


@dataclass(frozen=True)
class RenderedCard:
    """A card ready for `card_attachment`, and what was done to make it fit."""

    card: dict[str, Any]
    bytes: int
    lines_shown: int
    lines_dropped: int
    template_name: str
    shrunk: tuple[str, ...] = field(default=())  # subset of ("lines", "texts", "minimal"), in the order applied


def card_attachment(card: dict[str, Any]) -> dict[str, Any]:
    """The Bot Framework attachment that carries `card`."""
    return {"contentType": CARD_CONTENT_TYPE, "content": card}


def event_fields(event: dict[str, Any]) -> list[dict[str, str]]:
    """The event's non-envelope fields as `[{"name", "value"}]` (sorted by name, values as text) for `fields`."""
    out = []
    for name in sorted(event):
        if name in ENVELOPE_FIELDS:
            continue
        value = event[name]
        if isinstance(value, bool):
            text = "Yes" if value else "No"
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(v) for v in value)
        elif value is None:
            text = ""
        else:
            text = str(value)
        out.append({"name": name, "value": text})
    return out


def _line_arrays(data: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(holder, key) of each line array present: record.lines and digest.items."""
    found = []
    for outer, key in (("record", "lines"), ("digest", "items")):
        holder = data.get(outer)
        if isinstance(holder, dict) and isinstance(holder.get(key), list):
            found.append((holder, key))
    return found


def _with_lines(data: dict[str, Any], n: int, base_more: int) -> dict[str, Any]:
    out = dict(data)
    more = base_more
    for outer, key in (("record", "lines"), ("digest", "items")):
        holder = data.get(outer)
        if isinstance(holder, dict) and isinstance(holder.get(key), list):
            full = holder[key]
            out[outer] = {**holder, key: full[:n]}
            if key == "lines":
                more += max(0, len(full) - n)
    out["moreLines"] = more
    return out


def render(
    template: str | dict[str, Any],
    data: dict[str, Any],
    *,
    catalog: Catalog | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_lines: int = 20,
    now: Any = None,
) -> RenderedCard:
    """Expand `template` (a catalog name, or a template dict) with `data` into a card under `max_bytes`.

    Args:
        template: template name in `catalog` (default: the built-in templates) or the template itself.
        data: card data (DEVELOPERS.md "Card data"); not modified.
        max_bytes: size limit of the card's compact UTF-8 JSON; the card is shrunk to fit, never refused.
        max_lines: most lines (and digest items) shown before "and N more".
        now: passed to the template engine (for relative dates).
    Raises:
        KeyError: unknown template name.
        cards.errors.TemplateError: the template does not expand with this data.
    """
    if isinstance(template, str):
        if catalog is None:
            catalog = Catalog.builtin()
        # The catalog's JSON text, not a copy of the dict: the engine prepares a text once and reuses it.
        name, tpl = template, catalog.template_text(template)
    else:
        name, tpl = "<inline>", json.dumps(template)  # prepared once for every build below, not per build

    # No deep copy: only top-level keys are replaced here and in _with_lines, and the engine copies every value it
    # binds into the card (cards.template._copy), so neither the card nor this function changes the caller's data.
    prepared, mentions = prepare_mentions(data)
    prepared["locale"] = canonical_locale(prepared.get("locale")) or DEFAULT_LOCALE
    more_lines = prepared.get("moreLines")
    base_more = more_lines if isinstance(more_lines, int) else 0
    digest = prepared.get("digest")
    if isinstance(digest, dict) and isinstance(digest.get("items"), list):
        count = digest.get("count")
        prepared["digest"] = {**digest, "count": max(count if isinstance(count, int) else 0, len(digest["items"]))}
    arrays = _line_arrays(prepared)
    total = max((len(h[k]) for h, k in arrays), default=0)
    available = min(max(max_lines, 0), total)

    def build(n: int) -> dict[str, Any]:
        # Text from F&O is escaped for Teams' markdown; a template opts a binding out with ${raw(...)}.
        card = expand(tpl, _with_lines(prepared, n, base_more), name=name, now=now, escape=escape_markdown)
        return attach_mentions(card, mentions)

    # Each candidate card is encoded once to measure it; that size is carried through, never measured again.
    card, shown, size = fit_lines_sized(build, available, max_bytes)
    shrunk: list[str] = ["lines"] if shown < available else []
    if size > max_bytes:
        shorter = truncate_texts_sized(card, max_bytes)
        if shorter is not None:
            (card, size), shrunk = shorter, [*shrunk, "texts"]
        else:
            card, shrunk = minimal_card(prepared, max_bytes), [*shrunk, "minimal"]
            size = card_size(card)
            shown = 0
    lines_total = sum(len(h[k]) for h, k in arrays)
    lines_shown = sum(min(shown, len(h[k])) for h, k in arrays)
    return RenderedCard(
        card=card,
        bytes=size,
        lines_shown=lines_shown,
        lines_dropped=lines_total - lines_shown,
        template_name=name,
        shrunk=tuple(shrunk),
    )
