"""JavaScript value semantics and the prebuilt functions of the expression language.

Microsoft's engine (npm adaptive-expressions 4.23.3) runs on JavaScript values, so matching it means matching
JavaScript's number printing, ``toString``, ``JSON.stringify``, ``parseInt``, ``Math.round``, d3-format's
``,.Nf`` and dayjs's date formatting: those live here, next to the functions that need them. Each function
follows the adaptive-expressions source of the same name (arity, argument checks, what is an error and what
quietly yields ``undefined``).

This module knows nothing about templates or parsing: a function receives the call node and evaluates its
children through ``child.ev(state, subst)``. It is longer than our usual module because the function table and
the JavaScript semantics it leans on are one subject; split it when it grows further.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from .locales import EN_US_NUMBERS, DateNames, NumberSymbols, date_names, number_symbols


class _Undefined:
    """JavaScript's ``undefined`` (a missing value, distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


class EvalError(Exception):
    """An expression failed at run time (adaptive-expressions returns ``{error}``). Private to cards/."""


# Return types, as adaptive-expressions' ReturnType bit flags (used by the parse-time argument checks).
BOOL, NUM, OBJ, STR, ARR = 1, 2, 4, 8, 16


# ---------------------------------------------------------------- JavaScript values

def is_num(v: Any) -> bool:
    """FunctionUtils.isNumber: a number that is not NaN (bools are not numbers)."""
    t = type(v)
    if t is int:
        return True
    return t is float and v == v


def is_int(v: Any) -> bool:
    """Number.isInteger."""
    t = type(v)
    if t is int:
        return True
    return t is float and math.isfinite(v) and v.is_integer()


def js_number(v: float | int) -> float | int:
    """Normalise an arithmetic result: JS numbers are doubles (ints past 2**53 lose precision)."""
    if type(v) is int and -9007199254740992 <= v <= 9007199254740992:
        return v
    return float(v)


def num_str(x: float | int) -> str:
    """Number.prototype.toString()."""
    if isinstance(x, int):  # bool never gets here: the callers turn it into text first
        if -10**21 < x < 10**21:
            return str(x)
        x = float(x)
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) <= 9007199254740992:
        return str(int(x))
    sign = "-" if x < 0 else ""
    r = repr(abs(x))
    mant, _, exp = r.partition("e")
    point = mant.find(".")
    digits = mant.replace(".", "")
    n = (point if point >= 0 else len(mant)) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    es = f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + es


def js_string(v: Any) -> str:
    """String(v), as a JS template literal prints a value."""
    if v is None:
        return "null"
    if v is UNDEFINED:
        return "undefined"
    return to_string(v)


