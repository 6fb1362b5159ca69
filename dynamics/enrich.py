"""Declarative enrichment: which F&O records to read for an event, as configuration an admin can edit.

An `EnrichmentPlan` names the events it serves (exact ids or globs) and an ordered list of `Fetch`es; each fetch
reads one entity set by key or filter whose values are templates over the event, `{company}` and earlier fetches
(see dynamics/templates.py). `enrich()` runs a plan with an `ODataClient`: one client call per fetch not read
through another's `$expand`, no retry loop and no sleep of its own (the pipeline owns retry policy). It knows
nothing about cards, Teams or storage.

What a missing record means: a query that finds no row is recorded, never raised. The fetch's value is None
(`[]` for `many`), and a `required` fetch is listed in `Enriched.missing` so the card can say the record no longer
exists. A fetch whose references resolve to nothing (no legal entity, an earlier fetch missing) is not called and
is listed in `Enriched.skipped`. Errors are raised only for what a retry or a config change can fix: throttling and
unavailability (transient), and bad requests, unknown entity sets or auth errors (configuration).

What an environment that differs means: a `select` or `orderby` field F&O says does not exist (400 "Could not find
a property named ...") is optional. It is dropped from that entity set's reads for that environment (remembered in
the `DroppedFields` handed in, logged once at WARNING), the read is retried without it, and `Enriched.dropped` names
it; the card goes out with the rest. A missing key or filter field, or a missing entity set, cannot be worked
around: it raises `EnrichmentPlanError` naming the plan, fetch and field to fix (unless the fetch says
`on_error = "skip"`).

One request per event where F&O allows it: a fetch may `expand` later fetches through navigation properties
(`$expand`, one level). Where the environment refuses a navigation (400), that navigation is remembered in the same
`DroppedFields` (a navigation is a property of the entity type) and the later fetch is read on its own. Reads that
do not depend on each other run in parallel: each wave holds every fetch whose references are already known.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import weakref
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
import logging
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from dynamics.dropped import DroppedFields
from dynamics.errors import (
    EnrichmentPlanError,
    ODataAuthError,
    ODataBadRequest,
    ODataError,
    ODataUnknownEntitySet,
    ODataUnknownProperty,
)
from dynamics.odata_query import Enum, Expansion
from dynamics.templates import NOTHING, Template

__all__ = ["EnrichmentPlan", "Enriched", "EnumLiteral", "Expand", "Fetch", "enrich", "load_plan", "plan_for"]

log = logging.getLogger(__name__)

RESERVED = frozenset({"event", "company", "base_url"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ORDER_ITEM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\s+(asc|desc))?")
_GLOB_CHARS = frozenset("*?[")
_UNION_TAGS = frozenset({"str", "bool", "int", "float", "EnumLiteral"})  # pydantic's labels in error locations


class EnumLiteral(BaseModel):
    """An enum value in a key or filter.

    `{enum = "NoYes", value = "Yes"}` becomes `Microsoft.Dynamics.DataEntities.NoYes'Yes'`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    enum: str
    value: str

    @field_validator("enum")
    @classmethod
    def _enum_name(cls, name: str) -> str:
        Enum(name, "")  # same rule as the client
        return name


Value = Annotated[str | bool | int | float | EnumLiteral, Field(union_mode="smart")]


