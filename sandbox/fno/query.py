"""OData query options as F&O understands them: $filter, $select, $orderby, $top, $skip, $count; key segments.

F&O's rules, enforced: `*` wildcards inside `eq` strings, enum literals `Microsoft.Dynamics.DataEntities.E'V'`
(eq/ne only, never a plain string), no `in`, no `has`, no functions. Everything else is a QueryError (-> 400).
Knows nothing about HTTP or companies.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable

from sandbox.fno.state import EDM, ENUMS, NAMESPACE, EntityType


class QueryError(ValueError):
    """The query is not valid for F&O: answered 400 with this message."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<enum>Microsoft\.Dynamics\.DataEntities\.(?P<etype>\w+)'(?P<evalue>(?:[^']|'')*)')
    | (?P<str>'(?:[^']|'')*')
    | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)[mMdDfFlL]?
    | (?P<name>[A-Za-z_][\w.]*)
    | (?P<punct>[(),=])
    )""",
    re.VERBOSE,
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_UNSUPPORTED = {"in", "has", "add", "sub", "mul", "div", "divby", "mod", "any", "all"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: Any
    text: str


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QueryError(f"Syntax error at position {pos} in '{text}'.")
        pos = m.end()
        kind = (m.lastgroup or "") if m.lastgroup not in ("etype", "evalue") else "enum"
        value: Any
        if m.group("enum"):
            kind, value = "enum", (m.group("etype"), m.group("evalue").replace("''", "'"))
        elif kind == "str":
            value = m.group("str")[1:-1].replace("''", "'")
        elif kind == "num":
            raw = m.group("num")
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "datetime":
            value = dt.datetime.fromisoformat(m.group("datetime").replace("Z", "+00:00"))
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
        elif kind == "date":
            value = dt.datetime.fromisoformat(m.group("date") + "T00:00:00+00:00")
        else:
            value = m.group(kind)
        out.append(_Tok(kind, value, m.group(0).strip()))
    return out


@dataclass(frozen=True)
class _Prop:
    name: str
    kind: str


@dataclass(frozen=True)
class _Lit:
    kind: str  # str | num | datetime | bool | null | enum
    value: Any


Predicate = Callable[[dict[str, Any]], bool]


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) or b(row)


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda row: a(row) and b(row)


class _FilterParser:
    def __init__(self, et: EntityType, text: str) -> None:
        self.et, self.toks, self.i = et, _tokens(text), 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def word(self) -> str:
        tok = self.peek()
        return tok.value if tok and tok.kind == "name" else ""

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QueryError("Unexpected end of $filter expression.")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_()
        if self.peek() is not None:
            raise QueryError(f"Syntax error: unexpected '{self.take().text}' in $filter.")
        return pred

    def or_(self) -> Predicate:
        left = self.and_()
        while self.word() == "or":
            self.take()
            left = _either(left, self.and_())
        return left

    def and_(self) -> Predicate:
        left = self.not_()
        while self.word() == "and":
            self.take()
            left = _both(left, self.not_())
        return left

    def not_(self) -> Predicate:
        if self.word() == "not":
            self.take()
            inner = self.not_()
            return lambda row: not inner(row)
        return self.comparison()

    def comparison(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.value == "(":
            self.take()
            inner = self.or_()
            close = self.take()
            if close.value != ")":
                raise QueryError("Syntax error: ')' expected in $filter.")
            self._reject_unsupported()
            return inner
        left = self.operand()
        self._reject_unsupported()
        op = self.word()
        if op not in _COMPARE:
            if isinstance(left, _Lit) and left.kind == "bool":
                value = bool(left.value)
                return lambda row: value
            if isinstance(left, _Prop) and left.kind == "bool":
                name = left.name
                return lambda row: bool(row.get(name))
            after = tok.text if tok is not None else ""
            raise QueryError(f"Syntax error: comparison operator expected after '{after}' in $filter.")
        self.take()
        right = self.operand()
        self._reject_unsupported()
        return _compare(self.et, op, left, right)

    def _reject_unsupported(self) -> None:
        if self.word() in _UNSUPPORTED:
            raise QueryError(f"The '{self.word()}' operator is not supported by Finance and Operations OData.")

    def operand(self) -> _Prop | _Lit:
        tok = self.take()
        if tok.kind == "name":
            if tok.value in ("true", "false"):
                return _Lit("bool", tok.value == "true")
            if tok.value == "null":
                return _Lit("null", None)
            if tok.value in _UNSUPPORTED:
                raise QueryError(f"The '{tok.value}' operator is not supported by Finance and Operations OData.")
            nxt = self.peek()
            if nxt is not None and nxt.kind == "punct" and nxt.value == "(":
                raise QueryError(f"Unknown function '{tok.value}'. Use '*' wildcards in an 'eq' comparison.")
            if tok.value not in self.et.kinds:
                raise QueryError(f"Could not find a property named '{tok.value}' on type "
                                 f"'{self.et.qualified_name}'.")
            return _Prop(tok.value, self.et.kinds[tok.value])
        if tok.kind == "punct":
            raise QueryError(f"Syntax error: unexpected '{tok.text}' in $filter.")
        return _Lit(tok.kind if tok.kind != "date" else "datetime", tok.value)


_FLIP = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def _compare(et: EntityType, op: str, left: _Prop | _Lit, right: _Prop | _Lit) -> Predicate:
    if isinstance(left, _Lit) and isinstance(right, _Prop):
        left, right, op = right, left, _FLIP[op]
    if not isinstance(left, _Prop) or not isinstance(right, _Lit):
        raise QueryError("Only comparisons between a property and a literal are supported.")
    literal = _coerce(et, left, op, right)
    name, kind = left.name, left.kind
    if kind == "str" and op in ("eq", "ne") and isinstance(literal, str) and "*" in literal:
        pattern = re.compile("^" + ".*".join(re.escape(p) for p in literal.split("*")) + "$", re.I | re.S)
        def match(row: dict[str, Any]) -> bool:
            return row.get(name) is not None and bool(pattern.match(row[name]))

        return match if op == "eq" else (lambda row: not match(row))
    return lambda row: _apply(op, _comparable(kind, row.get(name)), literal)


def _coerce(et: EntityType, prop: _Prop, op: str, lit: _Lit) -> Any:
    kind = prop.kind
    incompatible = QueryError(
        f"A binary operator with incompatible types was detected. Found operand types "
        f"'{_edm(kind)}' and '{_lit_edm(lit)}' for operator kind '{op}'.")
    if lit.kind == "null":
        return None
    if kind in ENUMS:
        if lit.kind != "enum":
            raise incompatible
        etype, value = lit.value
        if etype != kind:
            raise incompatible
        if value not in ENUMS[kind]:
            raise QueryError(f"The string '{value}' is not a valid enumerated type constant for '{NAMESPACE}.{kind}'.")
        if op not in ("eq", "ne"):
            raise QueryError("Enum properties support only the 'eq' and 'ne' operators.")
        return value.lower()
    expected = {"str": "str", "int": "num", "dec": "num", "date": "datetime", "datetime": "datetime", "bool": "bool"}
    if expected[kind] != lit.kind:
        raise incompatible
    if kind == "str":
        return lit.value.lower()
    return lit.value


def _edm(kind: str) -> str:
    return f"{NAMESPACE}.{kind}" if kind in ENUMS else EDM[kind]


def _lit_edm(lit: _Lit) -> str:
    if lit.kind == "enum":
        return f"{NAMESPACE}.{lit.value[0]}"
    return {"str": "Edm.String", "num": "Edm.Decimal", "datetime": "Edm.DateTimeOffset",
            "bool": "Edm.Boolean"}.get(lit.kind, "Edm.Null")


def _comparable(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "date":
        return dt.datetime(value.year, value.month, value.day, 12, tzinfo=dt.timezone.utc)
    if isinstance(value, str):
        return value.lower()
    return value


def _apply(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if a is None or b is None:
        return False
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]


def parse_filter(et: EntityType, text: str) -> Predicate:
    """Compile a $filter expression for one entity type. Raises QueryError."""
    return _FilterParser(et, text).parse()


def _fields(et: EntityType, text: str, option: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise QueryError(f"The value of {option} is empty.")
    for name in names:
        if name.split()[0] not in et.kinds:
            raise QueryError(f"Could not find a property named '{name.split()[0]}' on type '{et.qualified_name}'.")
    return names


def _non_negative(option: str, text: str) -> int:
    if not text.isdigit():
        raise QueryError(f"Invalid value '{text}' for {option} query option found. "
                         f"The {option} query option requires a non-negative integer value.")
    return int(text)


@dataclass(frozen=True)
class Query:
    where: Predicate | None = None
    select: list[str] | None = None
    orderby: list[tuple[str, bool]] | None = None  # (field, descending)
    top: int | None = None
    skip: int = 0
    count: bool = False


_KNOWN = {"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$format", "$skiptoken", "$expand"}


def parse_query(et: EntityType, params: dict[str, str]) -> Query:
    """Parse the system query options of a collection request. Raises QueryError."""
    for name in params:
        if name.startswith("$") and name not in _KNOWN:
            raise QueryError(f"The query parameter '{name}' is not supported by the sandbox.")
    orderby = None
    if "$orderby" in params:
        orderby = []
        for part in _fields(et, params["$orderby"], "$orderby"):
            bits = part.split()
            if len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
                raise QueryError(f"Syntax error in $orderby: '{part}'.")
            orderby.append((bits[0], len(bits) == 2 and bits[1] == "desc"))
    count = params.get("$count", "false")
    if count not in ("true", "false"):
        raise QueryError(f"'{count}' is not a valid count option.")
    return Query(
        where=parse_filter(et, params["$filter"]) if params.get("$filter", "").strip() else None,
        select=_fields(et, params["$select"], "$select") if "$select" in params else None,
        orderby=orderby,
        top=_non_negative("$top", params["$top"]) if "$top" in params else None,
        skip=_non_negative("$skip", params["$skip"]) if "$skip" in params else 0,
        count=count == "true",
    )


def run_query(et: EntityType, rows: list[dict[str, Any]], q: Query) -> tuple[list[dict[str, Any]], int]:
    """Filter and order `rows`; returns (rows after $skip/$top, count before them)."""
    matched = [r for r in rows if q.where(r)] if q.where else list(rows)
    for name, desc in reversed(q.orderby or []):
        kind = et.kinds[name]
        matched.sort(key=lambda r: (r.get(name) is not None, _comparable(kind, r.get(name))), reverse=desc)
    total = len(matched)
    end = None if q.top is None else q.skip + q.top
    return matched[q.skip:end], total


def parse_key(et: EntityType, text: str) -> dict[str, Any]:
    """Parse a key segment body, e.g. `dataAreaId='usmf',PurchaseOrderNumber='X'` or `'X'` for one key."""
    toks = _tokens(text) if text.strip() else []
    values: dict[str, Any] = {}
    if len(toks) == 1 and len(et.keys) == 1:
        values[et.keys[0]] = toks[0].value
    else:
        i = 0
        while i < len(toks):
            if i + 2 >= len(toks) or toks[i].kind != "name" or toks[i + 1].value != "=":
                raise QueryError(f"Bad key segment '({text})'.")
            values[toks[i].value] = toks[i + 2].value
            i += 3
            if i < len(toks):
                if toks[i].value != ",":
                    raise QueryError(f"Bad key segment '({text})'.")
                i += 1
    if set(values) != set(et.keys):
        raise QueryError("The number of keys specified in the URI does not match number of key properties for "
                         f"the resource '{et.qualified_name}'.")
    for name, value in values.items():
        if (et.kinds[name] == "int") != isinstance(value, int) or (et.kinds[name] == "str") != isinstance(value, str):
            raise QueryError(f"Bad key value for '{name}' in '({text})'.")
    return values


@dataclass(frozen=True)
class ExpandItem:
    navigation: str
    options: dict[str, str]  # nested system query options, e.g. {"$select": "a,b", "$orderby": "c"}


def _split_outside(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is outside parentheses and quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


_NESTED = {"$filter", "$select", "$orderby", "$top", "$skip", "$count"}


def parse_expand(text: str) -> list[ExpandItem]:
    """`Nav1($select=a,b;$orderby=c),Nav2` -> items. One level only (a nested $expand is refused). QueryError."""
    items: list[ExpandItem] = []
    for part in _split_outside(text, ","):
        part = part.strip()
        name, paren, rest = part.partition("(")
        name = name.strip()
        if not name or not name.replace("_", "a").isalnum() or (paren and not rest.endswith(")")):
            raise QueryError(f"Syntax error in $expand: '{part}'.")
        options: dict[str, str] = {}
        for option in _split_outside(rest[:-1], ";") if paren else []:
            key, eq, value = option.strip().partition("=")
            if key == "$expand":
                raise QueryError("The request includes a $expand inside $expand; only one level of expansion is "
                                 "supported.")
            if not eq or key not in _NESTED:
                raise QueryError(f"Syntax error in $expand: unknown option '{option.strip()}' for '{name}'.")
            options[key] = value
        items.append(ExpandItem(name, options))
    return items
