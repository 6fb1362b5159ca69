"""Is this card fit to post to Teams? Checks an expanded card, never a template.

The Adaptive Card 1.5 schema (`cards/schema/`, Microsoft's, draft-06) judges everything but `msteams`, which the
schema forbids (`additionalProperties: false` on the card) and Teams requires for mentions and full width; we check
`msteams` ourselves against what teams.md §2.3 documents.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema

from cards.mentions import card_texts, is_entra_id

SCHEMA_PATH = Path(__file__).parent / "schema" / "adaptive-card-1.5.schema.json"
MAX_VERSION = (1, 5)
_WIDTHS = {"Full"}
_AT = re.compile(r"^<at>[^<>]+</at>$")
_LEFTOVER = re.compile(r"\$\{[^}]*\}")


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft6Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft6Validator(schema)


def _version(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)*", value):
        return None
    return tuple(int(p) for p in value.split("."))


def _short(message: str, limit: int = 240) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def validate_card(card: Any) -> list[str]:
    """Return the card's problems as `"<json path>: <problem>"` strings; an empty list means fit to post."""
    if not isinstance(card, dict):
        return [f"$: a card is a JSON object, not {type(card).__name__}"]
    problems: list[str] = []
    if card.get("type") != "AdaptiveCard":
        problems.append("$.type: must be 'AdaptiveCard'")
    version = _version(card.get("version"))
    if version is None:
        problems.append(f"$.version: {card.get('version')!r} is not a version number")
    elif version > MAX_VERSION:
        problems.append(f"$.version: {card['version']} is newer than 1.5, the newest Teams renders for bots")

    without_teams = {k: v for k, v in card.items() if k != "msteams"}
    found: dict[str, None] = {}
    for error in _validator().iter_errors(without_teams):
        for problem in _deepest(error):
            found.setdefault(problem)
    problems.extend(found)
    if "msteams" in card:
        problems.extend(_msteams_problems(card))
    return problems


def _is_type_mismatch(error: jsonschema.ValidationError, base_depth: int) -> bool:
    path = list(error.absolute_path)
    return len(path) == base_depth + 1 and path[-1] == "type" and error.validator in ("enum", "const", "pattern")


def _deepest(error: jsonschema.ValidationError) -> list[str]:
    """Readable problems for one schema error.

    The schema says "anyOf" for every element and action; the alternative meant is the one whose `type` matched,
    and within it the errors that got furthest into the card.
    """
    if not error.context:
        return [f"{error.json_path}: {_short(error.message)}"]
    base = len(error.absolute_path)
    alternatives: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        alternatives.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)
    meant = [errs for errs in alternatives.values() if not any(_is_type_mismatch(e, base) for e in errs)]
    if not meant:
        kind = error.instance.get("type") if isinstance(error.instance, dict) else None
        return [f"{error.json_path}: unknown or misplaced type {kind!r}" if kind
                else f"{error.json_path}: {_short(error.message)}"]
    subs = [e for errs in meant for e in errs]
    depth = max(len(e.absolute_path) for e in subs)
    return [p for e in subs if len(e.absolute_path) == depth for p in _deepest(e)]


def _msteams_problems(card: dict[str, Any]) -> list[str]:
    msteams = card["msteams"]
    if not isinstance(msteams, dict):
        return ["$.msteams: must be an object"]
    problems: list[str] = []
    if "width" in msteams and msteams["width"] not in _WIDTHS:
        problems.append(f"$.msteams.width: {msteams['width']!r} is not one of {sorted(_WIDTHS)}")
    entities = msteams.get("entities", [])
    if not isinstance(entities, list):
        return [*problems, "$.msteams.entities: must be an array"]
    texts = list(card_texts(card))
    for i, entity in enumerate(entities):
        where = f"$.msteams.entities[{i}]"
        if not isinstance(entity, dict) or entity.get("type") != "mention":
            problems.append(f"{where}: only mention entities are expected")
            continue
        text = entity.get("text")
        mentioned = entity.get("mentioned") if isinstance(entity.get("mentioned"), dict) else {}
        if not isinstance(text, str) or not _AT.match(text):
            problems.append(f"{where}.text: {text!r} is not of the form <at>Name</at>")
        elif not any(text in t for t in texts):
            problems.append(f"{where}.text: {text!r} does not occur in the card text")
        mentioned = entity.get("mentioned")
        mentioned = mentioned if isinstance(mentioned, dict) else {}
        if not is_entra_id(mentioned.get("id")):
            problems.append(f"{where}.mentioned.id: {mentioned.get('id')!r} is neither an Entra object id nor a UPN")
        if not isinstance(mentioned.get("name"), str) or not mentioned.get("name"):
            problems.append(f"{where}.mentioned.name: missing")
    return problems


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def leftover_expressions(card: Any) -> list[str]:
    """Template expressions the engine left in place (it keeps `${name}` when `name` is missing from the data).

    Not part of `validate_card`: a user's own text may contain `${`; used by the catalog with sample data and by tests.
    """
    return [f"{path}: unexpanded {m.group(0)}" for path, text in _strings(card, "$") for m in _LEFTOVER.finditer(text)]