class Expand(BaseModel):
    """Read a later fetch of the plan through a navigation property of this one, in the same request (`$expand`).

    `{fetch = "lines", navigation = "PurchaseOrderLines"}` on the `order` fetch: the order's read carries
    `$expand=PurchaseOrderLines($select=...;$orderby=...)` built from the `lines` fetch's select/orderby/top, and
    `record.lines` is what came back. The `lines` fetch stays the fallback: where F&O has no such navigation
    (400), that is remembered for the environment and `lines` is read on its own, in parallel with other reads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    fetch: str
    navigation: str

    @field_validator("fetch", "navigation")
    @classmethod
    def _plain(cls, name: str) -> str:
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError("must be a plain name (letters, digits, underscore)")
        return name


class Fetch(BaseModel):
    """One read of the plan.

    Attributes:
        name: the key under `record` (and how later templates refer to the result).
        entity: the entity set, e.g. `PurchaseOrderHeadersV2`.
        company: company-specific set: filter on the event's legal entity (`dataAreaId`). False for global sets.
        key: every key field except dataAreaId -> template; expects exactly one row (`ODataClient.get`).
        filter: field -> template; `eq` clauses ANDed. The first row, or all rows with `many`.
        select, orderby, top: `$select`, `$orderby`, `$top`.
        many: the result is a list of rows.
        required: a missing record is reported in `Enriched.missing`.
        on_error: "skip" records a non-transient OData error (unknown entity set or field, bad request) in
            `Enriched.failed` and carries on; for entities whose name is unconfirmed. Auth, throttling and
            unavailability errors are always raised.
        expand: later fetches to read in this fetch's request through a navigation property (see `Expand`);
            not on a `many` fetch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    entity: str
    company: bool = True
    key: dict[str, Value] | None = None
    filter: dict[str, Value] | None = None
    select: list[str] | None = None
    orderby: list[str] | None = None
    top: int | None = Field(default=None, ge=1)
    many: bool = False
    required: bool = False
    on_error: Literal["raise", "skip"] = "raise"
    expand: list[Expand] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError("must be a plain name (letters, digits, underscore)")
        if name in RESERVED:
            raise ValueError(f"{name!r} is reserved for templates ({', '.join(sorted(RESERVED))})")
        return name

    @field_validator("entity")
    @classmethod
    def _entity(cls, entity: str) -> str:
        if not _IDENTIFIER.fullmatch(entity):
            raise ValueError("must be an entity set name such as PurchaseOrderHeadersV2")
        return entity

    @field_validator("key", "filter")
    @classmethod
    def _conditions(cls, conditions: dict[str, Any] | None) -> dict[str, Any] | None:
        if conditions is None:
            return None
        if not conditions:
            raise ValueError("must name at least one field")
        for name in conditions:
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not a field name")
        return conditions  # templates are checked by the plan, which knows the earlier fetches

    @field_validator("select")
    @classmethod
    def _select(cls, fields: list[str] | None) -> list[str] | None:
        for name in fields or ():
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not a field name")
        return fields

    @field_validator("orderby", mode="before")
    @classmethod
    def _orderby(cls, items: Any) -> Any:
        if isinstance(items, str):
            items = [item.strip() for item in items.split(",")]
        for item in items or ():
            if not isinstance(item, str) or not _ORDER_ITEM.fullmatch(item.strip()):
                raise ValueError(f"{item!r} is not 'Field' or 'Field asc|desc'")
        return items

    @model_validator(mode="after")
    def _shape(self) -> Fetch:
        if (self.key is None) == (self.filter is None):
            raise ValueError("give exactly one of 'key' (one row by its key) or 'filter'")
        if self.key is not None and self.many:
            raise ValueError("'many' needs a 'filter': a key identifies one row")
        if "dataAreaId" in (self.key or {}) or "dataAreaId" in (self.filter or {}):
            raise ValueError("leave dataAreaId out: 'company = true' adds it from the event's legal entity")
        if self.expand and self.many:
            raise ValueError("'expand' needs a one-row fetch: each row of a 'many' fetch would carry its own")
        return self

    @property
    def conditions(self) -> dict[str, Any]:
        return dict(self.key or self.filter or {})


