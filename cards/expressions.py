"""The Adaptive Expressions language: tokenizer, recursive-descent parser, AST and its evaluation.

Grammar and precedence follow adaptive-expressions 4.23.3 (``ExpressionAntlrParser.g4``), loosest first:
``c ? a : b``, ``??``, ``||``, ``&&``, ``< <= > >=``, ``&``, ``== != <>``, ``+ -``, ``* / %``, ``^`` (right),
prefix ``! - +``, then primaries: literals, identifiers, ``a.b``, ``a[i]``, ``f(x, y)``, ``[..]``, ``{k: v}``.

Evaluation never touches Python attributes: a name is looked up only as a key of a dict (case-insensitively,
as Microsoft does) or an index of a list/string, and functions come from ``cards.functions.FUNCTIONS`` only.
There is no eval/exec/compile anywhere. Each AST node carries ``ev(state, subst)``, a closure built once at
parse time; ``subst`` is adaptive-expressions' ``nullSubstitution`` (a missing path yields ``"${path}"``).

What this module must not know: templates, ``$data``/``$when``, JSON paths of a card.
"""

from __future__ import annotations

from functools import lru_cache, partial
from operator import attrgetter
from typing import Any, Callable

from .functions import (ARR, BOOL, FUNCTIONS, NUM, OBJ, STR, UNDEFINED, EvalError, access_index, access_property,
                        get_path, js_string, num_str, parse_int, step, to_json)


class ExpressionSyntaxError(ValueError):
    """The text is not a valid expression (or names an unknown function). Private to cards/."""


MAX_DEPTH = 64          # nesting of parentheses/calls/operators in one expression
MAX_EXPRESSION = 4096   # characters in one ${...}


# ---------------------------------------------------------------- tokens

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_ID_START = _LETTERS | frozenset("_#@$%")
_ID_PART = _LETTERS | _DIGITS | frozenset("_")
_SKIP = frozenset(" \t\ufeff\u00a0\n")
_OPS2 = frozenset(["==", "!=", "<>", "&&", "||", "<=", ">=", "=>", "??"])
_OPS1 = frozenset("+-!^*/%&<>().[]{},:?")


def tokenize(text: str) -> list[tuple[str, Any, int]]:
    """Tokens as (kind, value, position); kinds: num, str, id, op, end."""
    out: list[tuple[str, Any, int]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SKIP or (c == "\r" and i + 1 < n and text[i + 1] == "\n"):
            i += 1
            continue
        two = text[i:i + 2]
        if c in _ID_START and not (c == "%" and (i + 1 >= n or text[i + 1] not in _ID_PART)):
            j = i + 1
            if c == "@" and j < n and text[j] == "@":
                j += 1
            while j < n and text[j] in _ID_PART:
                j += 1
            out.append(("id", text[i:j], i))
            i = j
        elif c in _DIGITS:
            j = i + 1
            while j < n and text[j] in _DIGITS:
                j += 1
            if j + 1 < n and text[j] == "." and text[j + 1] in _DIGITS:
                j += 2
                while j < n and text[j] in _DIGITS:
                    j += 1
                out.append(("num", float(text[i:j]), i))
            else:
                out.append(("num", int(text[i:j]), i))
            i = j
        elif c in "'\"":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" and j + 1 < n and text[j + 1] in (c, "\\") else 1
            if j >= n:
                raise ExpressionSyntaxError(f"unterminated string at {i}")
            out.append(("str", _unescape(text[i + 1:j], c), i))
            i = j + 1
        elif two in _OPS2:
            out.append(("op", two, i))  # "<>" lexes, but Microsoft has no function for it
            i += 2
        elif c in _OPS1:
            out.append(("op", c, i))
            i += 1
        else:
            raise ExpressionSyntaxError(f"unexpected character {c!r} at {i}")
    out.append(("end", None, n))
    return out


_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\t": "\t", "\\\\": "\\"}


def _unescape(body: str, quote: str) -> str:
    """visitStringAtom: \\' (or \\") first, then \\r \\n \\t \\\\; any other backslash stays as written."""
    body = body.replace("\\" + quote, quote)
    if "\\" not in body:
        return body
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\":
            pair = body[i:i + 2]
            out.append(_ESCAPES.get(pair, pair))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- AST

class Node:
    """An expression node. ``kind``: const, path (accessor/element chain), elem, call, array, object."""

    __slots__ = ("kind", "value", "args", "spec", "ev", "returns")

    def __init__(self, kind: str, value: Any = None, args: list[Node] | None = None, spec: Any = None):
        self.kind, self.value, self.args, self.spec = kind, value, args or [], spec
        self.returns = OBJ
        self.ev: Callable[[Any, bool], Any] = _compile(self)

    def __str__(self) -> str:
        """Expression.toString() of adaptive-expressions (Microsoft leaves it in a card when evaluation fails)."""
        k = self.kind
        if k == "const":
            return _const_str(self.value)
        if k == "access":
            name, base = self.value, self.args
            return name if not base else f"{base[0]}.{name}"
        if k == "elem":
            return f"{self.args[0]}[{self.args[1]}]"
        if k == "object":
            text = "json('{}')"
            for key, child in zip(self.value, self.args):
                text = f"setProperty({text}, {_const_str(key)}, {child})"
            return text
        name = "createArray" if k == "array" else self.spec.name
        parts = [str(a) for a in self.args]
        if not name[0].isalpha() and len(parts) >= 2:
            return "(" + f" {name} ".join(parts) + ")"
        return f"{name}(" + ", ".join(parts) + ")"

    __repr__ = __str__


def _const_str(v: Any) -> str:
    if v is UNDEFINED:
        return "undefined"
    if v is None:
        return "null"
    if type(v) is str:
        text = v.replace("\\", "\\\\")
        out, prev = [], ""
        for ch in text:
            if ch == "'" and prev != "\\":
                out.append("\\")
            out.append(ch)
            prev = ch
        return "'" + "".join(out) + "'"
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) in (int, float):
        return num_str(v)
    return to_json(v)


