"""The README and the manifest's README say what the product does and needs (checked against the code's facts)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def test_deployment_steps_name_every_graph_permission_approvals_need() -> None:
    deployment = _section("Setting up a real deployment")
    for permission in ("User.Read.All", "TeamsAppInstallation.ReadWriteSelfForUser.All", "AppCatalog.Read.All"):
        assert permission in deployment, permission


def test_settings_table_does_not_call_the_catalog_id_derived() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `bot.teams_app_id`")
               or "`bot.teams_app_external_id`" in line and line.startswith("|"))
    assert "derived" not in row.split("|")[2] or "teams_app_external_id" not in row.split("|")[1]


def test_manifest_readme_has_no_leftover_draft() -> None:
    text = (ROOT / "connector" / "teams_app" / "README.md").read_text(encoding="utf-8")
    assert "Draft for the main README" not in text