def to_string(v: Any) -> str:
    """v.toString(); null and undefined raise (JavaScript throws a TypeError)."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is float:
        return num_str(v)
    if t is list:
        return ",".join("" if e is None or e is UNDEFINED else to_string(e) for e in v)
    if t is dict:
        return "[object Object]"
    if v is None or v is UNDEFINED:
        raise EvalError(f"Cannot read properties of {'null' if v is None else 'undefined'} (reading 'toString')")
    raise EvalError(f"a {t.__name__} is not a JSON value")


def to_json(v: Any) -> str:
    """JSON.stringify(v) (compact)."""
    t = type(v)
    if v is None:
        return "null"
    if t is str:
        return json.dumps(v, ensure_ascii=False)
    if t is bool:
        return "true" if v else "false"
    if t is int or t is float:
        return num_str(v) if math.isfinite(v) else "null"
    if t is list:
        return "[" + ",".join("null" if e is UNDEFINED else to_json(e) for e in v) + "]"
    if t is dict:
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + to_json(e)
                              for k, e in v.items() if e is not UNDEFINED) + "}"
    return "null"


def common_stringify(v: Any) -> str:
    """InternalFunctionUtils.commonStringify: '' for null, JSON (outer quotes trimmed) for objects."""
    if v is None or v is UNDEFINED:
        return ""
    if type(v) in (dict, list):
        return to_json(v).lstrip("'\"").rstrip("'\"")
    return to_string(v)


_INT_PREFIX = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|\d+)")
_FLOAT_PREFIX = re.compile(r"\s*([+-]?(?:Infinity|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))")


def parse_int(s: str, radix10: bool = False) -> int | None:
    """parseInt(s) (or parseInt(s, 10)); None for NaN."""
    m = _INT_PREFIX.match(s)
    if not m:
        return None
    body = m.group(2)
    if body[:2] in ("0x", "0X"):
        if radix10:
            body = "0"
        else:
            return int(m.group(1) + body[2:], 16)
    return int(m.group(1) + body)


def parse_float(s: str) -> float | None:
    """parseFloat(s); None for NaN."""
    m = _FLOAT_PREFIX.match(s)
    if not m:
        return None
    text = m.group(1)
    if text.lstrip("+-") == "Infinity":
        return -math.inf if text.startswith("-") else math.inf
    return float(text)


def logic_true(v: Any) -> bool:
    """InternalFunctionUtils.isLogicTrue: booleans as themselves, null/undefined false, anything else true."""
    if type(v) is bool:
        return v
    return v is not None and v is not UNDEFINED


def _deep_equal(a: Any, b: Any) -> bool:
    """lodash isEqual over JSON values (numbers compare by value, never equal to booleans)."""
    ta, tb = type(a), type(b)
    if (ta is bool) != (tb is bool):
        return False
    if ta is dict:
        return tb is dict and len(a) == len(b) and all(k in b and _deep_equal(a[k], b[k]) for k in a)
    if ta is list:
        return tb is list and len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    if tb in (dict, list):
        return False
    return a == b


def common_equals(a: Any, b: Any) -> bool:
    """FunctionUtils.commonEquals."""
    a_null = a is None or a is UNDEFINED
    b_null = b is None or b is UNDEFINED
    if a_null or b_null:
        return a_null and b_null
    ta, tb = type(a), type(b)
    if ta is list and tb is list:
        return len(a) == len(b) and all(common_equals(x, y) for x, y in zip(a, b))
    if ta is dict and tb is dict:
        return len(a) == len(b) and _deep_equal(a, b)
    if is_num(a) and is_num(b):
        return a == b or abs(a - b) < 2.220446049250313e-16
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in (dict, list) or tb in (dict, list):
        return False
    return ta is tb and a == b


def access_property(inst: Any, prop: str) -> Any:
    """InternalFunctionUtils.accessProperty: case-insensitive, first matching own key; falsy → undefined."""
    t = type(inst)
    if t is dict:
        if not inst:
            return UNDEFINED
        lp = prop.lower()
        for k in inst:
            if k == prop or k.lower() == lp:
                return inst[k]
        return UNDEFINED
    if t is list or t is str:
        # Object.keys of an array or string are its indices
        if inst and prop.isdigit() and (prop == "0" or prop[0] != "0") and int(prop) < len(inst):
            return inst[int(prop)]
        return UNDEFINED
    return UNDEFINED


def access_index(inst: Any, index: int) -> Any:
    """InternalFunctionUtils.accessIndex: null → undefined; out of range or not a list → error."""
    if inst is None or inst is UNDEFINED:
        return UNDEFINED
    if type(inst) is list:
        if 0 <= index < len(inst):
            return inst[index]
        raise EvalError(f"{index} is out of range for {js_string(inst)}")
    raise EvalError(f"{js_string(inst)} is not a collection.")


_PATH_SPLIT = re.compile(r"[.\[\]]+")


def get_path(scope: Any, path: str) -> Any:
    """SimpleObjectMemory.getValue: walk a path such as ``a.b[0]['c']``; any failure → undefined."""
    cur = scope
    value = UNDEFINED
    for part in _PATH_SPLIT.split(path):
        if not part:
            continue
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            part = part[1:-1]
        value = step(cur, part)
        cur = value
    return value


def step(cur: Any, part: str) -> Any:
    """One step of SimpleObjectMemory.getValue."""
    if type(cur) is list:
        idx = parse_int(part)
        if idx is not None:
            return cur[idx] if 0 <= idx < len(cur) else UNDEFINED
    return access_property(cur, part)


# ---------------------------------------------------------------- numbers

def js_round(x: float | int) -> float | int:
    """Math.round: half toward +infinity."""
    if type(x) is int or not math.isfinite(x):
        return x
    f = math.floor(x)
    return f + 1 if x - f >= 0.5 else f


def to_fixed(x: float | int, digits: int) -> str:
    """Number.prototype.toFixed (exact decimal expansion, ties away from zero)."""
    if not math.isfinite(x) or abs(x) >= 1e21:
        return num_str(x)
    text = _fixed_fast(x, digits)
    if text is not None:
        return text
    q = Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = f"{q:f}"
    if text.startswith("-") and q == 0:
        text = text[1:]
    return text


def _fixed_fast(x: float | int, digits: int) -> str | None:
    """`to_fixed` without Decimal where that gives the same text, else None.

    Python's float formatting rounds the exact binary value correctly, ties to even; toFixed rounds ties away from
    zero, so only an exact tie (x * 10**digits ending in exactly .5, found with integers) goes to Decimal. So does a
    text of more than 28 characters, where Decimal's 28-digit context may raise (as it always did).
    """
    if type(x) is int:
        text = str(x) + ("." + "0" * digits if digits else "")
    elif type(x) is float:
        n, den = x.as_integer_ratio()
        if den != 1:
            twice = n * 10 ** digits * 2
            if twice % den == 0 and (twice // den) & 1:
                return None  # an exact tie
        text = format(x, f".{digits}f")
        if text[0] == "-" and not text.strip("-0."):
            text = text[1:]  # toFixed of a negative number that rounds to zero has no sign
    else:
        return None
    return text if len(text) <= 28 else None


_DIGIT_RUN = re.compile(r"[0-9]*")


def d3_fixed(x: float | int, precision: int, symbols: NumberSymbols = EN_US_NUMBERS) -> str:
    """d3-format ``,.{precision}f`` (U+2212 minus) with the locale's separators and grouping (default en-US)."""
    precision = max(0, min(20, precision))
    negative = x < 0 or (x == 0 and math.copysign(1.0, x) < 0)
    text = to_fixed(abs(x), precision)
    i = _DIGIT_RUN.match(text).end()  # type: ignore[union-attr]  # always matches (maybe empty)
    whole, suffix = text[:i], text[i:]
    if negative and float(text if text[:1].isdigit() else "nan") == 0:
        negative = False
    if whole and symbols.primary == 3 and symbols.secondary == 3:
        # groups of three, as the loop below makes them: Python's own thousands separator, then the locale's
        grouped = f"{int(whole):,}"
        if symbols.group != ",":
            grouped = grouped.replace(",", symbols.group)
        if suffix.startswith("."):
            suffix = symbols.decimal + suffix[1:]
        return ("\u2212" if negative else "") + grouped + suffix
    groups = []
    size = symbols.primary
    while len(whole) > size:
        groups.append(whole[-size:])
        whole = whole[:-size]
        size = symbols.secondary
    groups.append(whole)
    if suffix.startswith("."):
        suffix = symbols.decimal + suffix[1:]
    return ("\u2212" if negative else "") + symbols.group.join(reversed(groups)) + suffix


