"""Routes: which events go to which Teams channel, with which template, mentioning whom.

A route matches on the event id (exact or a glob such as `Workflow_*_WorkItem`), the environment and legal
entity (case-insensitive; empty = all) and optional conditions on the card data (for example
`record.order.TotalAmount >= 10000`). An event may match several routes: one card each.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.config import ConfigError, check_locale, key_path, pydantic_problems
from connector.store import Install

Op = Literal["==", "!=", ">", ">=", "<", "<=", "in", "contains", "exists"]
MentionRole = Literal["initiator", "approver", "vendor"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str  # a dotted path into the card data: event.X, record.order.Y, legalEntity
    op: Op = "=="
    value: Any = None

    def holds(self, data: dict[str, Any]) -> bool:
        found, actual = lookup(data, self.field)
        if self.op == "exists":
            return found and actual is not None
        if not found:
            return False
        if self.op == "in":
            return isinstance(self.value, list) and any(_eq(actual, v) for v in self.value)
        if self.op == "contains":
            if isinstance(actual, str) and isinstance(self.value, str):
                return self.value.lower() in actual.lower()
            return isinstance(actual, list) and any(_eq(a, self.value) for a in actual)
        if self.op == "==":
            return _eq(actual, self.value)
        if self.op == "!=":
            return not _eq(actual, self.value)
        a, b = _number(actual), _number(self.value)
        if a is None or b is None:
            return False
        return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[self.op]


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    events: list[str] = Field(min_length=1)  # exact ids or globs
    environments: list[str] = Field(default_factory=list)
    legal_entities: list[str] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)
    team: str  # team name (as installed) or Bot Framework team id (19:...)
    channel: str = "General"  # channel name or id
    template: str | None = None  # default: chosen by event type
    mention: list[MentionRole] = Field(default_factory=lambda: ["initiator"])  # type: ignore[arg-type]
    threading: Literal["event", "document"] = "event"  # new thread per event, or one thread per document
    personal: bool = False  # also send the card to the approver in a 1:1 chat (approvals)
    locale: str | None = None  # cards' number and date format (BCP 47); default: the environment's, then en-US

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        return check_locale(v)

    @field_validator("legal_entities", "environments")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [x.lower() for x in v]

    def matches(self, *, event_id: str, environment: str, legal_entity: str | None, data: dict[str, Any]) -> bool:
        if not any(p == event_id or fnmatch.fnmatchcase(event_id, p) for p in self.events):
            return False
        if self.environments and environment.lower() not in self.environments:
            return False
        if self.legal_entities and (legal_entity or "").lower() not in self.legal_entities:
            return False
        return all(c.holds(data) for c in self.when)


def route_problems(raw: list[Any]) -> tuple[list[Route], list[str]]:
    """The routes that are valid, and one `routes[i].key: what is wrong` line for each problem of the others."""
    routes = []
    problems = []
    for i, item in enumerate(raw):
        prefix = key_path([i], "routes")
        if not isinstance(item, dict):
            problems.append(f"{prefix}: expected a table ([[routes]]), got {type(item).__name__}")
            continue
        try:
            routes.append(Route(**item))
        except ValidationError as exc:
            problems += pydantic_problems(exc, prefix)
        except TypeError as exc:  # a key that is not a string (from JSON in ML_ROUTES)
            problems.append(f"{prefix}: {exc}")
    names = [r.name for r in routes]
    problems += [f"routes: duplicate name '{n}'" for n in sorted({n for n in names if names.count(n) > 1})]
    return routes, problems


def routes_from_config(raw: list[Any]) -> list[Route]:
    """Every route, or ConfigError listing each problem with its key (`routes[1].threading`)."""
    routes, problems = route_problems(raw)
    if problems:
        raise ConfigError.listing("routes", problems)
    return routes


def match_routes(
    routes: list[Route], *, event_id: str, environment: str, legal_entity: str | None, data: dict[str, Any]
) -> list[Route]:
    return [r for r in routes if r.matches(event_id=event_id, environment=environment,
                                           legal_entity=legal_entity, data=data)]


class TargetNotFound(Exception):
    """The route's team or channel cannot be resolved: no recorded install has it (or, TargetAmbiguous, more than
    one has that name). Delivery parks the event with this message."""


@dataclass(frozen=True)
class Ambiguity:
    """A route's team or channel name that matches more than one install or channel."""

    route: str
    kind: Literal["team", "channel"]
    name: str  # what the route says
    candidates: tuple[str, ...]  # the matching team ids (with their tenant) or channel ids

    @property
    def message(self) -> str:
        if self.kind == "team":
            return (f"route '{self.route}': team name '{self.name}' matches {len(self.candidates)} installed teams "
                    f"({', '.join(self.candidates)}); set the route's team to the team id instead of its name")
        return (f"route '{self.route}': channel name '{self.name}' matches {len(self.candidates)} channels "
                f"({', '.join(self.candidates)}); set the route's channel to the channel id instead of its name")


