"""Who may decide a work item: its F&O assignee, mapped to an Entra user (object id) and cached in the store.

Chain (dynamics.md §7): work item UserId → SystemUsers Alias/Email (the UPN) → Graph `/users/{upn}` → object id.
`[approvals.user_map]` pins an F&O user to an object id or UPN and always wins. A found user is cached
`mapping_ttl`, a user Graph does not know `negative_ttl`; Graph failures are not cached (the next card tries
again). This module never raises for a user it cannot map: it says why instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from bot import GraphError
from connector.store import Store, UserMapping

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")


def as_object_id(value: str | None) -> str | None:
    m = _GUID.match(value or "")
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class Approver:
    fo_user: str | None
    object_id: str | None  # None: not mapped (see note)
    upn: str | None = None
    name: str | None = None
    source: str = "graph"  # "config" | "cache" | "graph" | "card"
    note: str | None = None


class ApproverResolver:
    """Maps F&O users to Entra users.

    Args:
        store: holds the UserMapping cache.
        graph: a GraphClient (or None when Graph is not configured).
        user_map: F&O user id -> Entra object id or UPN (configuration overrides).
        mapping_ttl, negative_ttl: seconds a positive / negative answer is cached.
        clock: epoch seconds.
    """

    def __init__(self, store: Store, graph: Any, *, user_map: dict[str, str], mapping_ttl: float,
                 negative_ttl: float, clock: Callable[[], float]) -> None:
        self._store = store
        self._graph = graph
        self._map = {k.lower(): v for k, v in user_map.items()}
        self._ttl = mapping_ttl
        self._negative_ttl = negative_ttl
        self._clock = clock

    async def resolve(self, environment: str, fo_user: str | None, *, upn: str | None = None,
                      name: str | None = None, known: dict[str, str] | None = None) -> Approver:
        """The Entra user of `fo_user`.

        Args:
            upn: the SystemUsers Alias/Email (or the event's WorkflowUserEmail) when the caller has it.
            name: the F&O user name, shown when Graph gives none.
            known: `{"id", "name"}` the delivery stage already resolved for the card's approver mention.
        """
        pinned = self._map.get((fo_user or "").lower())
        if pinned:
            return await self._pinned(fo_user, pinned, name)
        if fo_user:
            cached = await self._store.get_user_mapping(environment, fo_user)
            if cached is not None and cached.expires_at > self._clock():
                if cached.object_id is None:
                    return Approver(fo_user, None, cached.upn, cached.display_name, "cache",
                                    f"{fo_user} is not in Entra ID (cached answer)")
                return Approver(fo_user, cached.object_id, cached.upn, cached.display_name, "cache")
        oid = as_object_id((known or {}).get("id"))
        if oid:
            found = Approver(fo_user, oid, upn, (known or {}).get("name") or name, "card")
            await self._remember(environment, found)
            return found
        if not upn:
            return Approver(fo_user, None, None, name, "graph",
                            f"F&O user {fo_user or '?'} has no Alias/Email: the approver cannot be mapped")
        if self._graph is None:
            return Approver(fo_user, None, upn, name, "graph", "Microsoft Graph is not configured")
        try:
            user = await self._graph.get_user(upn)
        except GraphError as exc:
            return Approver(fo_user, None, upn, name, "graph", f"user lookup for {upn} failed: {exc}")
        if user is None:
            found = Approver(fo_user, None, upn, name, "graph", f"{upn} not found in Entra ID")
        else:
            found = Approver(fo_user, user.id.lower(), user.upn or upn, user.display_name or name, "graph")
        await self._remember(environment, found)
        return found

    async def _pinned(self, fo_user: str | None, value: str, name: str | None) -> Approver:
        oid = as_object_id(value)
        user = None
        if self._graph is not None:
            try:
                user = await self._graph.get_user(oid or value)
            except GraphError as exc:
                log.info("user_map %s -> %s: Graph lookup failed (%s)", fo_user, value, exc)
        if user is not None:
            return Approver(fo_user, user.id.lower(), user.upn, user.display_name or name, "config")
        if oid:
            return Approver(fo_user, oid, None, name, "config")
        return Approver(fo_user, None, value, name, "config",
                        f"[approvals.user_map] maps {fo_user} to {value}, which Graph could not resolve")

    async def _remember(self, environment: str, found: Approver) -> None:
        if not found.fo_user:
            return
        ttl = self._ttl if found.object_id else self._negative_ttl
        await self._store.put_user_mapping(UserMapping(
            environment=environment, fo_user=found.fo_user, object_id=found.object_id, upn=found.upn,
            display_name=found.name, expires_at=self._clock() + ttl, source="graph"))