# ---------------------------------------------------------------- dates

_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?(Z|[+-]\d{2}:?\d{2})?\Z")
_MS_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_timestamp(value: Any) -> int:
    """Milliseconds since the epoch from an ISO 8601 string or an F&O ``/Date(ms)/`` string.

    A date-time without an offset is UTC (Microsoft's formatDateTime appends ``Z``). Raises EvalError.
    """
    if type(value) is not str:
        raise EvalError(f"{js_string(value)} is not a valid datetime string.")
    m = _MS_DATE.match(value)
    if m:
        return int(m.group(1))
    m = _ISO.match(value.strip())
    if not m:
        raise EvalError(f"{value} is not a valid datetime string.")
    y, mo, d, h, mi, s, frac, off = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=timezone.utc)
    except ValueError:
        raise EvalError(f"{value} is not a valid datetime string.") from None
    ms = (dt - _EPOCH) // timedelta(milliseconds=1) + (int((frac or "0")[:3].ljust(3, "0")) if frac else 0)
    if off and off != "Z":
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60000
    return ms


_DAYJS = re.compile(r"\[([^\]]+)]|YYYY|YY|M{1,4}|D{1,2}|d{1,4}|H{1,2}|h{1,2}|a|A|m{1,2}|s{1,2}|Z{1,2}|SSS")
_WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def format_dayjs(ms: int, fmt: str, names: DateNames | None = None) -> str:
    """dayjs(ms).utc().format(fmt): English names, or the locale's CLDR `names` (see cards/locales.py)."""
    try:
        dt = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise EvalError("date out of range") from None
    wd = (dt.weekday() + 1) % 7
    h12 = dt.hour % 12 or 12

    def token(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1)
        t = m.group(0)
        return {
            "YY": lambda: str(dt.year)[-2:], "YYYY": lambda: str(dt.year).rjust(4, "0"),
            "M": lambda: str(dt.month), "MM": lambda: f"{dt.month:02d}",
            "MMM": lambda: names.months_abbreviated[dt.month - 1] if names else _MONTHS[dt.month - 1][:3],
            "MMMM": lambda: names.months_wide[dt.month - 1] if names else _MONTHS[dt.month - 1],
            "D": lambda: str(dt.day), "DD": lambda: f"{dt.day:02d}", "d": lambda: str(wd),
            "dd": lambda: names.days_short[wd] if names else _WEEKDAYS[wd][:2],
            "ddd": lambda: names.days_abbreviated[wd] if names else _WEEKDAYS[wd][:3],
            "dddd": lambda: names.days_wide[wd] if names else _WEEKDAYS[wd],
            "H": lambda: str(dt.hour), "HH": lambda: f"{dt.hour:02d}", "h": lambda: str(h12),
            "hh": lambda: f"{h12:02d}", "a": lambda: _meridiem(dt.hour, names).lower(),
            "A": lambda: _meridiem(dt.hour, names), "m": lambda: str(dt.minute),
            "mm": lambda: f"{dt.minute:02d}", "s": lambda: str(dt.second), "ss": lambda: f"{dt.second:02d}",
            "SSS": lambda: f"{dt.microsecond // 1000:03d}", "Z": lambda: "+00:00", "ZZ": lambda: "+0000",
        }[t]()

    return _DAYJS.sub(token, fmt)


def _meridiem(hour: int, names: DateNames | None) -> str:
    if names is None:
        return "AM" if hour < 12 else "PM"
    return names.am if hour < 12 else names.pm


# .NET custom format letters → (dayjs token per repeat count); a None entry means "unsupported by dayjs".
_DOTNET = {
    "d": ("D", "DD", "ddd", "dddd"), "f": (None, None, "SSS"), "F": (None, None, "SSS"), "g": (None,),
    "h": ("h", "hh"), "H": ("H", "HH"), "m": ("m", "mm"), "M": ("M", "MM", "MMM", "MMMM"), "s": ("s", "ss"),
    "t": ("A", "A"), "y": ("YY", "YY", "YYYY", "YYYY"), "z": ("ZZ", "ZZ", "Z"),
}


