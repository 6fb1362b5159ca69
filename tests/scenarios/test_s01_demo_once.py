"""Issue 2/4, scenario 1: `ml-connector demo --once` runs the whole product end to end and checks every card."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from scenariokit import LeakRegistry, ml_connector_exe

pytestmark = pytest.mark.slow


def test_demo_once(tmp_path: Path, leak_registry: LeakRegistry) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's temporary folder (kept with --keep) lands here, for the scan
    out = tmp_path / "demo-output.log"
    with open(out, "wb") as f:
        proc = subprocess.run(ml_connector_exe() + ["demo", "--once", "--burst", "20", "--keep"], env=env,
                              cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT, timeout=300)
    text = out.read_text(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    assert "every event reached its card" in text
    assert "'my approvals' listed and decided" in text  # a list request and a decision from the list
    assert "a typed reply decided" in text and "replied 'reject: wrong cost centre'" in text  # typed reply
    leak_registry.log(out)
    # The demo's own sandbox secrets (it generated them) must not be in its output or its sandbox log either.
    match = re.search(r"store: sqlite:///(\S+)/demo\.db", text)
    assert match, text[:2000]
    demo_dir = Path(match.group(1))
    state = json.loads((demo_dir / "sandbox" / "sandbox.json").read_text())
    leak_registry.secret("F&O client secret (demo)", state["fno"]["client_secret"])
    leak_registry.secret("bot app password (demo)", state["teams"]["bot_app_password"])
    leak_registry.log(demo_dir / "sandbox.log")
