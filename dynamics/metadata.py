"""F&O's `/data/$metadata` (OData CSDL XML): read it and answer "does this entity set / field / action exist?".

Read-only and standalone: `fetch_metadata` takes a session, the environment URL and a token callable (the same
contract as ODataClient) and makes one GET; `parse_csdl` is pure. Used by `ml-connector check` to compare the
enrichment plans and the approval actions with what an environment really exposes (entity sets differ by version
and configuration keys, dynamics.md §4).
"""

from __future__ import annotations

import asyncio
import os
import json
import ssl as _ssl
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dynamics.errors import ODataAuthError, ODataError, ODataUnavailable
from dynamics.odata import TokenCallable

__all__ = ["Action", "EntityType", "Metadata", "fetch_metadata", "parse_csdl"]

_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


@dataclass(frozen=True)
class EntityType:
    name: str  # qualified: Namespace.Name
    keys: tuple[str, ...]
    properties: frozenset[str]
    navigation: frozenset[str]


@dataclass(frozen=True)
class Action:
    name: str
    bound_to: str | None  # qualified entity type of the binding parameter (or its collection's element type)
    parameters: tuple[str, ...]  # without the binding parameter


@dataclass
class Metadata:
    entity_sets: dict[str, str] = field(default_factory=dict)  # set name -> qualified entity type
    types: dict[str, EntityType] = field(default_factory=dict)  # qualified name -> type
    actions: list[Action] = field(default_factory=list)

    def entity_type(self, entity_set: str) -> EntityType | None:
        qualified = self.entity_sets.get(entity_set)
        return self.types.get(qualified) if qualified else None

    def missing_fields(self, entity_set: str, fields: list[str] | set[str]) -> list[str]:
        """The fields (properties or navigation properties) the set's type lacks; every one if the set is absent."""
        et = self.entity_type(entity_set)
        if et is None:
            return sorted(fields)
        return sorted(f for f in fields if f not in et.properties and f not in et.navigation)

    def bound_action(self, entity_set: str, name: str) -> Action | None:
        qualified = self.entity_sets.get(entity_set)
        return next((a for a in self.actions if a.name == name and a.bound_to == qualified), None)


def _collection_element(type_name: str) -> str:
    return type_name[len("Collection("):-1] if type_name.startswith("Collection(") else type_name


def parse_csdl(xml: str | bytes) -> Metadata:
    """Parse a CSDL document (OData v4 EDMX). Raises ValueError when it is not one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"$metadata is not XML: {exc}") from None
    schemas = list(root.iter(f"{_EDM}Schema"))
    if not schemas:
        raise ValueError("$metadata has no OData v4 Schema element")
    meta = Metadata()
    for schema in schemas:
        ns = schema.get("Namespace", "")
        alias = schema.get("Alias")

        def qualify(name: str, ns: str = ns, alias: str | None = alias) -> str:
            if alias and name.startswith(alias + "."):
                return ns + name[len(alias):]
            return name

        for et in schema.findall(f"{_EDM}EntityType"):
            keys = tuple(ref.get("Name", "") for ref in et.findall(f"{_EDM}Key/{_EDM}PropertyRef"))
            props = frozenset(p.get("Name", "") for p in et.findall(f"{_EDM}Property"))
            navs = frozenset(n.get("Name", "") for n in et.findall(f"{_EDM}NavigationProperty"))
            qualified = f"{ns}.{et.get('Name', '')}"
            meta.types[qualified] = EntityType(qualified, keys, props, navs)
        for action in schema.findall(f"{_EDM}Action"):
            params = action.findall(f"{_EDM}Parameter")
            bound = action.get("IsBound", "false").lower() == "true"
            bound_to = qualify(_collection_element(params[0].get("Type", ""))) if bound and params else None
            names = tuple(p.get("Name", "") for p in (params[1:] if bound else params))
            meta.actions.append(Action(action.get("Name", ""), bound_to, names))
        for container in schema.findall(f"{_EDM}EntityContainer"):
            for es in container.findall(f"{_EDM}EntitySet"):
                meta.entity_sets[es.get("Name", "")] = qualify(es.get("EntityType", ""))
    return meta


async def fetch_metadata(session: aiohttp.ClientSession, base_url: str, get_token: TokenCallable, *,
                         ssl: _ssl.SSLContext | None = None, timeout: float = 30) -> Metadata:
    """GET `{base_url}/data/$metadata` once (a 401 refreshes the token once) and parse it.

    Raises:
        ODataAuthError: 401 after a refresh, or 403 (the app has no F&O user, or lacks roles).
        ODataUnavailable: cannot connect, TLS failure, timeout, 5xx; `inner_message` says which.
        ODataError: another status, or a body that is not CSDL.
    """
    url = f"{base_url.rstrip('/')}/data/$metadata"
    target = "GET /data/$metadata"
    refreshed = False
    while True:
        token = await get_token(force_refresh=refreshed)
        try:
            async with session.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/xml"},
                                   ssl=ssl if ssl is not None else True, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ODataUnavailable(None, "", "TLS certificate not trusted", str(exc), target=target) from None
        except aiohttp.ClientConnectorError as exc:
            err = exc.os_error
            # asyncio's text is "Connect call failed (host, port)": the errno says what happened
            reason = os.strerror(err.errno) if err is not None and err.errno else str(exc)
            raise ODataUnavailable(None, "", "cannot connect", reason.lower(), target=target) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise ODataUnavailable(None, "", "no answer", reason, target=target) from None
        if status == 401 and not refreshed:
            refreshed = True
            continue
        if status == 200:
            try:
                return parse_csdl(raw)
            except ValueError as exc:
                raise ODataError(status, "", str(exc), target=target) from None
        message, inner = _error_text(raw)
        if status in (401, 403):
            raise ODataAuthError(status, "", message or "Unauthorized", inner, target=target)
        if status >= 500:
            raise ODataUnavailable(status, "", message or "Server error", inner, target=target)
        raise ODataError(status, "", message or f"HTTP {status}", inner, target=target)


def _error_text(raw: bytes) -> tuple[str, str | None]:
    try:
        body: Any = json.loads(raw)
        err = body.get("error") or {}
        inner = (err.get("innererror") or {}).get("message")
        return str(err.get("message") or ""), str(inner) if inner else None
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace"), None
