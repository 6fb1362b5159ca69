from __future__ import annotations

import pytest

from approvals_fakes import MEGAN, make_world, personal_install


@pytest.fixture
async def world(tmp_path):
    """Megan is the approver and has the app installed personally; the channel card is in "Approvals"."""
    w = await make_world(str(tmp_path / "approvals.db"))
    await w.store.upsert_install(personal_install(MEGAN.id))
    yield w
    await w.service.aclose()
    await w.store.close()
