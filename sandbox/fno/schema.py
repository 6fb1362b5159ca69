"""What this environment's OData service exposes: the full entity model minus what an admin removed.

Real F&O environments differ (version, configuration keys, ISV customisations): an entity may lack a field, the
workflow entity may lack an action, an entity set may not exist. The stand-in keeps every row complete (seeding
and the scenario write all fields) and applies the removals only at the OData surface: `$metadata`, the service
document, `$select`/`$filter`/`$orderby`, key segments, row output, bound actions. Knows nothing about HTTP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from sandbox.fno.state import EntityType


class SchemaError(ValueError):
    """A removal request names something that does not exist (answered 400 by the admin API)."""


@dataclass
class Schema:
    """Removals from the full model; empty means the environment exposes everything."""

    removed_fields: dict[str, set[str]] = field(default_factory=dict)  # entity set -> field names
    removed_actions: set[str] = field(default_factory=set)  # bound WorkflowWorkItems action names
    removed_sets: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.removed_fields.clear()
        self.removed_actions.clear()
        self.removed_sets.clear()

    def view(self, et: EntityType | None) -> EntityType | None:
        """The entity type as this environment exposes it, or None if its entity set is removed."""
        if et is None or et.set_name in self.removed_sets:
            return None
        gone = self.removed_fields.get(et.set_name)
        if not gone:
            return et
        return dataclasses.replace(et, keys=tuple(k for k in et.keys if k not in gone),
                                   kinds={k: v for k, v in et.kinds.items() if k not in gone},
                                   navs={k: v for k, v in et.navs.items() if k not in gone})

    def views(self, types: Iterable[EntityType]) -> list[EntityType]:
        return [v for v in (self.view(et) for et in types) if v is not None]

    def has_action(self, name: str) -> bool:
        return name not in self.removed_actions

    def apply(self, body: Mapping[str, Any], types: Mapping[str, EntityType], actions: Iterable[str]) -> None:
        """Apply an admin request: {reset, remove_fields: {set: [field]}, remove_actions: [..],
        remove_entity_sets: [..]}. Validates everything before changing anything; removals accumulate."""
        known = {"reset", "remove_fields", "remove_actions", "remove_entity_sets"}
        unknown = set(body) - known
        if unknown:
            raise SchemaError(f"unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
        fields = body.get("remove_fields") or {}
        if not isinstance(fields, dict) or not all(isinstance(v, list) for v in fields.values()):
            raise SchemaError('remove_fields must be {"EntitySet": ["Field", ...]}')
        for set_name, names in fields.items():
            if set_name not in types:
                raise SchemaError(f"remove_fields: unknown entity set {set_name!r}")
            missing = [n for n in names if n not in types[set_name].kinds and n not in types[set_name].navs]
            if missing:
                raise SchemaError(f"remove_fields: {set_name} has no field(s) {missing}")
        action_names = _names(body, "remove_actions")
        bad = sorted(set(action_names) - set(actions))
        if bad:
            raise SchemaError(f"remove_actions: unknown action(s) {bad}; known: {sorted(actions)}")
        set_names = _names(body, "remove_entity_sets")
        bad = sorted(set(set_names) - set(types))
        if bad:
            raise SchemaError(f"remove_entity_sets: unknown entity set(s) {bad}")
        if body.get("reset"):
            self.reset()
        for set_name, names in fields.items():
            self.removed_fields.setdefault(set_name, set()).update(names)
        self.removed_actions.update(action_names)
        self.removed_sets.update(set_names)

    def as_dict(self) -> dict[str, Any]:
        return {"remove_fields": {k: sorted(v) for k, v in self.removed_fields.items() if v},
                "remove_actions": sorted(self.removed_actions), "remove_entity_sets": sorted(self.removed_sets)}


def _names(body: Mapping[str, Any], option: str) -> list[str]:
    value = body.get(option) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{option} must be a list of names")
    return value
