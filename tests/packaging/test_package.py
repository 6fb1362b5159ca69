"""What the wheel carries and what the CLI says about itself (fast checks; test_image.py installs the real wheel)."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector import healthcheck
from connector.cli import main
from connector.config import ServerSettings
from connector.manifest import MANIFEST_DIR, SCHEMA_DIR, SCHEMA_FILES, TEMPLATE
from imagekit import REPO

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def packaged(path: Path) -> bool:
    """Whether pyproject's package-data globs put this file into the wheel."""
    rel = path.resolve().relative_to(REPO)
    package, inner = rel.parts[0], "/".join(rel.parts[1:])
    patterns = SETUPTOOLS["package-data"].get(package, [])
    return any(fnmatch.fnmatch(inner, p) and inner.count("/") == p.count("/") for p in patterns)


def test_everything_manifest_build_reads_is_package_data() -> None:
    needed = [TEMPLATE, MANIFEST_DIR / "color.png", MANIFEST_DIR / "outline.png", MANIFEST_DIR / "README.md",
              *(SCHEMA_DIR / name for name in SCHEMA_FILES.values())]
    assert all(p.is_file() for p in needed)
    assert [p.relative_to(REPO).as_posix() for p in needed if not packaged(p)] == []
    assert MANIFEST_DIR.resolve().is_relative_to((REPO / "connector").resolve()), "data outside the package"


def test_version_option_reports_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ml-connector, version {version('ml-connector')}"


@pytest.mark.parametrize("host,expected", [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("10.1.2.3", "10.1.2.3"),
                                           ("127.0.0.1", "127.0.0.1")])
def test_healthcheck_dials_the_listener(host: str, expected: str) -> None:
    assert healthcheck.target(ServerSettings(host=host, port=8443)) == (expected, 8443, False)


def test_healthcheck_reports_what_is_wrong(unused_tcp_port: int) -> None:
    with pytest.raises(RuntimeError, match=rf"http://127.0.0.1:{unused_tcp_port}/healthz: .*refused"):
        healthcheck.check(ServerSettings(host="0.0.0.0", port=unused_tcp_port), timeout=2)