class EnrichmentPlan(BaseModel):
    """Which records to read for which events, and how to name the result.

    Attributes:
        name: unique; configuration overrides a default plan by name.
        events: BusinessEventIds, exact or glob (`Workflow_*_WorkItem`).
        fetches: run in order; a template may refer to any earlier fetch by name.
        open_url: template for the card's "open in F&O" link, e.g. `{base_url}/?cmp={company}&mi=PurchTableListPage`.
        document_key: template naming the business document (one Teams thread per document).
        title: template for a short title.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    events: list[str] = Field(min_length=1)
    fetches: list[Fetch] = Field(default_factory=list)
    open_url: str | None = None
    document_key: str | None = None
    title: str | None = None
    # Everything derivable from the plan, built on first use (see `_CompiledPlan`). Kept with the id of the plan it
    # was built for: a copy (model_copy) carries its original's private attributes, and must build its own.
    _compiled: tuple[int, _CompiledPlan] | None = PrivateAttr(default=None)

    def compiled(self) -> _CompiledPlan:
        """The plan's parsed templates, dependencies and expand map, built once per plan (not per event)."""
        private = self.__pydantic_private__  # a slot: cheaper than pydantic's __getattr__ for `self._compiled`
        cached = private.get("_compiled") if private else None
        if cached is None or cached[0] != id(self):
            cached = (id(self), _CompiledPlan.build(self))
            self._compiled = cached
        return cached[1]

    @property
    def requests_per_event(self) -> int:
        """OData requests one event costs (one per fetch not read through another's `expand`; a `many` fetch's
        further pages are extra, and so are separate reads where F&O lacks a navigation). This is what F&O's
        per-user limit of 6,000 requests per 5 minutes divides: 20 / requests_per_event events/s at most."""
        return len(self.fetches) - len(self.expanded)

    @property
    def expanded(self) -> dict[str, tuple[str, str]]:
        """child fetch name -> (parent fetch name, navigation property) for every declared `expand`."""
        return {item.fetch: (fetch.name, item.navigation) for fetch in self.fetches for item in fetch.expand or ()}

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        for pattern in events:
            if not pattern.strip():
                raise ValueError("an event id must not be empty")
        return events

    @model_validator(mode="after")
    def _references(self) -> EnrichmentPlan:
        # Raised directly (not ValueError) so the error names plan, fetch and field whatever the entry point.
        known = set(RESERVED)
        for fetch in self.fetches:
            if fetch.name in known - RESERVED:
                raise EnrichmentPlanError(self.name, fetch.name, "name", "two fetches share this name")
            where = "key" if fetch.key is not None else "filter"
            for field_name, text in fetch.conditions.items():
                if not isinstance(text, str):
                    continue
                try:
                    template = Template.parse(text)
                except ValueError as exc:
                    raise EnrichmentPlanError(self.name, fetch.name, f"{where}.{field_name}", str(exc)) from None
                unknown = template.roots - known
                if unknown:
                    raise EnrichmentPlanError(
                        self.name, fetch.name, f"{where}.{field_name}",
                        f"refers to {', '.join(sorted(unknown))}, which is not event, company or an earlier fetch",
                    )
            known.add(fetch.name)
        self._check_expands()
        for attribute in ("open_url", "document_key", "title"):
            text = getattr(self, attribute)
            if text is not None:
                try:
                    unknown = Template.parse(text).roots - known
                except ValueError as exc:
                    raise EnrichmentPlanError(self.name, None, attribute, str(exc)) from None
                if unknown:
                    raise EnrichmentPlanError(self.name, None, attribute,
                                              f"refers to unknown {', '.join(sorted(unknown))}")
        return self

    def _check_expands(self) -> None:
        position = {fetch.name: i for i, fetch in enumerate(self.fetches)}
        parents: dict[str, str] = {}
        for i, fetch in enumerate(self.fetches):
            navigations: set[str] = set()
            for item in fetch.expand or ():
                where = f"expand.{item.fetch}"
                if item.fetch not in position or position[item.fetch] <= i:
                    raise EnrichmentPlanError(self.name, fetch.name, where,
                                              "names no later fetch of this plan (expand reads a later fetch)")
                if item.fetch in parents:
                    raise EnrichmentPlanError(self.name, fetch.name, where,
                                              f"already expanded by fetch {parents[item.fetch]!r}")
                if item.navigation in navigations:
                    raise EnrichmentPlanError(self.name, fetch.name, where, f"{item.navigation} expanded twice")
                child = self.fetches[position[item.fetch]]
                if child.expand:
                    raise EnrichmentPlanError(self.name, fetch.name, where,
                                              "F&O expands one level only: that fetch has its own expand")
                if child.company != fetch.company:
                    raise EnrichmentPlanError(self.name, fetch.name, where,
                                              "both fetches must agree on 'company' (the expand reads one company)")
                parents[item.fetch] = fetch.name
                navigations.add(item.navigation)

    def matches(self, event_id: str) -> bool:
        return any(_is_glob(p) and fnmatch.fnmatchcase(event_id, p) or p == event_id for p in self.events)


@dataclass(frozen=True)
class _Condition:
    """One key/filter field of a fetch, ready to resolve: an enum, a constant, or a parsed template."""

    name: str
    raw: Any
    template: Template | None  # None: `raw` is not text (an enum or a constant), or it did not parse
    error: str | None = None  # why `raw` did not parse (the plan's validator refuses that; raised when resolved)


@dataclass(frozen=True, eq=False)  # identity: waves test membership in lists of these per event
class _CompiledFetch:
    fetch: Fetch
    index: int  # position in the plan
    conditions: tuple[_Condition, ...]
    roots: frozenset[str]  # earlier fetches its templates name (event/company/base_url left out)
    parent: tuple[str, str, str] | None  # (expanding fetch, its entity set, navigation) when another expands it
    children: tuple[tuple[Fetch, str], ...]  # (child fetch, navigation) for each of its expands