def dotnet_to_dayjs(fmt: str) -> str:
    """convertCSharpDateTimeToDayjs (adaptive-expressions): a .NET custom format to a dayjs one.

    Raises ValueError where Microsoft's converter throws (its caller then uses the format unconverted).
    """
    if len(fmt) == 1:
        if fmt in "RrUu":
            raise ValueError(fmt)
        if fmt in "Oo":
            fmt = "YYYY-MM-DDTHH:mm:ss.SSS0000Z"
    out: list[str] = []
    letter, count = "", 0
    i, n = 0, len(fmt)

    def flush() -> None:
        nonlocal letter, count
        if letter:
            tok = _DOTNET[letter][count - 1]
            if tok is None:
                raise ValueError(letter)
            out.append(tok)
        letter, count = "", 0

    while i < n:
        c = fmt[i]
        if c in _DOTNET:
            if c == letter:
                count = min(count + 1, len(_DOTNET[c]))
            else:
                flush()
                letter, count = c, 1
        elif c in "'`":
            flush()
            end = fmt.find("'" if c == "'" else "`", i + 1)
            if end < 0:
                raise ValueError("Invalid Format String")
            out.append(fmt[i + 1:end])
            i = end
        elif c == "\\":
            flush()
            if i + 1 >= n:
                raise ValueError("Invalid Format String")
            out.append(fmt[i + 1])
            i += 1
        elif c == "K":
            flush()
            out.append("Z")
        elif c == "%":
            flush()
        else:
            flush()
            out.append(c)
        i += 1
    flush()
    return "".join(out)


DEFAULT_DATE_FORMAT = "YYYY-MM-DDTHH:mm:ss.SSS[Z]"


def _date_format(args: list[Any], max_args: int) -> tuple[str, DateNames | None]:
    """FunctionUtils.determineFormatAndLocale: the dayjs format, and the names of the locale (last argument)."""
    fmt, names = DEFAULT_DATE_FORMAT, None
    if len(args) == max_args:
        last, second = args[-1], args[-2]
        if type(last) is str and type(second) is str:
            names = date_names(last)
            fmt = _timestamp_formatter(second) if second != "" else DEFAULT_DATE_FORMAT
    elif len(args) == max_args - 1 and type(args[-1]) is str:
        fmt = _timestamp_formatter(args[-1])
    return fmt, names


def _timestamp_formatter(fmt: str) -> str:
    if not fmt:
        return DEFAULT_DATE_FORMAT
    try:
        return dotnet_to_dayjs(fmt)
    except ValueError:
        return fmt


# ---------------------------------------------------------------- function plumbing

Impl = Callable[[Any, Any, bool], Any]


def eval_args(node: Any, st: Any, sub: bool, verify: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """FunctionUtils.evaluateChildren: evaluate every child in order, verifying each."""
    if verify is None:
        return [child.ev(st, sub) for child in node.args]
    out = []
    for child in node.args:
        v = child.ev(st, sub)
        if verify is not None:
            verify(v, child)
        out.append(v)
    return out


def v_number(v: Any, child: Any) -> None:
    if not is_num(v):
        raise EvalError(f"{child} is not a number.")


def v_integer(v: Any, child: Any) -> None:
    if not is_int(v):
        raise EvalError(f"{child} is not a integer.")


def v_not_null(v: Any, child: Any) -> None:
    if v is None or v is UNDEFINED:
        raise EvalError(f"{child} is null.")


def v_string_or_undefined(v: Any, child: Any) -> None:
    if type(v) is not str and v is not UNDEFINED:
        raise EvalError(f"{child} is neither a string nor a null object.")


def v_number_or_string_or_undefined(v: Any, child: Any) -> None:
    if type(v) is not str and v is not UNDEFINED and not is_num(v):
        raise EvalError(f"{child} is neither a number nor string")


def v_container(v: Any, child: Any) -> None:
    if v is UNDEFINED or type(v) in (bool, int, float):
        raise EvalError(f"{child} must be a string, list, map or object.")


def v_container_or_null(v: Any, child: Any) -> None:
    if type(v) in (bool, int, float):
        raise EvalError(f"{child} must be a string, list, map or object.")


def v_number_or_list(v: Any, child: Any) -> None:
    if is_num(v):
        return
    if type(v) is not list:
        raise EvalError(f"{child} is neither a list nor a number.")
    for e in v:
        if not is_num(e):
            raise EvalError(f"{js_string(e)} is not a number in {child}.")


def _str_or_empty(v: Any) -> str:
    return v if type(v) is str else ""


# ---------------------------------------------------------------- operators and logic

def f_add(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub, v_number_or_string_or_undefined)
    acc = args[0]
    for b in args[1:]:
        a = acc
        a_null, b_null = a is None or a is UNDEFINED, b is None or b is UNDEFINED
        if (a_null and is_num(b)) or (b_null and is_num(a)):
            raise EvalError("Operator '+' or add cannot be applied to operands of type 'number' and null object.")
        if not is_num(a) or not is_num(b):
            acc = ("" if a_null else to_string(a)) + ("" if b_null else to_string(b))
        else:
            acc = js_number(a + b)
    return acc


def _numeric(op: Callable[[Any, Any], Any], verify: Callable[[Any, Any], None] = v_number) -> Impl:
    def impl(node: Any, st: Any, sub: bool) -> Any:
        args = eval_args(node, st, sub, verify)
        acc = args[0]
        for b in args[1:]:
            acc = op(acc, b)
        return acc
    return impl


def _sub(a: Any, b: Any) -> Any:
    return js_number(a - b)


def _mul(a: Any, b: Any) -> Any:
    return js_number(a * b)


def _div(a: Any, b: Any) -> Any:
    result = float(a) / float(b)
    if is_int(a) and is_int(b):
        return js_number(math.floor(result)) if math.isfinite(result) else result
    return result


def f_div(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub, v_number)
    if any(b == 0 for b in args[1:]):
        raise EvalError(f"Cannot divide by 0 from {node}")
    acc = args[0]
    for b in args[1:]:
        acc = _div(acc, b)
    return acc


def _pow(a: Any, b: Any) -> Any:
    try:
        r = math.pow(a, b)
    except (OverflowError, ValueError):
        r = math.nan if a < 0 else math.inf
    return js_number(int(r)) if r.is_integer() and abs(r) <= 2**53 else r


def f_mod(node: Any, st: Any, sub: bool) -> Any:
    a, b = eval_args(node, st, sub, v_integer)
    if b == 0:
        raise EvalError("Cannot mod by 0.")
    return js_number(int(math.fmod(a, b))) if type(a) is int and type(b) is int else math.fmod(a, b)


def _comparison(func: Callable[[list[Any]], bool], verify: Callable[[Any, Any], None] | None = None) -> Impl:
    """ComparisonEvaluator: no null substitution; a failed or unverified argument makes the result false."""
    def impl(node: Any, st: Any, sub: bool) -> Any:
        try:
            args = eval_args(node, st, False, verify)
        except EvalError:
            return False
        return func(args)
    return impl


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[list[Any]], bool]:
    def func(args: list[Any]) -> bool:
        a, b = args
        if (is_num(a) and is_num(b)) or (type(a) is str and type(b) is str):
            return op(a, b)
        raise EvalError(f"{js_string(a)} and {js_string(b)} must be comparable.")
    return func


