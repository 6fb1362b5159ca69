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
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def fit_lines(build: Callable[[int], dict[str, Any]], available: int, max_bytes: int) -> tuple[dict[str, Any], int]:
    """The card with the most lines (0..available) that fits, and that number.

    If even 0 lines is too large, returns the 0-line card: the caller goes on to `truncate_texts`. Sizes grow with
    the number of lines, so a binary search needs about log2(available) expansions; the first try is `available`
    because most cards fit as they are.
    """
    card = build(available)
    if card_size(card) <= max_bytes or available == 0:
        return card, available
    best_card, best = None, 0
    lo, hi = 0, available - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = build(mid)
        if card_size(candidate) <= max_bytes:
            best_card, best = candidate, mid
            lo = mid + 1
        else:
            hi = mid - 1
    return (best_card, best) if best_card is not None else (build(0), 0)


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
    for limit in _TRUNCATE_STEPS:
        shorter = copy.deepcopy(card)
        for holder, key in _text_slots(shorter):
            text = holder[key]
            if len(text) > limit:
                holder[key] = text[: limit - 1].rstrip() + "…"
        if card_size(shorter) <= max_bytes:
            return shorter
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