class TargetAmbiguous(TargetNotFound):
    """The route's team or channel name matches several installs or channels: the route must use the id."""

    def __init__(self, ambiguity: Ambiguity) -> None:
        super().__init__(ambiguity.message)
        self.ambiguity = ambiguity


def resolve_channel(route: Route, installs: list[Install],
                    tenants: AbstractSet[str] | None = None) -> tuple[Install, str]:
    """The install (team) and channel id a route posts to, by id or by name (case-insensitive).

    A name that matches two installed teams (say two "Procurement" teams) or two channels is never guessed:
    TargetAmbiguous says to use the id. `tenants` (lower case), when given, ignores installs of other tenants.

    Raises:
        TargetNotFound: no such team or channel (TargetAmbiguous: more than one).
    """
    wanted = route.team.lower()
    teams = [i for i in installs if i.scope == "team" and i.active
             and (tenants is None or (i.tenant_id or "").lower() in tenants)]
    matches = [i for i in teams if (i.team_id or "").lower() == wanted] or [
        i for i in teams if (i.team_name or "").lower() == wanted]
    if len(matches) > 1:
        raise TargetAmbiguous(Ambiguity(route.name, "team", route.team, tuple(
            f"{i.team_id} in tenant {i.tenant_id}" for i in sorted(matches, key=lambda i: i.team_id or ""))))
    if not matches:
        raise TargetNotFound(
            f"route '{route.name}': the app is not installed in team '{route.team}' "
            "(install it in Teams, check `ml-connector installs list`, then `events replay`)"
        )
    install = matches[0]
    channel = route.channel
    if channel in install.channels:
        return install, channel
    by_name = sorted(cid for cid, name in install.channels.items() if name.lower() == channel.lower())
    if len(by_name) > 1:
        raise TargetAmbiguous(Ambiguity(route.name, "channel", channel, tuple(by_name)))
    if by_name:
        return install, by_name[0]
    if channel.lower() == "general" and install.team_id:
        return install, install.team_id  # the General channel's id is the team's id
    raise TargetNotFound(
        f"route '{route.name}': team '{install.team_name or install.team_id}' has no channel '{channel}' "
        "(renamed or deleted?)"
    )


def route_ambiguities(routes: list[Route], installs: list[Install],
                      tenants: AbstractSet[str] | None = None) -> list[Ambiguity]:
    """Every route whose team or channel name matches more than one install or channel (e.g. for a configuration
    check); routes that resolve, or whose target is simply missing, are not listed."""
    found = []
    for route in routes:
        try:
            resolve_channel(route, installs, tenants)
        except TargetAmbiguous as exc:
            found.append(exc.ambiguity)
        except TargetNotFound:
            pass
    return found


def lookup(data: Any, path: str) -> tuple[bool, Any]:
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _eq(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b