def f_not(node: Any, st: Any, sub: bool) -> Any:
    try:
        return not logic_true(node.args[0].ev(st, False))
    except EvalError:
        return True


def f_and(node: Any, st: Any, sub: bool) -> Any:
    for child in node.args:
        try:
            if not logic_true(child.ev(st, False)):
                return False
        except EvalError:
            return False
    return True


def f_or(node: Any, st: Any, sub: bool) -> Any:
    # adaptive-expressions returns the last operand's raw value when none is true (null || m → undefined)
    last: Any = False
    for child in node.args:
        try:
            last = child.ev(st, False)
        except EvalError:
            last = UNDEFINED
            continue
        if logic_true(last):
            return True
    return last


def f_if(node: Any, st: Any, sub: bool) -> Any:
    try:
        cond = logic_true(node.args[0].ev(st, False))
    except EvalError:
        cond = False
    return node.args[1 if cond else 2].ev(st, sub)


def f_coalesce(node: Any, st: Any, sub: bool) -> Any:
    for v in eval_args(node, st, sub):
        if v is not None and v is not UNDEFINED:
            return v
    return UNDEFINED


# Binders (Spec.bind): the same semantics as f_if, f_not, f_and and exists, children's `ev` taken at parse time.

def bind_if(node: Any) -> Callable[[Any, bool], Any]:
    cond, then, other = (a.ev for a in node.args)

    def f(st: Any, sub: bool) -> Any:
        try:
            c = cond(st, False)
        except EvalError:
            c = False
        if c is True or (c is not False and c is not None and c is not UNDEFINED):  # logic_true
            return then(st, sub)
        return other(st, sub)
    return f


def bind_not(node: Any) -> Callable[[Any, bool], Any]:
    (arg,) = (a.ev for a in node.args)

    def f(st: Any, sub: bool) -> Any:
        try:
            v = arg(st, False)
        except EvalError:
            return True
        return v is False or v is None or v is UNDEFINED  # not logic_true(v)
    return f


def bind_and(node: Any) -> Callable[[Any, bool], Any]:
    children = [a.ev for a in node.args]

    def f(st: Any, sub: bool) -> Any:
        for child in children:
            try:
                v = child(st, False)
            except EvalError:
                return False
            if v is False or v is None or v is UNDEFINED:  # not logic_true(v)
                return False
        return True
    return f


def bind_exists(node: Any) -> Callable[[Any, bool], Any]:
    (arg,) = (a.ev for a in node.args)

    def f(st: Any, sub: bool) -> Any:
        try:
            v = arg(st, False)
        except EvalError:  # _comparison: a failed argument makes it false, as does v_not_null
            return False
        return v is not None and v is not UNDEFINED
    return f


# ---------------------------------------------------------------- collections and strings

def _is_empty(v: Any) -> bool:
    if v is None or v is UNDEFINED:
        return True
    return len(v) == 0 if type(v) in (str, list, dict) else False


