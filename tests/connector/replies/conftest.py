from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "approvals"))  # approvals_fakes: the approvals world

from approvals_fakes import MEGAN, make_world, personal_install  # noqa: E402


@pytest.fixture
async def world(tmp_path):
    """The approvals world (real SQLite store, recording Teams poster, F&O workflow): Megan is the approver."""
    w = await make_world(str(tmp_path / "replies.db"))
    await w.store.upsert_install(personal_install(MEGAN.id))
    yield w
    await w.service.aclose()
    await w.store.close()
