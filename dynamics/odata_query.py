"""OData v4 query text for F&O: literals (quoted, escaped), enum literals, `$filter` built from a mapping.

Pure string building; the client (odata.py) sends what this module writes. F&O specifics (dynamics.md §4):
no `in` operator (lists become `or` chains), enums as `Microsoft.Dynamics.DataEntities.<Enum>'<Value>'`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

__all__ = ["ENUM_NAMESPACE", "Enum", "Expansion", "build_expand", "build_filter", "check_identifier", "literal"]

ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Enum:
    """An OData enum literal: `Enum("Microsoft.Dynamics.DataEntities.NoYes", "Yes")` -> `...NoYes'Yes'`.

    A bare type name (`Enum("NoYes", "Yes")`) is qualified with Microsoft.Dynamics.DataEntities.
    """

    type: str
    value: str

    def __post_init__(self) -> None:
        if not _QUALIFIED.fullmatch(self.type):
            raise ValueError(f"not an OData enum type name: {self.type!r}")

    @property
    def qualified_type(self) -> str:
        return self.type if "." in self.type else f"{ENUM_NAMESPACE}.{self.type}"


def literal(value: Any) -> str:
    """Format a Python value as an OData v4 literal (strings quoted, quotes doubled).

    Raises:
        ValueError: NaN/infinite numbers, naive datetimes. TypeError: anything else unsupported.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return f"{value.qualified_type}'{value.value.replace(chr(39), chr(39) * 2)}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(value):
            raise ValueError(f"no OData literal for {value!r}")
        return str(value) if isinstance(value, Decimal) else repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("OData DateTimeOffset literals need an aware datetime")
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no OData literal for {type(value).__name__}")


def build_filter(filter: Mapping[str, Any] | str | None, *, company: str | None = None) -> str | None:
    """`$filter` text: `dataAreaId eq '<company>'` (when given) ANDed with the rest.

    A mapping gives `Field eq <literal>` clauses joined by `and`; a list/tuple/set value gives
    `(Field eq a or Field eq b)` because F&O does not support `in`. A string is used as written.
    """
    clauses: list[str] = []
    if company is not None:
        clauses.append(f"dataAreaId eq {literal(company.lower())}")
    if isinstance(filter, str):
        if filter.strip():
            clauses.append(f"({filter})" if company is not None else filter)
    elif filter:
        for name, value in filter.items():
            check_identifier(name, "filter field")
            if isinstance(value, (list, tuple, set, frozenset)):
                if not value:
                    raise ValueError(f"empty value list for filter field {name!r}")
                alternatives = " or ".join(f"{name} eq {literal(v)}" for v in value)
                clauses.append(f"({alternatives})" if len(value) > 1 else alternatives)
            else:
                clauses.append(f"{name} eq {literal(value)}")
    return " and ".join(clauses) or None


def check_identifier(name: Any, what: str) -> None:
    """ValueError unless `name` is a plain OData identifier (entity set, field, action)."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a valid {what} name: {name!r}")


def checked(name: Any, what: str) -> str:
    check_identifier(name, what)
    return name


@dataclass(frozen=True)
class Expansion:
    """One `$expand` item: a navigation property with its nested options (F&O expands one level only).

    `Expansion("PurchaseOrderLines", select=("LineNumber",), orderby=("LineNumber",))` ->
    `PurchaseOrderLines($select=LineNumber;$orderby=LineNumber)`.
    """

    navigation: str
    select: tuple[str, ...] = ()
    orderby: tuple[str, ...] = ()
    top: int | None = None

    def __post_init__(self) -> None:
        check_identifier(self.navigation, "navigation property")
        for name in self.select:
            check_identifier(name, "select field")
        for item in self.orderby:
            check_identifier(item.split()[0] if item.split() else item, "orderby field")
        if self.top is not None and self.top < 1:
            raise ValueError("top must be at least 1")


def build_expand(items: Sequence[Expansion]) -> str | None:
    """`$expand` text: items joined by `,`, nested options inside parentheses joined by `;` (OData v4 ABNF)."""
    parts: list[str] = []
    for item in items:
        options: list[str] = []
        if item.select:
            options.append("$select=" + ",".join(item.select))
        if item.orderby:
            options.append("$orderby=" + ",".join(item.orderby))
        if item.top is not None:
            options.append(f"$top={item.top}")
        parts.append(item.navigation + (f"({';'.join(options)})" if options else ""))
    return ",".join(parts) or None
