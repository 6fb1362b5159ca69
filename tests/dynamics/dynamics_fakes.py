"""Fakes for dynamics/ tests: a small F&O OData stand-in (the full one lives in sandbox/fno).

It serves `/data/<Set>` with a tiny `$filter` evaluator (eq/and/or/parentheses, `*` wildcards, enum literals,
case-insensitive strings), `$select`, `$orderby`, `$top`, server paging with absolute `@odata.nextLink`, bound
actions, bearer checks, and a queue of scripted answers to inject 429/5xx/errors. Every request is recorded.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web


@dataclass
class Scripted:
    status: int
    body: Any = None  # dict -> JSON, str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def fno_error(message: str, inner: str | None = None, code: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innererror": {
        "message": inner or message, "type": "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataException",
        "stacktrace": "   at Microsoft.Dynamics.Platform.SECRET_STACK_FRAME()"}}}


class FakeFnO:
    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.script: list[Scripted] = []
        self.requests: list[Seen] = []
        self.page_size = 10_000
        self.valid_tokens = {"token-1"}
        self.actions: dict[str, Callable[[str, dict[str, Any]], Scripted]] = {}
        self.base_url = ""
        # entity set -> fields this "environment" lacks: naming one in a query answers F&O's 400
        self.missing_fields: dict[str, set[str]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/data/{rest:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(Seen(request.method, request.path, dict(request.query), dict(request.headers),
                                  json.loads(raw) if raw else None))
        if self.script:
            return _respond(self.script.pop(0))
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.valid_tokens:
            return _respond(Scripted(401, fno_error("Unauthorized")))
        rest = request.match_info["rest"]
        if request.method == "POST":
            match = re.fullmatch(r"(\w+)\((.*)\)/Microsoft\.Dynamics\.DataEntities\.(\w+)", rest)
            if not match or match.group(3) not in self.actions:
                return _respond(Scripted(404, fno_error("Resource not found for the segment.")))
            return _respond(self.actions[match.group(3)](match.group(2), json.loads(raw) if raw else {}))
        if rest not in self.tables:
            return _respond(Scripted(404, fno_error(f"Resource not found for the segment '{rest}'.")))
        rows = list(self.tables[rest])
        query = request.query
        unknown = self._unknown_field(rest, query)
        if unknown:
            type_name = re.sub(r"s(V[0-9]+)?$", r"\1", rest)  # PurchaseOrderHeadersV2 -> PurchaseOrderHeaderV2
            text = f"Could not find a property named '{unknown}' on type 'Microsoft.Dynamics.DataEntities.{type_name}'."
            return _respond(Scripted(400, fno_error("The query specified in the URI is not valid. " + text, text)))
        if "$filter" in query:
            try:
                predicate = _Filter(query["$filter"]).parse()
            except ValueError as exc:
                return _respond(Scripted(400, fno_error("An error has occurred.", f"bad filter: {exc}")))
            rows = [row for row in rows if predicate(row)]
        if "$orderby" in query:
            name, _, direction = query["$orderby"].split(",")[0].partition(" ")
            rows.sort(key=lambda r: r.get(name), reverse=direction == "desc")
        if "$top" in query:
            rows = rows[: int(query["$top"])]
        if "$select" in query:
            wanted = query["$select"].split(",")
            rows = [{k: r.get(k) for k in wanted} for r in rows]
        skip = int(query.get("$skiptoken", "0"))
        page = rows[skip : skip + self.page_size]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/data/$metadata#{rest}", "value": page}
        if skip + self.page_size < len(rows):
            body["@odata.nextLink"] = str(request.url.update_query({"$skiptoken": str(skip + self.page_size)}))
        return web.json_response(body, content_type="application/json")


    def _unknown_field(self, entity_set: str, query: Any) -> str | None:
        """The first field of $select, $filter or $orderby that this entity set lacks (F&O checks them all)."""
        missing = self.missing_fields.get(entity_set, set())
        named = query.get("$select", "").split(",") + [item.split(" ")[0] for item in
                                                       query.get("$orderby", "").split(",")]
        named += re.findall(r"[A-Za-z_]\w*", re.sub(r"'(?:[^']|'')*'", "", query.get("$filter", "")))
        return next((name for name in named if name in missing), None)


def _respond(s: Scripted) -> web.StreamResponse:
    if isinstance(s.body, (dict, list)):
        return web.json_response(s.body, status=s.status, headers=s.headers)
    text = s.body.encode() if isinstance(s.body, str) else (s.body or b"")
    return web.Response(status=s.status, body=text, headers=s.headers)


class _Filter:
    """or := and ('or' and)*; and := atom ('and' atom)*; atom := '(' or ')' | Field 'eq' literal."""

    TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|([\w.]+)'((?:[^']|'')*)'|(-?\d+(?:\.\d+)?)\b|(\w+))")

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, Any]] = []
        pos = 0
        while pos < len(text.rstrip()):
            m = self.TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"cannot read {text[pos:]!r}")
            pos = m.end()
            if m.group(1):
                self.tokens.append(("(", None))
            elif m.group(2):
                self.tokens.append((")", None))
            elif m.group(3) is not None:
                self.tokens.append(("str", m.group(3).replace("''", "'")))
            elif m.group(4):
                self.tokens.append(("str", m.group(5).replace("''", "'")))  # enum literal: compare by value
            elif m.group(6):
                self.tokens.append(("num", float(m.group(6))))
            else:
                word = m.group(7)
                kind = {"true": "bool", "false": "bool"}.get(word, "word")
                self.tokens.append((kind, word == "true" if kind == "bool" else word))
        self.i = 0

    def parse(self) -> Callable[[dict[str, Any]], bool]:
        result = self._or()
        if self.i != len(self.tokens):
            raise ValueError("trailing tokens")
        return result

    def _peek(self, value: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i][1] == value and self.tokens[self.i][0] == "word"

    def _or(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._and()]
        while self._peek("or"):
            self.i += 1
            parts.append(self._and())
        return lambda row: any(p(row) for p in parts)

    def _and(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self._atom()]
        while self._peek("and"):
            self.i += 1
            parts.append(self._atom())
        return lambda row: all(p(row) for p in parts)

    def _atom(self) -> Callable[[dict[str, Any]], bool]:
        kind, value = self.tokens[self.i]
        if kind == "(":
            self.i += 1
            inner = self._or()
            if self.tokens[self.i][0] != ")":
                raise ValueError("missing )")
            self.i += 1
            return inner
        name = value
        if not self._peek_at(self.i + 1, "eq"):
            raise ValueError(f"only 'eq' is supported, near {name!r}")
        lit_kind, lit = self.tokens[self.i + 2]
        self.i += 3

        def test(row: dict[str, Any]) -> bool:
            actual = row.get(name)
            if lit_kind == "str":
                return isinstance(actual, str) and fnmatch.fnmatchcase(actual.lower(), lit.lower())
            return actual == lit

        return test

    def _peek_at(self, i: int, word: str) -> bool:
        return i < len(self.tokens) and self.tokens[i] == ("word", word)


class Tokens:
    """A token callable that records its calls; `tokens` are handed out in order (the last one repeats)."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens or ["token-1"])
        self.calls: list[bool] = []

    async def __call__(self, *, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return self.tokens[min(len(self.calls) - 1, len(self.tokens) - 1)]


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
