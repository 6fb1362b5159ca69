"""The [bot] section: the Teams bot's identity and delivery settings, validated at start.

Kept apart from connector/config.py because only the Teams side reads it; its keys are documented in README.md
("Configuration"). An empty app_id turns the Teams side off: events are then stored and enriched only.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.config import ConfigError, Settings, pydantic_problems


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class TeamsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: str = ""  # the bot's Entra app (client) id; also the Azure Bot resource's Microsoft App ID
    app_type: Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"] = "SingleTenant"
    tenant_id: str | None = None  # default: [identity].tenant_id
    # more tenants whose activities and installs are accepted (besides tenant_id); any other tenant gets 403
    allowed_tenants: list[str] = Field(default_factory=list)
    credential: str = "bot-app-secret"  # stored secret: the bot app's client secret (or PEM key)
    credential_type: Literal["secret", "certificate"] = "secret"
    certificate_thumbprint: str | None = None
    graph: bool = True  # look users up in Microsoft Graph for @mentions (needs User.Read.All)
    digest_after: float = Field(30.0, ge=0)  # a channel backlog longer than this (s) goes out as digest cards
    digest_max: int = Field(50, ge=2, le=200)  # events per digest card
    # The Teams app package (`ml-connector manifest build`):
    teams_app_id: str | None = None  # manifest id; default derived from app_id
    teams_app_external_id: str | None = None  # the manifest id as the org catalog knows it (per-user installs)
    developer_name: str | None = None
    website_url: str | None = None
    privacy_url: str | None = None
    terms_url: str | None = None

    @field_validator("allowed_tenants")
    @classmethod
    def _tenant_ids(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if not _GUID.match(t.strip())]
        if bad:
            raise ValueError(f"tenant ids are GUIDs (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got {bad[0]!r}")
        return [t.strip().lower() for t in value]

    @property
    def enabled(self) -> bool:
        return bool(self.app_id)


def served_tenants(settings: Settings, teams: TeamsSettings) -> frozenset[str]:
    """The tenants the bot serves (lower case): [bot] tenant_id (default [identity] tenant_id) + allowed_tenants."""
    home = teams.tenant_id or settings.identity.tenant_id
    return frozenset(t.lower() for t in ([home] if home else []) + teams.allowed_tenants)


def teams_problems(settings: Settings) -> tuple[TeamsSettings | None, list[str]]:
    """The [bot] section, or None and one `bot.key: what is wrong` line per problem."""
    try:
        return TeamsSettings(**settings.bot), []
    except ValidationError as exc:
        return None, pydantic_problems(exc, "bot")
    except TypeError as exc:  # a key that is not a string (from JSON in ML_BOT)
        return None, [f"bot: {exc}"]


def teams_settings(settings: Settings) -> TeamsSettings:
    teams, problems = teams_problems(settings)
    if teams is None:
        raise ConfigError.listing("[bot]", problems)
    return teams


def bot_settings_values(settings: Settings, teams: TeamsSettings) -> dict[str, Any]:
    """Plain values for bot.BotSettings from our cloud and [bot] settings."""
    cloud = settings.cloud
    tenant = teams.tenant_id or settings.identity.tenant_id or None
    login_tenant = tenant if teams.app_type == "SingleTenant" and tenant else "botframework.com"
    return {
        "app_id": teams.app_id,
        "app_type": teams.app_type,
        "tenant_id": tenant,
        "channel_service": cloud.endpoint("bot_channel_service") or None,
        "to_bot_from_channel_token_issuer": cloud.endpoint("bot_token_issuer"),
        "to_bot_from_channel_openid_metadata_url": cloud.endpoint("bot_openid_metadata_url"),
        "to_channel_from_bot_login_url": cloud.bot_login_url
        or f"{cloud.endpoint('authority_host')}/{login_tenant}/oauth2/v2.0/token",
        "to_channel_from_bot_oauth_scope": cloud.endpoint("bot_oauth_scope"),
        "allowed_tenants": tuple(teams.allowed_tenants),
    }