def _returns(v: Any) -> int:
    t = type(v)
    return STR if t is str else BOOL if t is bool else NUM if t in (int, float) else ARR if t is list else OBJ


# ---------------------------------------------------------------- evaluation state

class State:
    """What an expression sees: adaptive-cards-templating's memory ($root, $data, $index, $host, version)."""

    __slots__ = ("root", "data", "index", "host", "version", "now", "keys", "kept")

    def __init__(self, root: Any, host: Any, version: dict[str, Any], now: Callable[[], int]):
        self.root, self.data, self.index, self.host, self.version, self.now = root, root, UNDEFINED, host, version, now
        # Per expansion: id of a dict -> its members by lower-cased key (see `_lower_keys`). `kept` holds every dict
        # mapped, so no id is reused by another object while this state lives.
        self.keys: dict[int, Any] = {}
        self.kept: list[Any] = []

    def now_ms(self) -> int:
        return self.now()

    def reserved(self, name: str) -> Any:
        """The TemplateObjectMemory's own keys, matched case-insensitively as accessProperty does."""
        low = name.lower()
        if low == "$data":
            return self.data
        if low == "$root":
            return self.root
        if low == "$index":
            return self.index
        if low == "$host":
            return self.host
        if low == "$_actemplateversion":
            return self.version
        return UNDEFINED


# The TemplateObjectMemory keys `reserved` knows, lower-cased, and the State slot each reads.
_RESERVED_SLOTS = {"$data": "data", "$root": "root", "$index": "index", "$host": "host",
                   "$_actemplateversion": "version"}
_NOT_MAPPED: Any = object()


def _lower_keys(st: State, d: dict[Any, Any]) -> Any:
    """`d`'s members by lower-cased key, the first key in order winning (as accessProperty's `find`), for the rest
    of this expansion.

    Safe to keep for the whole expansion: nothing an expression can reach is mutated while a template expands (data
    is read, values are copied into the card, functions build new values), and `st.kept` keeps `d` alive so its id
    cannot name another dict meanwhile. A dict with a key that is not a string is not mapped (`_NOT_MAPPED`): its
    lookups take `access_property`, which fails or succeeds on it exactly as before.
    """
    try:
        mapped: Any = {k.lower(): v for k, v in reversed(d.items())}
    except AttributeError:
        mapped = _NOT_MAPPED
    st.keys[id(d)] = mapped
    st.kept.append(d)
    return mapped


