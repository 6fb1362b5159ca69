"""The expression language on its own: tokens, precedence, functions, JavaScript value semantics.

Expected values are what Microsoft's engine gives (checked against it by test_differential.py); these tests pin
them without Node so a regression shows up even where the oracle is not installed.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cards import TemplateError, expand
from cards.expressions import ExpressionSyntaxError, parse, parse_interpolation, tokenize
from cards.functions import dotnet_to_dayjs, num_str, parse_timestamp


def ev(expr: str, data: object = None, **kw: object) -> object:
    """Evaluate one whole-value binding."""
    return expand({"v": "${" + expr + "}"}, data if data is not None else {}, **kw).get("v", "<undefined>")


def text(template: str, data: object = None) -> object:
    return expand({"v": template}, data if data is not None else {})["v"]


# ---------------------------------------------------------------- syntax

def test_tokens_follow_the_antlr_lexer() -> None:
    kinds = [(k, v) for k, v, _ in tokenize("a.b[0] >= -1.5 && !'x\\'y' ?? @at #h %p $r <> =>")]
    assert kinds == [("id", "a"), ("op", "."), ("id", "b"), ("op", "["), ("num", 0), ("op", "]"), ("op", ">="),
                     ("op", "-"), ("num", 1.5), ("op", "&&"), ("op", "!"), ("str", "x'y"), ("op", "??"),
                     ("id", "@at"), ("id", "#h"), ("id", "%p"), ("id", "$r"), ("op", "<>"), ("op", "=>"),
                     ("end", None)]


@pytest.mark.parametrize("expr,expected", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ^ 3 ^ 2", 512), ("-2 ^ 2", 4), ("10 - 4 - 3", 3),
    ("7 % 3", 1), ("-7 % 3", -1), ("7 / 2", 3), ("7.5 / 2", 3.75), ("5.0 / 2", 2), ("1 < 2 && 2 < 3", True),
    ("true || false && false", True), ("!true || true", True), ("1 == 1 == true", True),
    ("false ? 1 : 2", 2), ("null ?? 'd'", "d"), ("'a' & 1", "a1"), ("'a' + 1", "a1"), ("1 + 'a'", "1a"),
])
def test_precedence_and_arithmetic(expr: str, expected: object) -> None:
    assert ev(expr) == expected


@pytest.mark.parametrize("expr", ["1 +", "(1", "a b", "1.5e3", ".5", "1.", "'open", "x$y", "größe", "a\rb", "{x}",
                                  "f(x)(y)", "a.b(c)", "x => x", "1 = 2"])
def test_syntax_errors(expr: str) -> None:
    with pytest.raises(ExpressionSyntaxError):
        parse(expr)


def test_parse_is_cached() -> None:
    assert parse("a.b + 1") is parse("a.b + 1")


def test_interpolation_classification() -> None:
    assert parse_interpolation("plain") == "plain"
    assert parse_interpolation("${x}").typed
    assert not parse_interpolation("${1}").typed        # a constant alone still gives a string, as Microsoft does
    assert not parse_interpolation("a ${x}").typed
    assert parse_interpolation("\\${x}") == "${x}"
    assert parse_interpolation("${x") == "${x"
    with pytest.raises(ExpressionSyntaxError):
        parse_interpolation("use `code` with ${x}")
    with pytest.raises(ExpressionSyntaxError):
        parse_interpolation("${x}\\")


# ---------------------------------------------------------------- values and paths

def test_paths_are_case_insensitive_first_key_wins() -> None:
    assert ev("X.Y", {"x": {"y": 1}}) == 1
    assert ev("k", {"K": 1, "k": 2}) == 1


def test_missing_values_are_left_as_their_binding() -> None:
    assert ev("missing") == "${missing}"
    assert ev("a.b.c", {"a": {}}) == "${a.b.c}"
    assert ev("x[1].y", {"x": [{}]}) == "${x[1].y}"
    assert text("n ${a} ${b}", {"a": 1}) == "n 1 ${b}"
    assert ev("toUpper(y)") == "${Y}"          # Microsoft substitutes first, then applies the function


def test_interpolation_prints_like_javascript() -> None:
    data = {"f": 0.1, "i": 3, "t": True, "l": [1, "a", None, [2]], "o": {"a": 1}, "big": 1e21, "tiny": 1.5e-7}
    assert text("${f}|${i}|${t}|${l}|${o}|${big}|${tiny}", data) == "0.1|3|true|1,a,,2|[object Object]|1e+21|1.5e-7"


def test_null_inside_a_string_fails_like_microsoft() -> None:
    with pytest.raises(TemplateError, match="null"):
        text("Hello ${name}", {"name": None})
    assert text("Hello ${coalesce(name, 'there')}", {"name": None}) == "Hello there"


@pytest.mark.parametrize("x,expected", [(1.0, "1"), (-0.0, "0"), (123456789012345680000.0, "123456789012345680000"),
                                        (1e21, "1e+21"), (1e-7, "1e-7"), (0.000001, "0.000001"),
                                        (2**60, "1152921504606846976")])
def test_number_to_string(x: float, expected: str) -> None:
    assert num_str(x) == expected


# ---------------------------------------------------------------- functions

@pytest.mark.parametrize("expr,expected", [
    ("formatNumber(1234567.891, 2)", "1,234,567.89"), ("formatNumber(0.125, 2)", "0.13"),
    ("formatNumber(-1234.5, 2)", "\u22121,234.50"), ("formatNumber(-2.5, 0)", "\u22122"),
    ("formatNumber(2.5, 0)", "3"), ("formatNumber(1.005, 2)", "1.00"), ("formatNumber(-0.001, 2)", "0.00"),
    ("string(1234.5)", "1,234.5"), ("string(-1000000)", "\u22121,000,000"), ("string(true)", "true"),
    ("string(x)", '{"a":[1,"b"]}'),
    ("count(items)", 2), ("count('abc')", 3), ("join(createArray('a', 'b', 'c'), ', ', ' and ')", "a, b and c"),
    ("string(concat('a', 1, true, null))", "a1true"), ("concat(items, items)", "1,21,2"),
    ("substring('hello', 1, 3)", "ell"), ("toUpper('abc')", "ABC"),
    ("toLower('ABC')", "abc"), ("trim('  x ')", "x"), ("length('abc')", 3), ("replace('banana', 'an', '_')", "b__a"),
    ("int('12.7')", 12), ("int(-3.9)", -3), ("float('1.5')", 1.5), ("json('{\"a\": [1]}')", {"a": [1]}),
    ("if(exists(x), 'y', 'n')", "y"), ("empty('')", True), ("empty(0)", False), ("exists(nope)", False),
    ("contains(items, 2)", True), ("contains(x, 'A')", True), ("startsWith('abc', 'ab')", True),
    ("endsWith('abc', 'bc')", True), ("first(items)", 1), ("last('abc')", "c"), ("min(3, 1, 2)", 1),
    ("max(items, 7)", 7), ("round(2.45, 1)", 2.5), ("round(-2.5)", -2), ("add(1, 2)", 3), ("sub(5, 2)", 3),
    ("mul(2, 3)", 6), ("div(7, 2)", 3), ("mod(7, 3)", 1), ("not(0)", False), ("and(true, 1)", True),
    ("or(false, false)", False), ("equals(x, json('{\"a\": [1, \"b\"]}'))", True), ("coalesce(n, 0)", 0),
    ("take(items, 1)", [1]), ("skip(items, 1)", [2]), ("take('abc', 2)", "ab"),
])
def test_functions(expr: str, expected: object) -> None:
    assert ev(expr, {"items": [1, 2], "x": {"a": [1, "b"]}, "n": None}) == expected


@pytest.mark.parametrize("fmt,expected", [
    ("yyyy-MM-dd", "2023-10-06"), ("dd MMM yyyy", "06 Oct 2023"), ("MMMM d, yyyy", "October 6, 2023"),
    ("h:mm tt", "5:02 PM"), ("HH:mm:ss.fff", "17:02:06.123"), ("dddd", "Friday"),
    ("o", "2023-10-06T17:02:06.1230000+00:00"),
    ("'Week of' MMM d", "Week of Oct 6"), ("yy/M/d", "23/10/6"),
])
def test_format_date_time(fmt: str, expected: str) -> None:
    assert ev(f"formatDateTime('2023-10-06T17:02:06.123Z', \"{fmt}\")") == expected


def test_dotnet_formats_that_dayjs_cannot_do_pass_through() -> None:
    with pytest.raises(ValueError):
        dotnet_to_dayjs("HH:mm:ss.f")
    assert ev("formatDateTime('2023-10-06T17:02:06Z', 'HH.f')") == "17.f"   # handed to dayjs unconverted


def test_fo_dates_are_dates() -> None:
    assert parse_timestamp("/Date(1697470966000)/") == 1697470966000
    assert parse_timestamp("2023-10-16T15:42:46Z") == 1697470966000
    assert parse_timestamp("2023-10-16T17:42:46+02:00") == 1697470966000
    assert ev("formatDateTime(d, 'yyyy-MM-dd HH:mm')", {"d": "/Date(1697470966000)/"}) == "2023-10-16 15:42"
    assert ev("addDays(d, 1, 'yyyy-MM-dd')", {"d": "/Date(1697470966000)/"}) == "2023-10-17"
    assert ev("addDays('2024-02-28T12:00:00.000Z', 1)") == "2024-02-29T12:00:00.000Z"


def test_utc_now_uses_the_given_time() -> None:
    now = datetime(2026, 11, 26, 10, 15, tzinfo=timezone.utc)
    assert ev("utcNow()", now=now) == "2026-11-26T10:15:00.000Z"
    assert ev("utcNow('dd MMM yyyy')", now=now) == "26 Nov 2026"
    assert ev("addDays(utcNow(), 3, 'yyyy-MM-dd')", now=now) == "2026-11-29"


def test_runtime_errors() -> None:
    """A whole-value binding that fails raises; inside a string the failing part stays as Microsoft prints it."""
    with pytest.raises(TemplateError, match=r"out of range"):
        ev("substring('abc', 5)")
    assert text("a ${substring('abc', 5)} ${1/0} ${-x}", {"x": 1}) == "a ${substring('abc', 5)} ${(1 / 0)} -1"
    assert text("${formatNumber(s, 2)}!", {"s": "12"}) == "${formatNumber(s, 2)}!"


@pytest.mark.parametrize("expr", ["toUpper(1)", "if(true, 1)", "formatNumber('x', 2)", "-'a'", "nosuch(1)",
                                  "utcnow()", "x <> 1", "where(a, i, i)"])
def test_parse_time_errors(expr: str) -> None:
    with pytest.raises(TemplateError):
        ev(expr)


@pytest.mark.parametrize("locale,expected", [
    ("en-US", "1,234,567.89"), ("de-DE", "1.234.567,89"), ("fr-FR", "1\u202f234\u202f567,89"),
    ("sv-SE", "1\u00a0234\u00a0567,89"), ("en-IN", "12,34,567.89"), ("ja-JP", "1,234,567.89"),
    ("xx-XX", "1,234,567.89"), ("", "1,234,567.89"),
])
def test_format_number_takes_a_locale(locale: str, expected: str) -> None:
    assert ev(f"formatNumber(1234567.891, 2, '{locale}')") == expected
    assert ev(f"formatNumber(-1234567.891, 2, '{locale}')") == "\u2212" + expected


def test_format_date_time_takes_a_locale() -> None:
    d = "'2026-03-05T14:07:09Z'"
    assert ev(f"formatDateTime({d}, 'dddd d. MMMM yyyy HH:mm', 'de-DE')") == "Donnerstag 5. März 2026 14:07"
    assert ev(f"formatDateTime({d}, 'ddd d MMM yyyy', 'fr-FR')") == "jeu. 5 mars 2026"
    assert ev(f"formatDateTime({d}, 'dd MMM yyyy h:mm tt', 'en-GB')") == "05 Mar 2026 2:07 PM"
    assert ev(f"formatDateTime({d}, 'dd MMM yyyy', 'xx-XX')") == "05 Mar 2026"
    assert ev(f"addDays({d}, 1, 'dddd', 'de-DE')") == "Freitag"


def test_string_and_case_functions_take_a_locale() -> None:
    assert ev("string(1234.5, 'de-DE')") == "1.234,5"
    assert ev("toUpper('istanbul', 'tr-TR')") == "\u0130STANBUL"
    assert ev("toLower('DIYARBAKIR', 'tr-TR')") == "d\u0131yarbak\u0131r"
    assert ev("toUpper('straße', 'de-DE')") == "STRASSE"


def test_string_lengths_count_utf16_code_units_as_javascript_does() -> None:
    assert ev("length('a😀b')") == 4 and ev("count('a😀b')") == 4 and ev("length('日本語')") == 3
    assert ev("substring('a😀b', 1, 2)") == "😀"
    assert ev("substring('a😀b', 3)") == "b"
    assert ev("substring('a😀b', 0, 2)") == "a\ufffd"  # JavaScript: a lone surrogate, which UTF-8 cannot carry
    with pytest.raises(TemplateError, match="out of range"):
        ev("substring('a😀b', 0, 5)")