@dataclass(frozen=True, eq=False)
class _CompiledPlan:
    """What every event of a plan shares: templates parsed once, dependencies and expands worked out once.

    Per event only the references are resolved; before this, each event re-parsed every template of its plan
    (11 parses per PO event) and searched the plan's fetches by name.
    """

    fetches: tuple[_CompiledFetch, ...]
    by_name: dict[str, _CompiledFetch]
    texts: dict[str, Template | None]  # open_url, document_key, title
    errors: dict[str, str]  # attribute -> the parse error (raised when the attribute is rendered)
    # Per environment (its DroppedFields, held weakly) and fetch: the read's shape as of that DroppedFields'
    # generation; rebuilt when the environment learns of another missing field or navigation.
    shapes: weakref.WeakKeyDictionary[DroppedFields, dict[str, tuple[int, _Shape]]] = field(
        default_factory=weakref.WeakKeyDictionary, compare=False)

    @classmethod
    def build(cls, plan: EnrichmentPlan) -> _CompiledPlan:
        entity_of = {fetch.name: fetch.entity for fetch in plan.fetches}
        expanded = plan.expanded
        fetches = []
        for index, fetch in enumerate(plan.fetches):
            conditions = []
            roots: set[str] = set()
            for name, raw in fetch.conditions.items():
                if not isinstance(raw, str):
                    conditions.append(_Condition(name, raw, None))
                    continue
                try:
                    template = Template.parse(raw)
                except ValueError as exc:  # the plan's validator refuses this; kept for plans built without it
                    conditions.append(_Condition(name, raw, None, str(exc)))
                    continue
                roots |= template.roots
                conditions.append(_Condition(name, raw, template))
            parent = expanded.get(fetch.name)
            children = tuple((next(f for f in plan.fetches if f.name == item.fetch), item.navigation)
                             for item in fetch.expand or ())
            fetches.append(_CompiledFetch(
                fetch, index, tuple(conditions), frozenset(roots - RESERVED),
                (parent[0], entity_of[parent[0]], parent[1]) if parent is not None else None, children))
        texts: dict[str, Template | None] = {}
        errors: dict[str, str] = {}
        for attribute in ("open_url", "document_key", "title"):
            text = getattr(plan, attribute)
            try:
                texts[attribute] = Template.parse(text) if text is not None else None
            except ValueError as exc:  # the plan's validator refuses these; kept for plans built without it
                texts[attribute], errors[attribute] = None, str(exc)
        return cls(tuple(fetches), {f.fetch.name: f for f in fetches}, texts, errors)


@dataclass
class Enriched:
    """What a plan found. `record` has one key per fetch (None / [] when missing or skipped)."""

    record: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # required fetches whose record does not exist
    skipped: list[str] = field(default_factory=list)  # fetches not run: a reference resolved to nothing
    calls: int = 0  # ODataClient calls made (one per fetch run)
    failed: dict[str, str] = field(default_factory=dict)  # on_error="skip" fetches that failed -> the error
    # entity set -> optional fields left out of this event's reads because this environment lacks them
    dropped: dict[str, list[str]] = field(default_factory=dict)
    open_url: str | None = None
    document_key: str | None = None
    title: str | None = None


class _Client(Protocol):
    base_url: str

    # `expand` is passed only when there is something to expand, so clients without it keep working
    async def get(self, entity_set: str, *, company: str | None, key: dict[str, Any],
                  select: list[str] | None = None,
                  expand: Sequence[Expansion] | None = None) -> dict[str, Any] | None: ...

    async def query(self, entity_set: str, *, company: str | None, filter: Any = None,
                    select: list[str] | None = None, orderby: Any = None,
                    top: int | None = None, expand: Sequence[Expansion] | None = None) -> list[dict[str, Any]]: ...


class _Event(Protocol):
    """What enrichment reads of an event: a `BusinessEvent`, or the store's record of one (same two fields)."""

    @property
    def legal_entity(self) -> str | None: ...

    @property
    def payload(self) -> dict[str, Any]: ...