def _memory_get(st: State, parts: list[str]) -> Any:
    """TemplateObjectMemory.getValue for a path already split into parts (first part a $-name)."""
    value = st.reserved(parts[0])
    for part in parts[1:]:
        value = step(value, part)
    return value


def _memory_get_path(st: State, path: str) -> Any:
    full = path if path.startswith("$") else "$data." + path
    head, _, rest = full.partition(".")
    if "[" in head:
        head, bracket, tail = head.partition("[")
        rest = bracket + tail + ("." + rest if rest else "")
    scope = st.reserved(head)
    return get_path(scope, rest) if rest else scope


# ---------------------------------------------------------------- compile nodes to closures

def _compile(node: Node) -> Callable[[Any, bool], Any]:
    k = node.kind
    if k == "const":
        value = node.value
        return lambda st, sub: value
    if k == "access":
        return _compile_access(node)
    if k == "elem":
        return _compile_element(node)
    if k == "array":
        items = node.args
        return lambda st, sub: [a.ev(st, sub) for a in items]
    if k == "object":
        keys, values = node.value, node.args

        def build(st: Any, sub: bool) -> Any:
            out = {}
            for key, child in zip(keys, values):
                out[key] = child.ev(st, sub)
            return out
        return build
    spec = node.spec
    if spec.bind is not None and spec.min <= len(node.args) <= spec.max:  # make_call rejects the others next
        return spec.bind(node)
    return partial(node.spec.impl, node)  # impl(node, st, sub), without a Python frame of our own


def _compile_access(node: Node) -> Callable[[Any, bool], Any]:
    """Accessor: FunctionUtils.tryAccumulatePath, then memory lookup with null substitution."""
    chain: list[tuple[str, Any]] = []
    cur: Node | None = node
    while cur is not None and cur.kind in ("access", "elem"):
        if cur.kind == "access":
            chain.append(("prop", cur.value))
            cur = cur.args[0] if cur.args else None
        else:
            chain.append(("elem", cur.args[1]))
            cur = cur.args[0]
    base = cur
    if base is None and all(kind == "prop" for kind, _ in chain):
        names = [name for _, name in reversed(chain)]
        path = ".".join(names)
        parts = names if names[0].startswith("$") else ["$data"] + names
        if len(parts) == 1:
            first = parts[0]

            def lookup1(st: Any, sub: bool) -> Any:
                v = st.reserved(first)
                return ("${" + path + "}") if (v is UNDEFINED and sub) else v
            return lookup1
        return _compile_lookup(parts, path)

    def general(st: Any, sub: bool) -> Any:
        path = ""
        for kind, item in chain:
            if kind == "prop":
                path = item + "." + path
            else:
                idx = item.ev(st, sub)
                if parse_int(js_string(idx)) is not None and type(idx) not in (bool, dict) and idx is not None:
                    path = "[" + js_string(idx) + "]." + path
                elif type(idx) is str:
                    path = "['" + idx + "']." + path
                else:
                    raise EvalError(f"{item} doesn't return an int or string")
        path = path.rstrip(".").replace(".[", "[")
        if base is None:
            v = _memory_get_path(st, path)
        else:
            v = get_path(base.ev(st, sub), path)
        return ("${" + path + "}") if (v is UNDEFINED and sub) else v
    return general


def _compile_lookup(parts: list[str], path: str) -> Callable[[Any, bool], Any]:
    """`_memory_get` for a path of names known at parse time: the $-name's slot, each name's lower case and list
    index found once; a dict member found through `_lower_keys` rather than lower-casing its keys per lookup."""
    slot = _RESERVED_SLOTS.get(parts[0].lower())
    head: Callable[[Any], Any] = attrgetter(slot) if slot is not None else (lambda st: UNDEFINED)
    steps = [(part, part.lower(), parse_int(part)) for part in parts[1:]]
    from_data = slot == "data"  # most paths: a name of the current $data (its slot read without a call)

    def lookup(st: Any, sub: bool) -> Any:
        v = st.data if from_data else head(st)
        keys = st.keys
        for part, lower, index in steps:
            t = type(v)
            if t is dict:
                mapped = keys.get(id(v))
                if mapped is None:
                    mapped = _lower_keys(st, v)
                if mapped is not _NOT_MAPPED:
                    v = mapped.get(lower, UNDEFINED)
                    continue
            elif t is list and index is not None:
                v = v[index] if 0 <= index < len(v) else UNDEFINED
                continue
            v = access_property(v, part)
        return ("${" + path + "}") if (v is UNDEFINED and sub) else v
    return lookup