def utf16_len(s: str) -> int:
    """String.length: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(s) + sum(1 for c in s if ord(c) > 0xFFFF)


def utf16_slice(s: str, start: int, end: int) -> str:
    """String.prototype.substring over UTF-16 code units. Where the cut splits a surrogate pair JavaScript keeps a
    lone surrogate, which UTF-8 (and so Teams) cannot carry: we put U+FFFD there instead."""
    if utf16_len(s) == len(s):
        return s[start:end]
    return s.encode("utf-16-le", "surrogatepass")[2 * start:2 * end].decode("utf-16-le", "replace")


def f_count(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub, v_container)
    if v is None:
        raise EvalError("Cannot convert undefined or null to object")
    return utf16_len(v) if type(v) is str else len(v)


def f_concat(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    acc = args[0]
    for b in args[1:]:
        a = acc
        a_null, b_null = a is None or a is UNDEFINED, b is None or b is UNDEFINED
        if a_null and b_null:
            acc = UNDEFINED
        elif a_null and type(b) is list:
            acc = b
        elif b_null and type(a) is list:
            acc = a
        elif type(a) is list and type(b) is list:
            acc = a + b
        else:
            acc = common_stringify(a) + common_stringify(b)
    return acc


def f_join(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    items = args[0]
    if type(items) is not list:
        raise EvalError(f"{node.args[0]} evaluates to {js_string(items)} which is not a list.")
    parts = ["" if e is None or e is UNDEFINED else to_string(e) for e in items]

    def sep(v: Any) -> str:
        return "," if v is UNDEFINED else js_string(v)

    if len(args) == 2:
        return sep(args[1]).join(parts)
    if len(parts) < 3:
        return sep(args[2]).join(parts)
    return sep(args[1]).join(parts[:-1]) + sep(args[2]) + parts[-1]


def _string_transform(fn: Callable[[str], str], turkic: Callable[[str], str] | None = None) -> Impl:
    """toUpper/toLower/trim; the locale matters only where JavaScript's toLocaleUpperCase differs (dotted i)."""
    def impl(node: Any, st: Any, sub: bool) -> Any:
        args = eval_args(node, st, sub, v_string_or_undefined)
        text = _str_or_empty(args[0])
        if turkic is not None and len(args) == 2 and type(args[1]) is str and args[1][:2].lower() in ("tr", "az"):
            return turkic(text)
        return fn(text)
    return impl


def _turkic_upper(s: str) -> str:
    return s.replace("i", "\u0130").upper()


def _turkic_lower(s: str) -> str:
    return s.replace("I", "\u0131").replace("\u0130", "i").lower()


def f_substring(node: Any, st: Any, sub: bool) -> Any:
    s = node.args[0].ev(st, sub)
    if s is UNDEFINED:
        return ""
    if type(s) is not str:
        raise EvalError(f"{node.args[0]} is neither a string nor a null object.")
    start = node.args[1].ev(st, sub)
    if not is_int(start):
        raise EvalError(f"{node.args[1]} is not an integer.")
    start = int(start)
    size = utf16_len(s)  # JavaScript indexes strings by UTF-16 code unit
    if start < 0 or start > size:
        raise EvalError(f"{node.args[1]}={start} which is out of range for {s}")
    if len(node.args) == 2:
        length = size - start
    else:
        length = node.args[2].ev(st, sub)
        if not is_int(length):
            raise EvalError(f"{node.args[2]} is not an integer")
        length = int(length)
        if length < 0 or start + length > size:
            raise EvalError(f"{node.args[2]}={length} which is out of range for {s}")
    return utf16_slice(s, start, start + length)