async def enrich(event: _Event, client: _Client, plan: EnrichmentPlan, *,
                 base_url: str | None = None, dropped: DroppedFields | None = None) -> Enriched:
    """Run `plan` for `event`.

    Args:
        event: a `BusinessEvent`, or anything with its `legal_entity` and `payload` (the store's event record).
        client: an `ODataClient` (anything with its `get`/`query`).
        base_url: root for `{base_url}` in `open_url`; defaults to the client's.
        dropped: the environment's fields known to be missing (read, and added to); None: learn for this call only.

    Returns:
        Enriched: records, missing and skipped fetches, the number of calls, rendered open_url/document_key/title.

    Raises:
        ODataThrottled, ODataUnavailable: transient; retry later. Other ODataError: a request F&O refuses.
        EnrichmentPlanError: a template resolved to an object where a value was needed, or the environment lacks
        a fetch's entity set or key/filter field.
    """
    dropped = dropped if dropped is not None else DroppedFields()
    company = event.legal_entity.lower() if event.legal_entity else None
    context: dict[str, Any] = {
        "event": event.payload,
        "company": company if company is not None else NOTHING,
        "base_url": (base_url or getattr(client, "base_url", "") or "").rstrip("/") or NOTHING,
    }
    result = Enriched()
    compiled = plan.compiled()
    run = _Run(plan, client, company, context, dropped, result, compiled)
    pending = list(compiled.fetches)
    # Waves: every fetch whose references (and expanding parent) are done runs now, the wave's reads in parallel.
    # A fetch that needs no request (served by its parent's $expand, or skipped) settles without a task, and a
    # wave with one request awaits it directly: tasks only where reads really run side by side.
    while pending:
        waiting = {f.fetch.name for f in pending}
        ready = [f for f in pending if not (_depends_on(f, dropped) & waiting)]
        outcomes: list[Any] = []
        reads: list[tuple[int, Awaitable[_Outcome]]] = []
        for position, item in enumerate(ready):
            try:
                prepared = run.prepare(item)
            except Exception as exc:  # noqa: BLE001 - raised below, in plan order
                outcomes.append(exc)
                continue
            if isinstance(prepared, _Read):
                reads.append((position, run.read(item.fetch, prepared)))
                outcomes.append(None)  # filled in once read
            else:
                outcomes.append(prepared)
        if len(reads) == 1:
            position, read = reads[0]
            try:
                outcomes[position] = await read
            except Exception as exc:  # noqa: BLE001 - raised below, in plan order
                outcomes[position] = exc
        elif reads:
            done = await asyncio.gather(*(read for _, read in reads), return_exceptions=True)
            for (position, _), result_or_error in zip(reads, done):
                outcomes[position] = result_or_error
        for outcome in outcomes:  # plan order: the first error in plan order wins, whatever finished first
            if isinstance(outcome, BaseException):
                raise outcome
        for item, outcome in zip(ready, outcomes):
            run.settle(item.fetch, outcome)
        pending = [f for f in pending if f not in ready]
    result.record = {f.fetch.name: result.record[f.fetch.name] for f in compiled.fetches}  # plan order, as before
    for names in (result.missing, result.skipped):
        if len(names) > 1:
            names.sort(key=lambda name: compiled.by_name[name].index)
    if result.failed:
        result.failed = {f.fetch.name: result.failed[f.fetch.name] for f in compiled.fetches
                         if f.fetch.name in result.failed}

    result.open_url = _text(plan, compiled, "open_url", context, url=True)
    result.document_key = _text(plan, compiled, "document_key", context)
    result.title = _text(plan, compiled, "title", context)
    return result


def plan_for(event_id: str, plans: Iterable[EnrichmentPlan]) -> EnrichmentPlan | None:
    """The plan for `event_id`: the first naming it exactly, else the first whose glob matches it."""
    plans = list(plans)
    for plan in plans:
        if event_id in plan.events:
            return plan
    for plan in plans:
        if any(_is_glob(p) and fnmatch.fnmatchcase(event_id, p) for p in plan.events):
            return plan
    return None


def load_plan(raw: Any, *, position: int | None = None) -> EnrichmentPlan:
    """An `EnrichmentPlan` from a plain dict (one TOML table).

    Raises:
        EnrichmentPlanError: naming the plan, the fetch (by name, else `#index`) and the field.
    """
    label = f"#{position}" if position is not None else None
    if not isinstance(raw, dict):
        raise EnrichmentPlanError(label, None, None, f"expected a table, got {type(raw).__name__}")
    name = raw.get("name") if isinstance(raw.get("name"), str) and raw.get("name") else label
    try:
        return EnrichmentPlan.model_validate(raw)
    except ValidationError as exc:
        raise _plan_error(name, raw, exc) from None


# --- helpers ------------------------------------------------------------------------------------------------


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


@dataclass
class _Outcome:
    value: Any
    skipped: bool = False
    failed: str | None = None


@dataclass
class _Read:
    """A fetch that needs its own request: the company it reads and its resolved key/filter."""

    company: str | None
    conditions: dict[str, Any]


