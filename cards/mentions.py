"""Teams @mentions in cards.

Before expansion, `prepare_mentions` gives every resolvable `mentions.<role>` in the card data a `text`
(`<at>Name</at>`) for templates to bind; after expansion, `attach_mentions` adds one `msteams.entities` mention per
person whose text really occurs in the card, because Teams only notifies (and only renders a mention) when the entity
text and the card text match verbatim. Resolving people (Graph, F&O users) is the caller's job, not ours.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterator

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")
# A UPN is user@domain; Teams also accepts guest UPNs such as alex_fabrikam.com#EXT#@contoso.onmicrosoft.com.
_UPN = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def is_entra_id(value: object) -> bool:
    """True for an Entra object id (GUID, braces allowed) or a user principal name."""
    return isinstance(value, str) and bool(_GUID.match(value) or _UPN.match(value))


def normalise_id(value: str) -> str:
    """F&O sends object ids as `{C600136F-...}`; Teams wants the bare lower-case GUID. UPNs pass unchanged."""
    match = _GUID.match(value)
    return match.group(1).lower() if match else value


@dataclass(frozen=True)
class Mention:
    """One person to @mention. `id` is an Entra object id or UPN; `name` is what the card shows."""

    id: str
    name: str

    def __post_init__(self) -> None:
        if not is_entra_id(self.id):
            raise ValueError(f"mention id {self.id!r} is neither an Entra object id nor a UPN")
        # `<` and `>` would end the <at> tag early; an empty name would make an invisible mention.
        clean = " ".join(self.name.replace("<", "").replace(">", "").split())
        object.__setattr__(self, "id", normalise_id(self.id))
        object.__setattr__(self, "name", clean or self.id)

    @property
    def text(self) -> str:
        return f"<at>{self.name}</at>"

    def entity(self) -> dict[str, Any]:
        return {"type": "mention", "text": self.text, "mentioned": {"id": self.id, "name": self.name}}


def prepare_mentions(data: dict[str, Any]) -> tuple[dict[str, Any], list[Mention]]:
    """Return a copy of `data` whose `mentions.<role>` carry `text`, and the mentions themselves.

    A role whose id is not a GUID/UPN (or whose entry is malformed) is dropped with a log line rather than failing
    the card: the template then shows its no-mention variant.
    """
    out = dict(data)
    raw = data.get("mentions")
    if not isinstance(raw, dict):
        out["mentions"] = {}
        return out, []
    prepared: dict[str, Any] = {}
    found: list[Mention] = []
    for role, entry in raw.items():
        try:
            mention = Mention(id=entry["id"], name=str(entry.get("name") or ""))
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            log.warning("dropping mention %r: %s", role, exc)
            continue
        prepared[role] = {**copy.deepcopy(entry), "id": mention.id, "name": mention.name, "text": mention.text}
        found.append(mention)
    out["mentions"] = prepared
    return out, found


def card_texts(card: dict[str, Any]) -> Iterator[str]:
    """Every string the card shows in its body (TextBlocks, FactSets, RichText runs...)."""
    stack: list[Any] = [card.get("body", [])]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _body_texts(card: dict[str, Any]) -> list[str]:
    """The strings `card_texts` yields, as a list (the order differs); exact types checked first, as the expander
    produces them, subclasses still found."""
    texts: list[str] = []
    stack: list[Any] = [card.get("body", [])]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            if isinstance(node, str):
                texts.append(node)
            continue
        for v in node:
            t = type(v)
            if t is str:
                texts.append(v)
            elif t is dict or t is list or isinstance(v, (str, dict, list)):
                stack.append(v)
    return texts


def attach_mentions(card: dict[str, Any], mentions: list[Mention]) -> dict[str, Any]:
    """Add `msteams.entities` for each mention whose `<at>` text occurs in the card body. Mutates and returns `card`."""
    if not mentions:  # nothing to look for: skip the walk over every text of the card
        return card
    texts = _body_texts(card)
    # One search over all the texts joined by a line break instead of one per text: a mention text without a line
    # break cannot match across two of them (a text holding one, possible for a UPN, is searched text by text).
    joined = "\n".join(texts)
    entities: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for mention in mentions:
        key = (mention.text, mention.id)
        if key in seen:
            continue
        text = mention.text
        if not (text in joined if "\n" not in text else any(text in t for t in texts)):
            continue
        seen.add(key)
        entities.append(mention.entity())
    if entities:
        msteams = card.setdefault("msteams", {})
        msteams["entities"] = [*msteams.get("entities", []), *entities]
    return card
