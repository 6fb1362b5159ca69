"""Checks the Connector stand-in applies to a posted activity: size (teams.md §2.3) and a card lint.

The lint is stricter than real Teams on purpose (a knob, default on): every Adaptive Card must declare
`version` ≤ 1.5, and each `msteams.entities` mention's `text` must occur in the card's text, with a
`mentioned.id` Teams accepts (29: id, Entra object id, or UPN).
"""

from __future__ import annotations

import re

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_ACTIVITY_BYTES = 100 * 1024
MAX_CARD_VERSION = (1, 5)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _strings(node, skip_msteams: bool = True):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, skip_msteams)
    elif isinstance(node, dict):
        for key, value in node.items():
            if skip_msteams and key == "msteams":
                continue
            yield from _strings(value, skip_msteams)


def _version(raw) -> tuple[int, ...] | None:
    try:
        return tuple(int(x) for x in str(raw).split("."))
    except ValueError:
        return None


def lint_card(card) -> list[str]:
    """Problems with one Adaptive Card (empty list = fine)."""
    if not isinstance(card, dict):
        return ["attachment content is not a JSON object"]
    problems = []
    if card.get("type") != "AdaptiveCard":
        problems.append(f"card type is {card.get('type')!r}, expected 'AdaptiveCard'")
    version = _version(card.get("version"))
    if version is None:
        problems.append(f"card version {card.get('version')!r} is missing or malformed")
    elif version > MAX_CARD_VERSION:
        problems.append(f"card version {card.get('version')} is above 1.5, the highest Teams renders for bots")
    text = "\n".join(_strings(card))
    msteams = card.get("msteams") or {}
    for ent in msteams.get("entities") or []:
        if not isinstance(ent, dict) or ent.get("type") != "mention":
            continue
        mtext = ent.get("text") or ""
        if not mtext or mtext not in text:
            problems.append(f"mention entity text {mtext!r} does not occur in the card")
        mid = str((ent.get("mentioned") or {}).get("id") or "")
        if not (mid.startswith("29:") or mid.startswith("28:") or _GUID.match(mid) or "@" in mid):
            problems.append(f"mention id {mid!r} is not a 29: id, Entra object id or UPN")
    return problems


def lint_activity(activity) -> list[str]:
    if not isinstance(activity, dict):
        return ["activity is not a JSON object"]
    problems = []
    for i, att in enumerate(activity.get("attachments") or []):
        if isinstance(att, dict) and att.get("contentType") == CARD_TYPE:
            problems += [f"attachments[{i}]: {p}" for p in lint_card(att.get("content"))]
    return problems