@dataclass
class _Run:
    """One event's enrichment: what the fetches share while waves of them run concurrently."""

    plan: EnrichmentPlan
    client: _Client
    company: str | None
    context: dict[str, Any]
    dropped: DroppedFields
    result: Enriched
    compiled: _CompiledPlan
    served: dict[str, Any] = field(default_factory=dict)  # child fetch -> what its parent's $expand brought

    def prepare(self, item: _CompiledFetch) -> _Outcome | _Read:
        """What a fetch comes to without a request (served by its parent's $expand, or skipped), else the read
        to make."""
        fetch = item.fetch
        empty: Any = [] if fetch.many else None
        conditions = _resolve(self.plan, item, self.context)
        if fetch.name in self.served:
            # Read through the parent's $expand. Where its own reference resolves to nothing the separate read
            # would not have run: say so the same way, so both paths give the same Enriched.
            return _Outcome(empty, skipped=True) if conditions is None else _Outcome(self.served[fetch.name])
        if conditions is None or (fetch.company and self.company is None):
            return _Outcome(empty, skipped=True)
        return _Read(self.company if fetch.company else None, conditions)

    async def read(self, fetch: Fetch, read: _Read) -> _Outcome:
        plan = self.plan
        empty: Any = [] if fetch.many else None
        scope, conditions = read.company, read.conditions
        self.result.calls += 1
        try:
            return _Outcome(await _run_degrading(self, fetch, scope, conditions))
        except ODataError as exc:
            if exc.transient or isinstance(exc, ODataAuthError):
                raise
            if fetch.on_error == "raise":
                _raise_if_unfixable(plan, fetch, exc)
                raise
            log.warning("enrichment plan %r fetch %r failed, carrying on: %s", plan.name, fetch.name, exc)
            return _Outcome(empty, failed=str(exc))

    def settle(self, fetch: Fetch, outcome: _Outcome) -> None:
        empty: Any = [] if fetch.many else None
        found = outcome.value
        if outcome.skipped:
            self.result.skipped.append(fetch.name)
        elif outcome.failed is not None:
            self.result.failed[fetch.name] = outcome.failed
        elif found is None or (fetch.many and not found):
            found = empty
            if fetch.required:
                self.result.missing.append(fetch.name)
        self.result.record[fetch.name] = self.context[fetch.name] = found


def _depends_on(item: _CompiledFetch, dropped: DroppedFields) -> frozenset[str]:
    """The fetches this one must wait for: those its templates name, and the one that expands it (unless this
    environment lacks that navigation: then it is an ordinary read, in parallel with whatever it does not need)."""
    parent = item.parent
    if parent is not None and parent[2] not in dropped.fields(parent[1]):
        return item.roots | {parent[0]}
    return item.roots


async def _run(client: _Client, fetch: Fetch, company: str | None, conditions: dict[str, Any],
               select: list[str] | None, orderby: list[str] | None, expand: list[Expansion]) -> Any:
    extra: dict[str, Any] = {"expand": expand} if expand else {}
    if fetch.key is not None:
        return await client.get(fetch.entity, company=company, key=conditions, select=select, **extra)
    rows = await client.query(fetch.entity, company=company, filter=conditions, select=select,
                              orderby=orderby, top=fetch.top if fetch.many else 1, **extra)
    return rows if fetch.many else (rows[0] if rows else None)


def _order_field(item: str) -> str:
    return item.split()[0]


@dataclass
class _Child:
    """A later fetch read through this fetch's $expand, as this request asks for it."""

    fetch: Fetch
    navigation: str
    select: list[str]
    orderby: list[str]
    left_out: list[str]

    def expansion(self) -> Expansion:
        return Expansion(self.navigation, tuple(self.select), tuple(self.orderby),
                         self.fetch.top if self.fetch.many else None)

    def mentions(self, name: str) -> bool:
        return name in self.select or name in {_order_field(o) for o in self.orderby}


@dataclass(frozen=True)
class _Shape:
    """One fetch's request in one environment: what it selects, orders by, leaves out and expands."""

    select: list[str] | None
    orderby: list[str] | None
    left_out: list[str]
    children: list[_Child]
    expansions: list[Expansion]


def _shape(run: _Run, fetch: Fetch) -> _Shape:
    """The fetch's request without what this environment lacks; worked out once per fetch and environment (and
    again whenever the environment's dropped fields change), not per event."""
    dropped = run.dropped
    generation = dropped.generation
    known = run.compiled.shapes.get(dropped)
    if known is None:
        known = run.compiled.shapes.setdefault(dropped, {})
    cached = known.get(fetch.name)
    if cached is not None and cached[0] == generation:
        return cached[1]
    gone = dropped.fields(fetch.entity)
    select = [f for f in fetch.select if f not in gone] if fetch.select else fetch.select
    orderby = [o for o in fetch.orderby if _order_field(o) not in gone] if fetch.orderby else fetch.orderby
    left_out = sorted((set(fetch.select or ()) | {_order_field(o) for o in fetch.orderby or ()}) & gone)
    children = _children(run, fetch)
    shape = _Shape(select, orderby, left_out, children, [c.expansion() for c in children])
    known[fetch.name] = (generation, shape)
    return shape


