"""The lock files: every dependency of pyproject.toml pinned (with hashes), the runtime lock free of test tools,
no path of this machine baked in, and the lock actually used by ./run and the image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = REPO / "requirements.lock"
TEST = REPO / "requirements-test.lock"
ENV = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux", "os_name": "posix",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython"}


def pins(path: Path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) for each requirement line that applies on Linux/CPython 3.11."""
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, hashes = line.split("--hash=")[0], re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
        req = Requirement(spec.strip())
        if req.marker is not None and not Marker(str(req.marker)).evaluate(ENV):  # type: ignore[arg-type]
            continue
        (clause,) = req.specifier
        assert clause.operator == "==", f"{path.name}: {line[:80]} is not pinned with =="
        out[canonicalize_name(req.name)] = (Version(clause.version), hashes)
    return out


def required(extra: str | None) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    if extra:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    return reqs


@pytest.mark.parametrize("lock,extra", [(RUNTIME, None), (TEST, "test")], ids=["runtime", "test"])
def test_every_dependency_is_pinned_with_hashes(lock: Path, extra: str | None) -> None:
    pinned = pins(lock)
    problems = []
    for req in required(extra):
        got = pinned.get(canonicalize_name(req.name))
        if got is None:
            problems.append(f"{req.name} is not in {lock.name}")
        elif not req.specifier.contains(got[0], prereleases=True):
            problems.append(f"{req.name}=={got[0]} in {lock.name} does not satisfy pyproject's {req}")
    assert problems == [], "\n".join(problems) + "\nrun ./run lock to regenerate the lock files"
    assert all(hashes for _, hashes in pinned.values()), f"{lock.name}: a pin without --hash"
    assert "ml-connector" not in pinned, "the project itself is installed from source or its wheel, not the lock"


def test_runtime_lock_has_no_test_tools() -> None:
    test_only = {canonicalize_name(r.name) for r in required("test")} - {canonicalize_name(r.name)
                                                                         for r in required(None)}
    assert test_only and set(pins(RUNTIME)) & test_only == set()


def test_runtime_pins_agree_with_the_test_lock() -> None:
    """Tests run on the versions the image ships."""
    runtime, test = pins(RUNTIME), pins(TEST)
    assert {k: v[0] for k, v in runtime.items()} == {k: test[k][0] for k in runtime if k in test}
    assert set(runtime) <= set(test)


@pytest.mark.parametrize("lock", [RUNTIME, TEST], ids=lambda p: p.name)
def test_no_local_paths_or_indexes(lock: Path) -> None:
    text = lock.read_text()
    assert not re.search(r"(file:|/opt/|/work/|/home/|/root/|--find-links|--index-url|--extra-index-url|-e )",
                         text), "a local path or index in the lock (check `pip config list`; ./run lock uses uv)"


def test_run_and_ci_install_from_the_lock() -> None:
    run = (REPO / "run").read_text()
    assert re.search(r"pip install -q --require-hashes -r requirements-test\.lock", run)
    assert "pip install -q --no-deps -e ." in run and "-e '.[test]'" not in run
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "./run test" and "./run lint" in ci
