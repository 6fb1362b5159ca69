"""Adaptive Cards Template Language: expand a JSON template against data, JSON in and JSON out.

Follows Microsoft's adaptivecards-templating 2.3.1 (``Template.prepare`` / ``internalExpand``):
- every string holding ``${`` is parsed up front, so a syntax error anywhere fails the whole template;
- a string that is exactly one ``${expr}`` keeps the value's JSON type; other strings are joined piecewise, a
  piece that fails to evaluate is left as ``${expr}`` and a missing field as ``${path}``;
- ``$data`` (array: repeat, ``$index`` set; empty: drop; object: new scope), ``$when`` (anything but a true
  boolean drops the element), ``$root``, ``$host``, ``$_acTemplateVersion``; reserved keys never reach the output;
- in arrays, null items are dropped and array items are spliced in.
Where we differ on purpose (unknown functions, backticks, lambdas, limits, F&O dates, locales, ``raw``) see
tests/cards/test_differential.py.

Markdown escaping (``escape=``): Teams renders markdown in a TextBlock's ``text`` and a FactSet fact's ``title`` and
``value``. With ``escape`` given, every value a binding puts into one of those properties goes through it (the
template's own literal text never does), except a binding that is exactly ``${raw(expr)}`` (or a ``raw(...)``
argument of a top-level ``concat``). Microsoft's engine has no such step; ``cards.render`` always escapes.

Three steps: ``_prepare`` parses the template (once per template text, cached); ``_compile`` turns the prepared
template into closures that build the card (static parts expanded once and copied, roles and ``$when``/``$data``
decided up front); ``_expand``, the plain walk over the prepared template, is the reference the compiled form
follows and still expands the static parts and reports budget overflows inside them.

This module knows nothing about Teams, mentions or card size: ``cards.render`` does that around ``expand``.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

from .errors import TemplateError
from .expressions import ExpressionSyntaxError, Interpolation, Node, State, parse_interpolation
from .functions import UNDEFINED, EvalError, to_string

__all__ = ["expand"]

MAX_NESTING = 64            # JSON depth of a template
MAX_TEMPLATE_NODES = 50_000  # values in a template
MAX_OUTPUT_NODES = 200_000   # objects and arrays produced by one expansion (repeats multiply)

_VERSION = {"major": 2, "minor": 3, "patch": 1, "suffix": ""}  # the templating release we follow
_RESERVED = frozenset(["$data", "$when", "$root", "$index", "$host", "$_acTemplateVersion"])
_SIMPLE_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")


class _Fail(Exception):
    """A failure inside the walk; JSON path segments are added while it unwinds (free when nothing fails)."""

    def __init__(self, reason: str, expression: str | None = None):
        super().__init__(reason)
        self.reason, self.expression = reason, expression
        self.segments: list[str] = []


class _Obj:
    """A prepared template object: its ordinary members plus its $data and $when, and the key of each member
    whose bound values are markdown (``markdown``) or whose objects are FactSet facts (``facts``)."""

    __slots__ = ("items", "has_data", "data", "has_when", "when", "markdown", "facts")

    def __init__(self, items: list[tuple[str, Any]], has_data: bool, data: Any, has_when: bool, when: Any):
        self.items, self.has_data, self.data, self.has_when, self.when = items, has_data, data, has_when, when
        kind = next((v for k, v in items if k == "type"), None)
        # A TextBlock's text is markdown; so is a bound text whose element type is itself bound (unknown here).
        self.markdown = frozenset(["text"]) if kind == "TextBlock" or type(kind) is Interpolation else frozenset()
        self.facts = kind == "FactSet"


_FACT_KEYS = frozenset(["title", "value"])  # markdown in a FactSet's facts (cards-format.md)


def _segment(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if _SIMPLE_KEY.match(key) else f"[{json.dumps(key, ensure_ascii=False)}]"


# ---------------------------------------------------------------- prepare (Template.prepare)

def _prepare(node: Any, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Fail(f"template has more than {MAX_TEMPLATE_NODES} values")
    t = type(node)
    if t is str:
        try:
            return parse_interpolation(node)
        except ExpressionSyntaxError as exc:
            raise _Fail(str(exc), node) from None
    if t is not list and t is not dict:
        return node
    if depth >= MAX_NESTING:
        raise _Fail(f"template nested deeper than {MAX_NESTING}")
    if t is list:
        out = []
        for i, item in enumerate(node):
            try:
                out.append(_prepare(item, depth + 1, budget))
            except _Fail as f:
                f.segments.append(_segment(i))
                raise
        return out
    items = []
    for key, value in node.items():
        try:
            prepared = _prepare(value, depth + 1, budget)
        except _Fail as f:
            f.segments.append(_segment(key))
            raise
        if key not in _RESERVED:
            items.append((key, prepared))
    data = node.get("$data", UNDEFINED)
    if type(data) is str:
        data = parse_interpolation(data)
    return _Obj(items, "$data" in node, data, "$when" in node, _prepare_when(node))


def _prepare_when(node: dict[str, Any]) -> Any:
    when = node.get("$when", UNDEFINED)
    return parse_interpolation(when) if type(when) is str else when


# ---------------------------------------------------------------- expand (Template.internalExpand)

class _Run:
    __slots__ = ("st", "budget", "escape")

    def __init__(self, st: State, escape: Callable[[str], str] | None = None):
        self.st, self.budget, self.escape = st, MAX_OUTPUT_NODES, escape


# What a member holds, for markdown escaping: nothing special, markdown text, or FactSet facts.
_PLAIN, _MARKDOWN, _FACTS = 0, 1, 2


def _expand(node: Any, run: _Run, role: int = _PLAIN) -> Any:
    t = type(node)
    if t is str:
        return node
    if t is Interpolation:
        return _binding(node, run.st, escape=run.escape if role == _MARKDOWN else None)
    if t is _Obj:
        return _expand_object(node, run, fact=role == _FACTS)
    if t is list:
        run.budget -= 1
        if run.budget < 0:
            raise _Fail(f"expansion produced more than {MAX_OUTPUT_NODES} objects and arrays")
        out: list[Any] = []
        for i, item in enumerate(node):
            try:
                v = _expand(item, run, _FACTS if role == _FACTS else _PLAIN)
            except _Fail as f:
                f.segments.append(_segment(i))
                raise
            if v is None:
                continue
            if type(v) is list:
                out.extend(v)
            else:
                out.append(None if v is UNDEFINED else v)
        return out
    return node


def _role(node: _Obj, key: str, fact: bool) -> int:
    if key in node.markdown or (fact and key in _FACT_KEYS):
        return _MARKDOWN
    return _FACTS if node.facts and key == "facts" else _PLAIN


def _expand_object(node: _Obj, run: _Run, fact: bool = False) -> Any:
    st = run.st
    saved_data, saved_index = st.data, st.index
    contexts: list[Any]
    repeat = False
    if node.has_data:
        dc = node.data
        if type(dc) is Interpolation:
            dc = _binding(dc, st, copy=False)
        if type(dc) is list:
            contexts, repeat = dc, True
        else:
            contexts = [dc]
    else:
        contexts = [UNDEFINED]
    results = []
    try:
        for i, ctx in enumerate(contexts):
            if repeat:
                st.index = i
            if ctx is not UNDEFINED:
                st.data = ctx
            if node.has_when and not _when(node.when, st):
                continue
            run.budget -= 1
            if run.budget < 0:
                raise _Fail(f"expansion produced more than {MAX_OUTPUT_NODES} objects and arrays")
            out = {}
            for key, value in node.items:
                try:
                    v = _expand(value, run, _role(node, key, fact) if run.escape is not None else _PLAIN)
                except _Fail as f:
                    f.segments.append(_segment(key))
                    raise
                if v is not UNDEFINED:
                    out[key] = v
            results.append(out)
    finally:
        st.data, st.index = saved_data, saved_index
    if not results:
        return None
    return results[0] if len(results) == 1 else results


def _when(when: Any, st: State) -> bool:
    """$when: a binding must yield exactly true; a non-binding value drops the element when it is truthy."""
    if type(when) is Interpolation:
        if not when.typed:
            return False
        try:
            return when.node.ev(st, False) is True  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - Microsoft treats any failure of $when as false
            return False
    return not _js_truthy(when)


def _js_truthy(v: Any) -> bool:
    if v is None or v is UNDEFINED or v is False:
        return False
    if type(v) in (int, float):
        return v == v and v != 0
    if type(v) is str:
        return v != ""
    return True


def _is_raw(node: Node) -> bool:
    return node.kind == "call" and node.spec.name == "raw"


def _binding(interp: Interpolation, st: State, copy: bool = True,
             escape: Callable[[str], str] | None = None) -> Any:
    if interp.typed:
        node: Node = interp.node  # type: ignore[assignment]
        try:
            v = node.ev(st, True)
        except (EvalError, ArithmeticError, ValueError, TypeError, IndexError, KeyError) as exc:
            raise _Fail(str(exc), str(node)) from None
        if type(v) is float and not math.isfinite(v):
            return None  # JSON has no Infinity/NaN; JSON.stringify writes null
        if copy and type(v) in (dict, list):
            return _copy(v)
        if escape is not None and type(v) is str and not _is_raw(node):
            return escape(v)
        return v
    pieces = []
    for part in interp.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        try:
            v = part.ev(st, True)
        except (EvalError, ArithmeticError, ValueError, TypeError, IndexError, KeyError):
            v = "${" + str(part) + "}"
            pieces.append(v)  # left as written, like Microsoft's engine (never escaped: it is the template's text)
            continue
        mark = escape if escape is not None and not _is_raw(part) else None
        if type(v) is str:
            pieces.append(mark(v) if mark else v)
            continue
        try:
            text = to_string(v)
            pieces.append(mark(text) if mark else text)
        except EvalError as exc:
            reason = str(exc) if v is not None and v is not UNDEFINED else (
                f"{part} is {'null' if v is None else 'undefined'}: Microsoft's engine fails on that inside a "
                f"string (use coalesce)")
            raise _Fail(reason, str(part)) from None
    return "".join(pieces)


def _copy(v: Any) -> Any:
    """A fresh copy of a value taken from the data, so the card never aliases (or later mutates) the data."""
    t = type(v)
    if t is dict:
        return {k: _copy(x) for k, x in v.items() if x is not UNDEFINED}
    if t is list:
        return [None if x is UNDEFINED else _copy(x) for x in v]
    if t is float and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------- compile (a prepared template into closures)
#
# `_expand` above walks the prepared template and decides, at every value of every render, what kind of node it
# is, which markdown role it has and whether it is static. Those answers never change for a template, so
# `_compile` answers them once: each node becomes a builder `f(run) -> value`, static subtrees are expanded once
# and only copied per render (fresh objects: callers, attach_mentions included, mutate cards), an object's static
# members sit in a base dict whose copy keeps the key order, `$when` and `$data` are classified up front and each
# binding knows whether it is markdown and `raw`. `_expand` stays the reference: it expands the static subtrees at
# compile time, and reports the exact path when a static subtree overflows the output budget.

_Builder = Callable[[_Run], Any]
_DROP: Any = object()  # placeholder in an object's base dict for a member filled per render


def _compile(node: Any, role: int) -> _Builder | None:
    """A builder for `node`, or None when `node` is static (no binding, `$data` or `$when` anywhere in it)."""
    t = type(node)
    if t is Interpolation:
        return _compile_binding(node, role == _MARKDOWN)
    if t is _Obj:
        return _compile_object(node, role == _FACTS)
    if t is list:
        return _compile_list(node, role)
    return None


def _static_builder(node: Any, role: int) -> _Builder:
    """A static subtree: expanded once here, copied per render, its containers counted against the budget."""
    run = _Run(State(None, UNDEFINED, _VERSION, lambda: 0))
    value = _expand(node, run, role)
    count = MAX_OUTPUT_NODES - run.budget
    copy = _copier(value)

    def static(run: _Run) -> Any:
        run.budget -= count
        if run.budget < 0:
            run.budget += count
            _expand(node, run, role)  # raises where the walk runs out, with the same path as ever
        return copy()
    return static


def _copier(value: Any) -> Callable[[], Any]:
    """A function returning a fresh copy of a JSON value made at compile time (only its containers are copied)."""
    t = type(value)
    if t is dict:
        nested = [(k, _copier(v)) for k, v in value.items() if type(v) in (dict, list)]
        if not nested:
            return value.copy
        base = value

        def copy_dict() -> dict[str, Any]:
            out = base.copy()
            for k, c in nested:
                out[k] = c()
            return out
        return copy_dict
    if t is list:
        if not any(type(v) in (dict, list) for v in value):
            return value.copy
        items = [_copier(v) for v in value]
        return lambda: [c() for c in items]
    return _constant(value)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _compile_list(node: list[Any], role: int) -> _Builder | None:
    item_role = _FACTS if role == _FACTS else _PLAIN
    compiled = [_compile(item, item_role) for item in node]
    if all(c is None for c in compiled):
        return None
    items = [(c if c is not None else _static_builder(item, item_role), _segment(i))
             for i, (item, c) in enumerate(zip(node, compiled))]

    def build_list(run: _Run) -> Any:
        run.budget -= 1
        if run.budget < 0:
            raise _Fail(f"expansion produced more than {MAX_OUTPUT_NODES} objects and arrays")
        out: list[Any] = []
        for build, segment in items:
            try:
                v = build(run)
            except _Fail as f:
                f.segments.append(segment)
                raise
            if v is None:
                continue
            if type(v) is list:
                out.extend(v)
            else:
                out.append(None if v is UNDEFINED else v)
        return out
    return build_list


def _compile_object(node: _Obj, fact: bool) -> _Builder | None:
    base: dict[str, Any] = {}
    members: list[tuple[str, Any, int, _Builder | None]] = []
    static = not node.has_data and not node.has_when
    for key, value in node.items:
        role = _role(node, key, fact)
        build = _compile(value, role)
        if build is None and type(value) not in (_Obj, list):
            base[key] = value  # a scalar (or a string without ${...}): as it is, in its place
            continue
        base[key] = _DROP
        members.append((key, value, role, build))
        static = static and build is None
    if static:
        return None  # the caller copies it whole
    fills = [(key, build if build is not None else _static_builder(value, role), _segment(key))
             for key, value, role, build in members]

    def one(run: _Run) -> dict[str, Any]:
        """One output object (the context is already set)."""
        run.budget -= 1
        if run.budget < 0:
            raise _Fail(f"expansion produced more than {MAX_OUTPUT_NODES} objects and arrays")
        out = base.copy()
        for key, build, segment in fills:
            try:
                v = build(run)
            except _Fail as f:
                f.segments.append(segment)
                raise
            if v is UNDEFINED:
                del out[key]
            else:
                out[key] = v
        return out

    if not node.has_data and not node.has_when:
        return one
    when = _compile_when(node.when) if node.has_when else None
    if not node.has_data:
        assert when is not None

        def when_only(run: _Run) -> Any:
            return one(run) if when(run.st) else None
        return when_only

    data = node.data

    def with_data(run: _Run) -> Any:
        st = run.st
        dc = _binding(data, st, copy=False) if type(data) is Interpolation else data
        saved_data, saved_index = st.data, st.index
        repeat = type(dc) is list
        contexts = dc if repeat else [dc]
        results = []
        try:
            for i, ctx in enumerate(contexts):
                if repeat:
                    st.index = i
                if ctx is not UNDEFINED:
                    st.data = ctx
                if when is not None and not when(st):
                    continue
                results.append(one(run))
        finally:
            st.data, st.index = saved_data, saved_index
        if not results:
            return None
        return results[0] if len(results) == 1 else results
    return with_data


def _compile_when(when: Any) -> Callable[[State], bool]:
    """`_when`, decided up front where it can be: a non-binding or an interpolated string never changes."""
    if type(when) is Interpolation and when.typed:
        ev = when.node.ev  # type: ignore[union-attr]

        def binding_when(st: State) -> bool:
            try:
                return ev(st, False) is True
            except Exception:  # noqa: BLE001 - Microsoft treats any failure of $when as false
                return False
        return binding_when
    result = _when(when, None)  # type: ignore[arg-type]  # no binding to evaluate: the state is not read
    return lambda st: result


def _compile_binding(interp: Interpolation, markdown: bool) -> _Builder:
    """`_binding` for one binding, with its markdown role and `raw` known."""
    if interp.typed:
        node: Node = interp.node  # type: ignore[assignment]
        ev = node.ev
        escaped = markdown and not _is_raw(node)

        def typed(run: _Run) -> Any:
            try:
                v = ev(run.st, True)
            except (EvalError, ArithmeticError, ValueError, TypeError, IndexError, KeyError) as exc:
                raise _Fail(str(exc), str(node)) from None
            t = type(v)
            if t is str:
                escape = run.escape
                return escape(v) if escaped and escape is not None else v
            if t is float and not math.isfinite(v):
                return None  # JSON has no Infinity/NaN; JSON.stringify writes null
            if t is dict or t is list:
                return _copy(v)
            return v
        return typed

    # (text, None, None, False) for the template's own text, ("", node, node.ev, escaped) for a binding
    parts: list[tuple[str, Node | None, Callable[[Any, bool], Any] | None, bool]] = [
        (part, None, None, False) if isinstance(part, str) else ("", part, part.ev, markdown and not _is_raw(part))
        for part in interp.parts]

    def interpolated(run: _Run) -> str:
        st, escape = run.st, run.escape
        pieces: list[str] = []
        for text, node, ev, escaped in parts:
            if ev is None:
                pieces.append(text)
                continue
            try:
                v = ev(st, True)
            except (EvalError, ArithmeticError, ValueError, TypeError, IndexError, KeyError):
                pieces.append("${" + str(node) + "}")  # left as written (never escaped: the template's text)
                continue
            if type(v) is not str:
                try:
                    v = to_string(v)
                except EvalError as exc:
                    reason = str(exc) if v is not None and v is not UNDEFINED else (
                        f"{node} is {'null' if v is None else 'undefined'}: Microsoft's engine fails on that inside "
                        f"a string (use coalesce)")
                    raise _Fail(reason, str(node)) from None
            pieces.append(escape(v) if escaped and escape is not None else v)
        return "".join(pieces)
    return interpolated


def _compile_root(prepared: Any) -> _Builder:
    build = _compile(prepared, _PLAIN)
    return build if build is not None else _static_builder(prepared, _PLAIN)


# ---------------------------------------------------------------- public

@lru_cache(maxsize=64)
def _prepare_text(text: str) -> _Builder:
    """A template's JSON text, prepared and compiled once (render passes the same catalog text every time)."""
    return _compile_root(_prepare(json.loads(text), 0, [MAX_TEMPLATE_NODES]))


