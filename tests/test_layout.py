"""The adapters stay independent: bot/, dynamics/, cards/ import nothing of ours; sandbox/ imports none of ours."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"bot", "dynamics", "cards", "connector", "sandbox"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "package,allowed",
    [("bot", {"bot"}), ("dynamics", {"dynamics"}), ("cards", {"cards"}), ("sandbox", {"sandbox"})],
)
def test_package_imports_only_itself(package: str, allowed: set[str]) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = (imported_top_levels(path) & OURS) - allowed
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert offenders == []


def test_layout_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from connector.config import Settings\nimport cards.render\n")
    assert imported_top_levels(sample) & OURS == {"connector", "cards"}