def _children(run: _Run, fetch: Fetch) -> list[_Child]:
    """The expands of `fetch` this environment has the navigation for, without the children's dropped fields."""
    gone = run.dropped.fields(fetch.entity)
    children = []
    for child, navigation in run.compiled.by_name[fetch.name].children:
        if navigation in gone:
            continue
        lacks = run.dropped.fields(child.entity)
        select = [f for f in child.select or () if f not in lacks]
        if select and child.key is not None:  # as ODataClient.get does for a separate keyed read
            select += [name for name in child.key if name not in select]
        orderby = [o for o in child.orderby or () if _order_field(o) not in lacks]
        left_out = sorted((set(child.select or ()) | {_order_field(o) for o in child.orderby or ()}) & lacks)
        children.append(_Child(child, navigation, select, orderby, left_out))
    return children


def _singular(entity_set: str) -> str:
    """F&O's usual entity type name for a set: PurchaseOrderHeadersV2 -> PurchaseOrderHeaderV2."""
    return re.sub(r"s(V[0-9]+)?$", r"\1", entity_set)


def _owner(owners: list[_Child | None], entity: str, type_name: str | None) -> _Child | None:
    """The one of `owners` (None = the fetch itself) whose entity type F&O named; the fetch itself if unclear."""
    short = (type_name or "").rsplit(".", 1)[-1]
    for owner in owners:
        if short and _singular(owner.fetch.entity if owner else entity) == short:
            return owner
    return owners[0]


def _note_dropped(result: Enriched, entity: str, left_out: list[str]) -> None:
    if left_out:
        names = result.dropped.setdefault(entity, [])
        names += [n for n in left_out if n not in names]


async def _run_degrading(run: _Run, fetch: Fetch, company: str | None, conditions: dict[str, Any]) -> Any:
    """`_run` without the optional fields and navigations this environment lacks; a 400 naming another one drops
    it (remembered in `run.dropped`) and retries.

    Each retry follows a 400 that named a field or navigation still in the request, or (for a 400 that names
    nothing we sent while the request expands) drops every navigation of the request: the retry count is bounded
    by what the request holds. What the expands brought goes into `run.served`, taken out of the row.
    """
    plan, dropped, result = run.plan, run.dropped, run.result
    while True:
        shape = _shape(run, fetch)
        select, orderby, left_out, children = shape.select, shape.orderby, shape.left_out, shape.children
        try:
            # copies: the shape is shared by every event of this fetch, and a client may keep what it is given
            found = await _run(run.client, fetch, company, conditions, list(select) if select else None,
                               list(orderby) if orderby else None, list(shape.expansions))
        except ODataBadRequest as exc:
            name = exc.property if isinstance(exc, ODataUnknownProperty) else None
            navigations = [c.navigation for c in children]
            if name is not None and name in navigations or name is None and navigations:
                for navigation in [name] if name is not None else navigations:
                    if dropped.add(fetch.entity, navigation):
                        log.warning("F&O environment %s: %s refuses $expand=%s (%s); enrichment plan %r reads "
                                    "that fetch separately from now on", dropped.environment or "(unnamed)",
                                    fetch.entity, navigation, exc.status, plan.name)
                continue
            if name is None:
                raise
            # Which entity lacks it: this fetch's or an expanded child's (F&O names the type; the same field name,
            # e.g. CurrencyCode, is often in both).
            mine = name in (select or ()) or name in {_order_field(o) for o in orderby or ()} or name in conditions
            owners: list[_Child | None] = ([None] if mine else []) + [c for c in children if c.mentions(name)]
            if not owners:
                raise
            owner = _owner(owners, fetch.entity, getattr(exc, "type_name", None))
            if owner is None:
                if name in conditions:
                    raise  # this fetch's own key or filter: nothing to leave out
                entity = fetch.entity
            elif name in owner.fetch.conditions:
                # The child's own key/filter field: read it separately, where the error names the fetch to fix.
                dropped.add(fetch.entity, owner.navigation)
                continue
            else:
                entity = owner.fetch.entity
            if dropped.add(entity, name):
                log.warning("F&O environment %s: %s has no field %s (%s); enrichment plan %r leaves it out of "
                            "its reads from now on", dropped.environment or "(unnamed)", entity, name,
                            getattr(exc, "type_name", None) or "type not given", plan.name)
            continue
        _note_dropped(result, fetch.entity, left_out)
        if children and isinstance(found, dict):
            found = dict(found)
            for child in children:
                if child.navigation not in found:
                    continue  # a server that ignored $expand (OData writes null or [] when nothing is related)
                value = found.pop(child.navigation)
                for annotation in [k for k in found if k.startswith(child.navigation + "@")]:
                    del found[annotation]  # e.g. PurchaseOrderLines@odata.context: not part of the record
                if child.fetch.many:
                    value = value if isinstance(value, list) else []
                elif isinstance(value, list):
                    value = value[0] if value else None
                run.served[child.fetch.name] = value
                _note_dropped(result, child.fetch.entity, child.left_out)
        return found