def expand(template: Any, data: Any, *, host: Any = None, name: str = "<template>",
           now: datetime | None = None, escape: Callable[[str], str] | None = None) -> Any:
    """Expand an Adaptive Card template against data, as Microsoft's templating engine does.

    Args:
        template: the parsed template JSON (dict, list, str...), or its JSON text. Never mutated.
        data: the data object (``$root``).
        host: the ``$host`` object; None leaves ``$host`` undefined.
        name: the template's name, used in error messages.
        now: the time ``utcNow()`` returns (timezone-aware, or naive UTC); default: the clock.
        escape: applied to every string a binding puts into markdown (a TextBlock's ``text``, a fact's ``title``
            and ``value``) unless the binding is ``${raw(expr)}``; None (Microsoft's behaviour) escapes nothing.

    Returns:
        New JSON: a dict for a card, possibly None or a list when the root has ``$when``/``$data``.

    Raises:
        TemplateError: a syntax error or unknown function anywhere in the template, a failing whole-value
            binding or ``$data``, a null inside an interpolated string, a template too deep or too large.
    """
    try:
        if isinstance(template, str):
            try:
                prepared = _prepare_text(template)
            except json.JSONDecodeError as exc:
                raise TemplateError(f"template is not JSON: {exc}", template=name) from None
        else:
            prepared = _compile_root(_prepare(template, 0, [MAX_TEMPLATE_NODES]))
        st = State(data, UNDEFINED if host is None else host, _VERSION, _clock(now))
        return prepared(_Run(st, escape))
    except _Fail as f:
        path = "$" + "".join(reversed(f.segments))
        raise TemplateError(f.reason, template=name, path=path, expression=f.expression) from None
    except RecursionError:
        raise TemplateError("template or data nested too deeply", template=name) from None


def _clock(now: datetime | None) -> Any:
    if now is None:
        return lambda: int(time.time() * 1000)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    fixed = int(now.timestamp() * 1000)
    return lambda: fixed
