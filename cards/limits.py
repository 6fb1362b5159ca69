"""Keep a card under a size limit by shrinking it, never by failing.

Size is the card's compact UTF-8 JSON. Teams takes bot messages up to ~100 KB (teams.md §2.3), but 28 KB is the limit
of the other surfaces a card may travel to (message-extension results, webhooks/Workflows), so that is our default.
Order of remedies: show fewer lines (the caller re-expands the template with fewer, raising `moreLines`); then
shorten long texts; last, a minimal card with the event's identifiers and the link to Dynamics. This module does not
know templates: it gets a `build(n_lines)` callable from `cards.render`.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

from cards.markdown import escape_markdown

DEFAULT_MAX_BYTES = 28_000
_TEXT_KEYS = {"text", "value", "title", "placeholder", "label", "altText"}
_TRUNCATE_STEPS = (2000, 800, 300, 120, 60)


def card_size(card: Any) -> int:
    """Bytes of the card as compact UTF-8 JSON (how it travels inside the activity)."""
    # No circularity check (a quarter of the encoding's time): a card is a tree, every object of it built fresh by
    # the expander, minimal_card or truncate_texts' copy, so it cannot hold a cycle.
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":"), check_circular=False).encode("utf-8"))


def fit_lines(build: Callable[[int], dict[str, Any]], available: int, max_bytes: int) -> tuple[dict[str, Any], int]:
    """The card with the most lines (0..available) that fits, and that number (see `fit_lines_sized`)."""
    card, shown, _size = fit_lines_sized(build, available, max_bytes)
    return card, shown


def fit_lines_sized(
    build: Callable[[int], dict[str, Any]], available: int, max_bytes: int
) -> tuple[dict[str, Any], int, int]:
    """The card with the most lines (0..available) that fits, that number, and the card's size in bytes.

    If even 0 lines is too large, returns the 0-line card: the caller goes on to `truncate_texts`. Sizes grow with
    the number of lines, so a binary search needs about log2(available) expansions; the first try is `available`
    because most cards fit as they are. Each candidate is encoded once, and its size handed back, so the caller
    never measures the card again (encoding is most of a render's cost after expansion).
    """
    card = build(available)
    size = card_size(card)
    if size <= max_bytes or available == 0:
        return card, available, size
    best: tuple[dict[str, Any], int, int] | None = None
    zero: tuple[dict[str, Any], int, int] | None = None
    lo, hi = 0, available - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = build(mid)
        candidate_size = card_size(candidate)
        if candidate_size <= max_bytes:
            best = (candidate, mid, candidate_size)
            lo = mid + 1
        else:
            if mid == 0:
                zero = (candidate, 0, candidate_size)  # the search ends here without a fit: no need to rebuild it
            hi = mid - 1
    if best is not None:
        return best
    if zero is not None:
        return zero
    card = build(0)
    return card, 0, card_size(card)


def _text_slots(node: Any) -> list[tuple[dict[str, Any], str]]:
    slots: list[tuple[dict[str, Any], str]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "msteams":
                    continue
                # Mentions are matched verbatim by Teams: never cut inside one.
                if key in _TEXT_KEYS and isinstance(value, str) and "<at>" not in value:
                    slots.append((item, key))
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return slots


def truncate_texts(card: dict[str, Any], max_bytes: int) -> dict[str, Any] | None:
    """A copy of `card` with long texts cut (ending in …) until it fits, or None if cutting is not enough."""
    found = truncate_texts_sized(card, max_bytes)
    return found[0] if found is not None else None


def truncate_texts_sized(card: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], int] | None:
    """`truncate_texts`, with the size of the card it returns."""
    for limit in _TRUNCATE_STEPS:
        shorter = copy.deepcopy(card)
        for holder, key in _text_slots(shorter):
            text = holder[key]
            if len(text) > limit:
                holder[key] = text[: limit - 1].rstrip() + "…"
        size = card_size(shorter)
        if size <= max_bytes:
            return shorter, size
    return None


def _clip(value: Any, limit: int = 120) -> str:
    """Display text from the data (F&O's): escaped for Teams' markdown, like every bound value, and cut."""
    text = "" if value is None else str(value)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return escape_markdown(text)


def minimal_card(data: dict[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The last resort: event type, identifiers and the link to Dynamics. Built in code so it cannot fail."""
    event = data.get("event")
    event = event if isinstance(event, dict) else {}
    facts = [
        {"title": title, "value": _clip(value)}
        for title, value in (
            ("Legal entity", str(data.get("legalEntity") or "").upper()),
            ("Event ID", event.get("EventId")),
            ("Event time", data.get("eventTime")),
        )
        if value
    ]
    body: list[dict[str, Any]] = [
        {"type": "Container", "style": "emphasis", "bleed": True, "items": [
            {"type": "TextBlock", "text": _clip(data.get("eventType") or "Business event"), "size": "Large",
             "weight": "Bolder", "wrap": True},
        ]},
        {"type": "TextBlock", "wrap": True, "spacing": "Medium",
         "text": "This event has too much detail to show in Teams. Open it in Dynamics to see everything."},
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"}, "body": body,
    }
    url = data.get("openUrl")
    if isinstance(url, str) and url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Dynamics", "url": url}]
    if card_size(card) > max_bytes:
        card.pop("actions", None)
        card["body"] = body[:2]
    return card