def _raise_if_unfixable(plan: EnrichmentPlan, fetch: Fetch, exc: ODataError) -> None:
    """A missing entity set or key/filter field: no read can work, so say which and where to fix it."""
    fix = "change or disable this fetch in the [[enrichment]] plan of that name in the configuration"
    if isinstance(exc, ODataUnknownEntitySet):
        raise EnrichmentPlanError(
            plan.name, fetch.name, "entity",
            f"this environment has no entity set {fetch.entity} (F&O answered {exc.status}); {fix}") from exc
    if isinstance(exc, ODataUnknownProperty):
        where = "key" if fetch.key is not None else "filter"
        if exc.property in fetch.conditions:
            attribute = f"{where}.{exc.property}"
        elif exc.property == "dataAreaId" and fetch.company:
            attribute = "company"  # the company filter we add: the set is not company-specific here
        else:
            return
        raise EnrichmentPlanError(
            plan.name, fetch.name, attribute,
            f"this environment's {fetch.entity} has no {where} field {exc.property}; {fix}") from exc


def _resolve(plan: EnrichmentPlan, item: _CompiledFetch, context: dict[str, Any]) -> dict[str, Any] | None:
    """Key/filter values for this event, or None if any reference resolves to nothing."""
    fetch = item.fetch
    values: dict[str, Any] = {}
    for condition in item.conditions:
        name, raw, template = condition.name, condition.raw, condition.template
        if condition.error is not None:
            raise EnrichmentPlanError(plan.name, fetch.name, name, condition.error)
        if template is None:
            values[name] = Enum(raw.enum, raw.value) if isinstance(raw, EnumLiteral) else raw
            continue
        try:
            value = template.render_value(context)
        except ValueError as exc:
            raise EnrichmentPlanError(plan.name, fetch.name, name, str(exc)) from None
        if value is NOTHING:
            return None
        if isinstance(value, (dict, list)):
            raise EnrichmentPlanError(plan.name, fetch.name, name, f"{raw} resolved to an object or array, not a value")
        values[name] = value
    return values


_URL_AS_IS = frozenset({"base_url"})


def _text(plan: EnrichmentPlan, compiled: _CompiledPlan, attribute: str, context: dict[str, Any], *,
          url: bool = False) -> str | None:
    if attribute in compiled.errors:
        raise EnrichmentPlanError(plan.name, None, attribute, compiled.errors[attribute])
    template = compiled.texts[attribute]
    if template is None:
        return None
    try:
        value = template.render(context, url_quote_except=_URL_AS_IS if url else frozenset())
    except ValueError as exc:
        raise EnrichmentPlanError(plan.name, None, attribute, str(exc)) from None
    return None if value is NOTHING else value


def _plan_error(name: str | None, raw: dict[str, Any], exc: ValidationError) -> EnrichmentPlanError:
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        fetch: str | None = None
        if len(loc) >= 2 and loc[0] == "fetches" and isinstance(loc[1], int):
            index = loc[1]
            fetches = raw.get("fetches")
            item = fetches[index] if isinstance(fetches, Sequence) and index < len(fetches) else None
            fetch = item["name"] if isinstance(item, dict) and isinstance(item.get("name"), str) else f"#{index}"
            loc = loc[2:]
        path: str | None = ".".join(str(part) for part in loc if part not in _UNION_TAGS)
        message = error["msg"].removeprefix("Value error, ")
        problems.append((fetch, path or None, message))
    fetch, path, message = problems[0]
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more: " + "; ".join(
            f"{f + ' ' if f else ''}{p or ''}: {m}".strip() for f, p, m in problems[1:]) + ")"
    return EnrichmentPlanError(name, fetch, path, message)