def f_string(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    v = args[0]
    symbols = number_symbols(args[1]) if len(args) == 2 and type(args[1]) is str else EN_US_NUMBERS
    if type(v) is str:
        return v
    if is_num(v):
        text = num_str(v)
        precision = len(text.split(".")[1]) if "." in text else 0
        return d3_fixed(v, precision, symbols)
    return common_stringify(v)


def f_int(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub)
    if type(v) is str:
        r = parse_int(v, radix10=True)
        if r is None:
            raise EvalError(f"parameter {v} is not a valid number string.")
        return js_number(r)
    if is_num(v):
        r = parse_int(num_str(v), radix10=True)
        return UNDEFINED if r is None else js_number(r)
    return UNDEFINED


def f_float(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub)
    if type(v) is str:
        r = parse_float(v)
        if r is None or r != r:
            raise EvalError(f"parameter {v} is not a valid number string.")
        return r
    return v if is_num(v) else UNDEFINED


def _reject_constant(name: str) -> float:
    raise ValueError(name)


def f_json(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub)
    if type(v) is not str:
        raise EvalError(f"{node.args[0]} is not a string")
    try:
        return json.loads(v.strip(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise EvalError(f"invalid JSON: {exc}") from None


def f_length(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub, v_string_or_undefined)
    return utf16_len(_str_or_empty(v))


def f_contains(node: Any, st: Any, sub: bool) -> Any:
    try:
        a, b = eval_args(node, st, sub)
    except EvalError:
        return False
    if type(a) is str and type(b) is str:
        return b in a
    if type(a) is list:
        return any(common_equals(e, b) for e in a)
    if type(b) is str:
        return access_property(a, b) is not UNDEFINED
    return False


def _str_pair(fn: Callable[[str, str], bool]) -> Impl:
    def impl(node: Any, st: Any, sub: bool) -> Any:
        a, b = eval_args(node, st, sub, v_string_or_undefined)
        return fn(_str_or_empty(a), _str_or_empty(b))
    return impl


_JS_WHITESPACE = " \t\n\r\v\f\u00a0\ufeff\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009" \
                 "\u200a\u2028\u2029\u202f\u205f\u3000"


def f_replace(node: Any, st: Any, sub: bool) -> Any:
    s, old, new = eval_args(node, st, sub, v_string_or_undefined)
    old = _str_or_empty(old)
    if not old:
        raise EvalError(f"{js_string(old)} should be a string with length at least 1")
    return _str_or_empty(s).replace(old, _str_or_empty(new))


def f_first(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub)
    return v[0] if type(v) in (str, list) and v else UNDEFINED


def f_last(node: Any, st: Any, sub: bool) -> Any:
    (v,) = eval_args(node, st, sub)
    return v[-1] if type(v) in (str, list) and v else UNDEFINED


def _extreme(pick: Callable[..., Any], start: float) -> Impl:
    def impl(node: Any, st: Any, sub: bool) -> Any:
        result: Any = start
        for arg in eval_args(node, st, sub, v_number_or_list):
            for v in (arg if type(arg) is list else (arg,)):
                result = pick(result, v)
        return result
    return impl


def f_round(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub, v_number)
    if len(args) == 2 and not is_int(args[1]):
        raise EvalError(f"The second parameter {js_string(args[1])} must be an integer.")
    digits = int(args[1]) if len(args) == 2 else 0
    if digits < 0 or digits > 15:
        raise EvalError(f"The second parameter {digits} must be an integer between 0 and 15;")
    scale = math.pow(10, digits)
    r = js_round(args[0] * scale) / scale
    return js_number(int(r)) if r.is_integer() else r


def _slice(take: bool) -> Impl:
    def impl(node: Any, st: Any, sub: bool) -> Any:
        seq = node.args[0].ev(st, sub)
        if not (type(seq) is list or (take and type(seq) is str)):
            raise EvalError(f"{node.args[0]} is not array{' or string' if take else ''}.")
        n = node.args[1].ev(st, sub)
        if not is_int(n):
            raise EvalError(f"{node.args[1]} is not an integer.")
        n = max(int(n), 0)
        return seq[:n] if take else seq[n:]
    return impl


def f_raw(node: Any, st: Any, sub: bool) -> Any:
    """raw(x): x itself. Ours, not Microsoft's: ``${raw(x)}`` is a binding the template trusts as markdown, so
    cards.template does not escape it (see cards/markdown.py); anywhere else it changes nothing."""
    return node.args[0].ev(st, sub)


def f_create_array(node: Any, st: Any, sub: bool) -> Any:
    return eval_args(node, st, sub)


# ---------------------------------------------------------------- formatting

def f_format_number(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    number, precision = args[0], args[1]
    if not is_num(number):
        raise EvalError(f"formatNumber first argument {js_string(number)} must be a number")
    if not is_num(precision):
        raise EvalError(f"formatNumber second argument {js_string(precision)} must be a number")
    symbols = number_symbols(args[2]) if len(args) == 3 and type(args[2]) is str else EN_US_NUMBERS
    if not is_int(precision) or precision < 0 or not math.isfinite(number):
        raise EvalError(f"invalid format: ,.{js_string(precision)}f")
    precision = int(precision)
    scale = math.pow(10, precision)
    rounded = js_round(float(number) * scale) / scale
    return d3_fixed(rounded, precision, symbols)


def f_format_date_time(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    ms = parse_timestamp(args[0])
    return format_dayjs(ms, *_date_format(args, 3))


def f_add_days(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    if type(args[0]) is not str or not is_num(args[1]):
        raise EvalError(f"{node} should contain an ISO format timestamp and a time interval integer.")
    fmt, names = _date_format(args, 4)
    ms = parse_timestamp(args[0])
    day = (_EPOCH + timedelta(milliseconds=ms)).day
    shift = math.trunc(day + args[1]) - day  # Date.setDate(getDate() + n) truncates the new day number
    return format_dayjs(ms + shift * 86400000, fmt, names)


def f_utc_now(node: Any, st: Any, sub: bool) -> Any:
    args = eval_args(node, st, sub)
    return format_dayjs(st.now_ms(), *_date_format(args, 2))


# ---------------------------------------------------------------- the table

class Spec:
    """One function: its canonical name (adaptive-expressions' ExpressionType), arity and types, implementation.

    ``types`` checks arguments whose type is known at parse time (a literal, a typed function result), as
    adaptive-expressions' validators do: ``("all", T)`` every argument; ``("order", required, optional)``.

    ``bind``, for the hottest functions, turns a call node into its evaluation closure with the children's ``ev``
    taken once (same results and errors as ``impl``, fewer calls per evaluation); None: ``impl`` is called.
    """

    __slots__ = ("name", "min", "max", "types", "returns", "impl", "bind")

    def __init__(self, name: str, lo: int, hi: int, types: Any, returns: int, impl: Impl,
                 bind: Callable[[Any], Callable[[Any, bool], Any]] | None = None):
        self.name, self.min, self.max, self.types, self.returns, self.impl = name, lo, hi, types, returns, impl
        self.bind = bind


_MANY = 1 << 30
_ANY = ("all", OBJ)


def _spec(name: str, lo: int, hi: int, types: Any, returns: int, impl: Impl,
          bind: Callable[[Any], Callable[[Any, bool], Any]] | None = None) -> Spec:
    return Spec(name, lo, hi, types, returns, impl, bind)


FUNCTIONS: dict[str, Spec] = {}


def _register(names: tuple[str, ...], spec: Spec) -> None:
    for n in names:
        FUNCTIONS[n] = spec


_register(("+", "add"), _spec("+", 2, _MANY, ("all", STR | NUM), STR | NUM, f_add))
_register(("-", "sub"), _spec("-", 2, _MANY, ("all", NUM), NUM, _numeric(_sub)))
_register(("*", "mul"), _spec("*", 2, _MANY, ("all", NUM), NUM, _numeric(_mul)))
_register(("/", "div"), _spec("/", 2, _MANY, ("all", NUM), NUM, f_div))
_register(("^", "exp"), _spec("^", 2, _MANY, ("all", NUM), NUM, _numeric(_pow, v_number_or_list)))
_register(("%", "mod"), _spec("%", 2, 2, ("all", NUM), NUM, f_mod))
_register(("==", "equals"), _spec("==", 2, 2, _ANY, BOOL, _comparison(lambda a: common_equals(a[0], a[1]))))
_register(("!=",), _spec("!=", 2, 2, _ANY, BOOL, _comparison(lambda a: not common_equals(a[0], a[1]))))
_register(("<",), _spec("<", 2, 2, _ANY, BOOL, _comparison(_ordered(lambda a, b: a < b), v_not_null)))
_register(("<=",), _spec("<=", 2, 2, _ANY, BOOL, _comparison(_ordered(lambda a, b: a <= b), v_not_null)))
_register((">",), _spec(">", 2, 2, _ANY, BOOL, _comparison(_ordered(lambda a, b: a > b), v_not_null)))
_register((">=",), _spec(">=", 2, 2, _ANY, BOOL, _comparison(_ordered(lambda a, b: a >= b), v_not_null)))
_register(("!", "not"), _spec("!", 1, 1, _ANY, BOOL, f_not, bind_not))
_register(("&&", "and"), _spec("&&", 1, _MANY, _ANY, BOOL, f_and, bind_and))
_register(("||", "or"), _spec("||", 1, _MANY, _ANY, BOOL, f_or))
_register(("if",), _spec("if", 3, 3, _ANY, OBJ, f_if, bind_if))
_register(("??", "coalesce"), _spec("coalesce", 1, _MANY, _ANY, OBJ, f_coalesce))
_register(("exists",), _spec("exists", 1, 1, _ANY, BOOL,
                             _comparison(lambda a: a[0] is not None and a[0] is not UNDEFINED, v_not_null),
                             bind_exists))
_register(("empty",), _spec("empty", 1, 1, _ANY, BOOL, _comparison(lambda a: _is_empty(a[0]), v_container_or_null)))
_register(("count",), _spec("count", 1, 1, ("order", (STR | ARR,), ()), NUM, f_count))
_register(("&", "concat"), _spec("concat", 1, _MANY, _ANY, STR | ARR, f_concat))
_register(("join",), _spec("join", 2, 3, ("order", (ARR, STR), (STR,)), STR, f_join))
_register(("toUpper",), _spec("toUpper", 1, 2, ("all", STR), STR, _string_transform(str.upper, _turkic_upper)))
_register(("toLower",), _spec("toLower", 1, 2, ("all", STR), STR, _string_transform(str.lower, _turkic_lower)))
_register(("trim",), _spec("trim", 1, 1, ("all", STR), STR, _string_transform(lambda s: s.strip(_JS_WHITESPACE))))
_register(("substring",), _spec("substring", 2, 3, ("order", (STR, NUM), (NUM,)), STR, f_substring))
_register(("string",), _spec("string", 1, 2, ("order", (OBJ,), (STR,)), STR, f_string))
_register(("int",), _spec("int", 1, 1, _ANY, NUM, f_int))
_register(("float",), _spec("float", 1, 1, _ANY, NUM, f_float))
_register(("json",), _spec("json", 1, 1, ("order", (STR,), ()), OBJ, f_json))
_register(("length",), _spec("length", 1, 1, ("all", STR), NUM, f_length))
_register(("contains",), _spec("contains", 2, 2, _ANY, BOOL, f_contains))
_register(("startsWith",), _spec("startsWith", 2, 2, ("all", STR), BOOL, _str_pair(str.startswith)))
_register(("endsWith",), _spec("endsWith", 2, 2, ("all", STR), BOOL, _str_pair(str.endswith)))
_register(("replace",), _spec("replace", 3, 3, ("all", STR), STR, f_replace))
_register(("first",), _spec("first", 1, 1, _ANY, OBJ, f_first))
_register(("last",), _spec("last", 1, 1, _ANY, OBJ, f_last))
_register(("min",), _spec("min", 1, _MANY, _ANY, NUM, _extreme(min, math.inf)))
_register(("max",), _spec("max", 1, _MANY, _ANY, NUM, _extreme(max, -math.inf)))
_register(("round",), _spec("round", 1, 2, ("all", NUM), NUM, f_round))
_register(("take",), _spec("take", 2, 2, ("order", (ARR | STR, NUM), ()), ARR | STR, _slice(True)))
_register(("skip",), _spec("skip", 2, 2, ("order", (ARR, NUM), ()), ARR, _slice(False)))
_register(("raw",), _spec("raw", 1, 1, _ANY, OBJ, f_raw))
_register(("createArray",), _spec("createArray", 0, _MANY, _ANY, ARR, f_create_array))
_register(("formatNumber",), _spec("formatNumber", 2, 3, ("order", (NUM, NUM), (STR,)), STR, f_format_number))
_register(("formatDateTime",), _spec("formatDateTime", 1, 3, ("order", (STR,), (STR, STR)), STR, f_format_date_time))
_register(("addDays",), _spec("addDays", 2, 4, ("order", (STR, NUM), (STR, STR)), STR, f_add_days))
_register(("utcNow",), _spec("utcNow", 0, 2, ("order", (), (STR, STR)), STR, f_utc_now))
