"""Fixtures shared by the sandbox tests (Entra, F&O, sender, Teams): keep them generic."""

from __future__ import annotations

import pytest

from sandbox.tls import SandboxCA, make_ca


class FakeClock:
    """A settable clock: `clock()` returns the time, `clock.advance(s)` moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox_ca(tmp_path) -> SandboxCA:
    """A fresh sandbox CA (ca.pem, a loopback server certificate) in a temporary directory."""
    return make_ca(tmp_path / "ca")
