"""What every group of checks shares: settings, the store and secrets, one HTTP session, TLS, tokens."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping

import aiohttp

from connector.tls import client_ssl_context
from connector.config import Settings
from connector.secrets import MasterKey, SecretBox
from connector.teams_config import TeamsSettings
from connector.tokens import TokenProvider


@dataclass
class CheckContext:
    settings: Settings
    environ: Mapping[str, str]
    timeout: float
    master_key: MasterKey | None = None  # given by tests; else read from environ by the configuration checks
    environment: str | None = None  # only this F&O environment (--environment)
    teams: TeamsSettings | None = None  # None when [bot] is invalid
    store: Any = None  # opened by the configuration checks
    box: SecretBox | None = None
    session: aiohttp.ClientSession | None = None
    tls: Any = None  # ssl.SSLContext: system trust plus [cloud] ca_bundle, as the service uses
    tokens: TokenProvider | None = None
    credentials: dict[str, Any] = field(default_factory=dict)  # secret name -> credential that decrypted

    @property
    def http(self) -> aiohttp.ClientSession:
        """The one HTTP session (open for the whole run: check_context opens it before any group runs)."""
        assert self.session is not None, "check_context opens the session first"
        return self.session


@asynccontextmanager
async def check_context(settings: Settings, *, environ: Mapping[str, str] | None = None, timeout: float = 15,
                        master_key: MasterKey | None = None,
                        environment: str | None = None) -> AsyncIterator[CheckContext]:
    from connector.token_wiring import token_provider

    ctx = CheckContext(settings, os.environ if environ is None else environ, timeout, master_key, environment)
    ctx.tls = client_ssl_context(settings.cloud.ca_bundle)
    ctx.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx.tls), raise_for_status=False)
    try:
        ctx.tokens = token_provider(settings, timeout=timeout)
    except ValueError:
        ctx.tokens = None  # authority_host is not https: reported by the configuration checks
    try:
        yield ctx
    finally:
        await ctx.session.close()
        if ctx.tokens is not None:
            ctx.tokens.close()
        if ctx.store is not None:
            await ctx.store.close()
