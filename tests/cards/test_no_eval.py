"""Safety: expressions are data, never Python. Nothing a template says can run code or reach an attribute.

Each hostile expression must either fail cleanly (TemplateError) or come back as inert text; and the engine's
source must not contain eval/exec/compile/getattr/__import__ at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cards import TemplateError, expand

CARDS = Path(__file__).resolve().parents[2] / "cards"
ENGINE = [CARDS / name for name in ("errors.py", "expressions.py", "functions.py", "template.py")]

HOSTILE = [
    "__import__('os').system('touch /tmp/pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "a.__class__",
    "a.__class__.__mro__",
    "data['__class__']",
    "x['__dict__']",
    "lambda: 1",
    "(lambda x: x)(1)",
    "x => x",
    "open('/etc/passwd').read()",
    "eval('1+1')",
    "exec('import os')",
    "globals()",
    "__builtins__",
    "__builtins__.open",
    "getattr(a, 'upper')",
    "a.upper()",
    "'abc'.upper()",
    "[c for c in 'ab']",
    "f'{a}'",
    "a if True else b",
    "import os",
    "a; b",
    "a := 1",
    "toUpper.__globals__",
    "string.__code__",
    "$root.__class__.__init__.__globals__",
    "self",
    "__import__",
    "os.system",
    "1 if 1 else 2",
    "a.b.c.d.__reduce__()",
    "'%s' % a",
    "{'__class__': 1}.__class__",
    "json('{\"__class__\": 1}').__class__",
]


@pytest.mark.parametrize("expr", HOSTILE)
def test_hostile_expression_is_inert(expr: str, tmp_path: Path) -> None:
    data = {"a": "text", "x": {"k": 1}, "data": {"k": 1}}
    try:
        out = expand({"whole": "${" + expr + "}", "inside": "v=${" + expr + "}"}, data)
    except TemplateError:
        return
    for value in out.values():
        # a value may only be JSON data built from the data and literals: never a Python object
        assert value is None or isinstance(value, (str, int, float, bool, list, dict)), repr(value)
        assert "<" not in repr(value) or "<at>" in repr(value), repr(value)
    assert not Path("/tmp/pwned").exists()


def test_dunder_keys_are_only_dict_keys() -> None:
    """A key named like a Python attribute is looked up in the data, nowhere else."""
    data = {"__class__": "plain", "obj": {"__dict__": 7}}
    assert expand({"a": "${__class__}", "b": "${obj['__dict__']}", "c": "${obj.__init__}"}, data) == \
        {"a": "plain", "b": 7, "c": "${obj.__init__}"}


def test_functions_come_only_from_the_table() -> None:
    for name in ("print", "open", "eval", "exec", "getattr", "setattr", "__import__", "globals", "vars", "type"):
        with pytest.raises(TemplateError):
            expand({"v": "${" + name + "(1)}"}, {})


def test_engine_source_has_no_dynamic_code_or_attribute_access() -> None:
    banned = {"eval", "exec", "compile", "getattr", "setattr", "__import__", "globals", "locals", "vars"}
    for path in ENGINE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in banned:
                pytest.fail(f"{path.name}:{node.lineno} uses {node.id}")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = {a.name for a in node.names} | {getattr(node, "module", None) or ""}
                forbidden = {"pickle", "marshal", "importlib", "subprocess", "os"}
                assert not names & forbidden, f"{path.name} imports {names}"
