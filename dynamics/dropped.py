"""Fields an F&O environment turned out not to have, remembered so later reads leave them out.

Environments differ (version, configuration keys, customisations): a default plan may `$select` a field that an
environment's entity lacks, and F&O then refuses the whole read (400 "Could not find a property named ..."). The
enrichment drops such an optional field for that environment and entity set, here, for the life of the process,
so only the first event that meets the gap pays a failing request. One `DroppedFields` per environment.

A navigation property is a property of the entity type too: a plan's `$expand` navigation that F&O refuses is
remembered here the same way (under the expanding fetch's entity set), and that fetch is then read on its own.

`DroppedFieldsView` is the read-only face for whoever reports on it (e.g. `ml-connector check`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType

__all__ = ["DroppedFields", "DroppedFieldsView"]


class DroppedFieldsView:
    """Read-only, live view of one environment's dropped fields."""

    def __init__(self, source: DroppedFields) -> None:
        self._source = source

    @property
    def environment(self) -> str:
        return self._source.environment

    def fields(self, entity_set: str) -> frozenset[str]:
        """The fields dropped from reads of `entity_set` (empty if none)."""
        return self._source.fields(entity_set)

    def as_dict(self) -> Mapping[str, tuple[str, ...]]:
        """entity set -> dropped fields (sorted), a snapshot."""
        return self._source.as_dict()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """(entity set, field) pairs, sorted."""
        for entity_set, names in sorted(self.as_dict().items()):
            for name in names:
                yield entity_set, name

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def __repr__(self) -> str:
        return f"DroppedFieldsView({self.environment!r}, {dict(self.as_dict())!r})"


class DroppedFields:
    """Per environment: entity set -> fields F&O said do not exist. Grows only; lives as long as the process."""

    def __init__(self, environment: str = "") -> None:
        self.environment = environment
        self._by_set: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # a view may be read from another thread (a CLI report)
        self.generation = 0  # grows with every field added: readers keep what they derived until it changes
        self._frozen: dict[str, frozenset[str]] = {}  # entity set -> fields(), as last handed out (read per event)

    def add(self, entity_set: str, field: str) -> bool:
        """Remember that `entity_set` has no `field`. True if this is news (so the caller logs it once)."""
        with self._lock:
            names = self._by_set.setdefault(entity_set, set())
            if field in names:
                return False
            names.add(field)
            self._frozen.pop(entity_set, None)
            self.generation += 1
            return True

    def fields(self, entity_set: str) -> frozenset[str]:
        frozen = self._frozen.get(entity_set)  # one dict read (atomic): no lock and no copy on the hot path
        if frozen is None:
            with self._lock:
                frozen = self._frozen[entity_set] = frozenset(self._by_set.get(entity_set, ()))
        return frozen

    def as_dict(self) -> Mapping[str, tuple[str, ...]]:
        with self._lock:
            return MappingProxyType({k: tuple(sorted(v)) for k, v in sorted(self._by_set.items()) if v})

    def view(self) -> DroppedFieldsView:
        return DroppedFieldsView(self)
