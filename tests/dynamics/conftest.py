"""Fixtures for dynamics/ tests: the OData stand-in on loopback, a session, fake sleep, a client factory."""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
import pytest

from dynamics import ODataClient
from dynamics_fakes import FakeFnO, Sleeps, Tokens


@pytest.fixture
async def fno(aiohttp_server: Any) -> FakeFnO:
    fake = FakeFnO()
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(fno: FakeFnO, session: aiohttp.ClientSession, sleeps: Sleeps) -> Callable[..., ODataClient]:
    def make(tokens: Tokens | None = None, **options: Any) -> ODataClient:
        options.setdefault("sleep", sleeps)
        return ODataClient(session, fno.base_url, tokens or Tokens(), **options)

    return make