def _compile_element(node: Node) -> Callable[[Any, bool], Any]:
    """Element (``x[i]`` not followed by ``.name``): index into a list, or a key of an object."""
    inst_node, idx_node = node.args

    def element(st: Any, sub: bool) -> Any:
        inst = inst_node.ev(st, sub)
        idx = idx_node.ev(st, False)
        if type(idx) is int or (type(idx) is float and idx.is_integer()):
            return access_index(inst, int(idx))
        if type(idx) is str:
            return access_property(inst, idx) if inst else UNDEFINED
        raise EvalError(f"Could not coerce {idx_node} to an int or string.")
    return element


# ---------------------------------------------------------------- parser

# binary operators: token → (binding power, right-associative)
_BINARY = {
    "??": (3, False), "||": (4, False), "&&": (5, False),
    "<": (6, False), "<=": (6, False), ">": (6, False), ">=": (6, False),
    "&": (7, False), "==": (8, False), "!=": (8, False), "<>": (8, False), "+": (9, False), "-": (9, False),
    "*": (10, False), "/": (10, False), "%": (10, False), "^": (11, True),
}


class _Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        kind, value, pos = self.take()
        if kind != "op" or value != op:
            raise ExpressionSyntaxError(f"expected {op!r} at {pos}")

    def at(self, op: str) -> bool:
        kind, value, _ = self.toks[self.i]
        return kind == "op" and value == op

    def parse(self) -> Node:
        node = self.expression(0)
        kind, _, pos = self.peek()
        if kind != "end":
            raise ExpressionSyntaxError(f"unexpected token at {pos}")
        return node

    def expression(self, min_bp: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionSyntaxError("expression nested too deeply")
        left = self.unary()
        while True:
            kind, op, _ = self.peek()
            if kind != "op":
                break
            if op == "?" and min_bp <= 2:
                self.take()
                then = self.expression(0)
                self.expect(":")
                other = self.expression(3)
                left = make_call("if", [left, then, other])
                continue
            bp = _BINARY.get(op)
            if bp is None or bp[0] < min_bp:
                break
            self.take()
            right = self.expression(bp[0] if bp[1] else bp[0] + 1)
            left = make_call(op, [left, right])
        self.depth -= 1
        return left

    def unary(self) -> Node:
        kind, op, _ = self.peek()
        if kind == "op" and op in ("!", "-", "+"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionSyntaxError("expression nested too deeply")
            operand = self.unary_operand()
            self.depth -= 1
            if op == "!":
                return make_call("!", [operand])
            return make_call(op, [_const(0), operand])
        return self.postfix(self.primary())

    def unary_operand(self) -> Node:
        # adaptive-expressions parses a prefix operand at the highest precedence: only primaries and prefixes
        kind, op, _ = self.peek()
        if kind == "op" and op in ("!", "-", "+"):
            return self.unary()
        return self.postfix(self.primary())

    def primary(self) -> Node:
        kind, value, pos = self.take()
        if kind == "num" or kind == "str":
            return _const(value)
        if kind == "id":
            if value in ("true", "false", "null", "undefined"):
                return _const({"true": True, "false": False, "null": None, "undefined": UNDEFINED}[value])
            if self.at("("):
                self.take()
                return make_call(value, self.args(")"))
            return Node("access", value)
        if kind == "op" and value == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionSyntaxError("expression nested too deeply")
            inner = self.expression(0)
            self.expect(")")
            self.depth -= 1
            return inner
        if kind == "op" and value == "[":
            node = Node("array", None, self.args("]"))
            node.returns = ARR
            return node
        if kind == "op" and value == "{":
            return self.object()
        raise ExpressionSyntaxError(f"unexpected token at {pos}")

    def args(self, close: str) -> list[Node]:
        out: list[Node] = []
        if self.at(close):
            self.take()
            return out
        while True:
            kind, _, pos = self.peek()
            if kind == "id" and self.toks[self.i + 1][:2] == ("op", "=>"):
                raise ExpressionSyntaxError(f"lambda expressions are not supported (at {pos})")
            out.append(self.expression(0))
            if self.at(","):
                self.take()
                continue
            self.expect(close)
            return out

    def object(self) -> Node:
        keys: list[str] = []
        values: list[Node] = []
        if not self.at("}"):
            while True:
                kind, key, pos = self.take()
                if kind not in ("id", "str"):
                    raise ExpressionSyntaxError(f"expected a key at {pos}")
                self.expect(":")
                keys.append(key)
                values.append(self.expression(0))
                if self.at(","):
                    self.take()
                    continue
                break
        self.expect("}")
        return Node("object", keys, values)

    def postfix(self, node: Node) -> Node:
        while True:
            kind, op, pos = self.peek()
            if kind != "op":
                return node
            if op == ".":
                self.take()
                k2, name, p2 = self.take()
                if k2 != "id":
                    raise ExpressionSyntaxError(f"expected a name at {p2}")
                if self.at("("):
                    raise ExpressionSyntaxError(f"unknown function {node}.{name}")
                node = Node("access", name, [node])
            elif op == "[":
                self.take()
                index = self.expression(0)
                self.expect("]")
                node = Node("elem", None, [node, index])
            elif op == "(" or op == "!":
                raise ExpressionSyntaxError(f"unknown function {node}")
            else:
                return node


def _const(value: Any) -> Node:
    node = Node("const", value)
    node.returns = _returns(value)
    return node


def make_call(name: str, args: list[Node]) -> Node:
    """A call node, checked as adaptive-expressions' validators do (arity, statically known argument types)."""
    spec = FUNCTIONS.get(name)
    if spec is None:
        raise ExpressionSyntaxError(f"unknown function {name}")
    node = Node("call", None, args, spec)
    node.returns = spec.returns
    label = f"{spec.name}({', '.join(str(a) for a in args)})"
    if not spec.min <= len(args) <= spec.max:
        raise ExpressionSyntaxError(f"{label} has the wrong number of arguments")
    how = spec.types
    if how[0] == "all":
        expected = how[1]
        if not expected & OBJ:
            for a in args:
                if not a.returns & OBJ and not a.returns & expected:
                    raise ExpressionSyntaxError(f"{a} is not a valid argument type in {label}")
    else:
        for a, expected in zip(args, list(how[1]) + list(how[2])):
            if not expected & OBJ and not a.returns & OBJ and not a.returns & expected:
                raise ExpressionSyntaxError(f"{a} is not a valid argument type in {label}")
    return node


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse one expression (the text inside ``${...}``). Cached: templates repeat the same expressions.

    Raises:
        ExpressionSyntaxError: not an expression, an unknown function, wrong arguments, too long or too deep.
    """
    if len(text) > MAX_EXPRESSION:
        raise ExpressionSyntaxError("expression too long")
    if text.startswith("="):
        text = text[1:]
    if text == "":
        return _const("")
    return _Parser(text).parse()


# ---------------------------------------------------------------- string interpolation (a template string)

class Interpolation:
    """A template string that holds at least one ``${...}``.

    ``typed``: the string is exactly one binding, whose value keeps its JSON type (``node``).
    Otherwise ``parts`` (constants and nodes) are evaluated one by one and joined as strings.
    """

    __slots__ = ("typed", "node", "parts")

    def __init__(self, typed: bool, node: Node | None, parts: list[str | Node]):
        self.typed, self.node, self.parts = typed, node, parts


_JS_WS = " \t\n\r\v\f\u00a0\ufeff\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009" \
         "\u200a\u2028\u2029\u202f\u205f\u3000"


def _scan_string(s: str, i: int) -> int:
    """Index just past a quoted string starting at s[i], or -1."""
    quote, j, n = s[i], i + 1, len(s)
    while j < n:
        c = s[j]
        if c == "\\" and j + 1 < n and s[j + 1] in (quote, "\\"):
            j += 2
        elif c == quote:
            return j + 1
        else:
            j += 1
    return -1


def _scan_object(s: str, i: int, depth: int = 0) -> int:
    """Index just past an OBJECT_DEFINITION starting at s[i] == '{', or -1."""
    if depth > 32:
        return -1
    j, n = i + 1, len(s)
    # no whitespace before the key: the lexer's WHITESPACE is switched off inside a string interpolation
    if j < n and s[j] == "}":
        return j + 1
    # key
    if j < n and s[j] in "'\"":
        j = _scan_string(s, j)
        if j < 0:
            return -1
    else:
        k = j
        while k < n and (s[k] in _ID_PART or (k == j and s[k] in _ID_START)):
            k += 1
        if k == j:
            return -1
        j = k
    if j >= n or s[j] != ":":
        return -1
    j += 1
    consumed = 0
    while j < n:
        c = s[j]
        if c == "}":
            return j + 1 if consumed else -1
        if c in "'\"":
            j = _scan_string(s, j)
            if j < 0:
                return -1
        elif c == "{":
            j = _scan_object(s, j, depth + 1)
            if j < 0:
                return -1
        elif c in "\r\n`":
            return -1
        else:
            j += 1
        consumed += 1
    return -1


def _scan_template(s: str, i: int) -> int:
    """Index just past a TEMPLATE token ``${...}`` starting at s[i] == '$', or -1."""
    j, n = i + 2, len(s)
    start = j
    while j < n:
        c = s[j]
        if c == "}":
            return j + 1 if j > start else -1
        if c in "'\"":
            j = _scan_string(s, j)
            if j < 0:
                return -1
        elif c == "{":
            j = _scan_object(s, j)
            if j < 0:
                return -1
        elif c in "\r\n`":
            return -1
        else:
            j += 1
    return -1


def _trim_expression(text: str) -> str:
    """ExpressionParser.trimExpression: strip ``$``, then one pair of braces, trimming around each step."""
    result = text.strip(_JS_WS)
    if result.startswith("$"):
        result = result[1:]
    result = result.strip(_JS_WS)
    if result.startswith("{") and result.endswith("}"):
        result = result[1:-1]
    return result.strip(_JS_WS)


@lru_cache(maxsize=8192)
def parse_interpolation(s: str) -> str | Interpolation:
    """Template.parseInterpolatedString: a plain string stays a string; otherwise an Interpolation.

    Raises:
        ExpressionSyntaxError: an embedded expression is invalid, or the string holds an unescaped backtick
            (Microsoft's parser treats it as the end of the string and then usually fails; we always fail).
    """
    if "${" not in s:
        return s
    parts: list[str | Node] = []
    text: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "$" and i + 1 < n and s[i + 1] == "{":
            end = _scan_template(s, i)
            if end > 0:
                if text:
                    parts.append("".join(text))
                    text = []
                parts.append(parse(_trim_expression(s[i:end])))
                i = end
                continue
            text.append(c)
            i += 1
        elif c == "\\":
            # only \` and \$ are escapes; a final backslash escapes Microsoft's closing backtick (an error)
            if i + 1 >= n:
                raise ExpressionSyntaxError("a string with ${...} cannot end with a backslash")
            if s[i + 1] in "`$":
                text.append(s[i + 1])
                i += 2
            else:
                text.append(c)
                i += 1
        elif c == "`":
            raise ExpressionSyntaxError(f"unescaped backtick at {i} in a string with ${{...}}")
        else:
            text.append(c)
            i += 1
    if text:
        parts.append("".join(text))
    if len(parts) == 1 and isinstance(parts[0], Node) and parts[0].kind != "const":
        node = parts[0]
        if node.kind == "call" and node.spec.name == "concat":
            # Microsoft evaluates a top-level concat child by child, as it does an interpolated string
            return Interpolation(False, None, list(node.args))
        return Interpolation(True, node, [])
    if not any(isinstance(p, Node) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    return Interpolation(False, None, parts)
