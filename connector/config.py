"""Configuration: one TOML file plus environment overrides, validated once at start.

Every key is documented in README.md ("Configuration"). Environment variables override the file:
`ML_<SECTION>__<KEY>` (for example `ML_SERVER__PORT=9000`, `ML_STORE__URL=mongodb://db/ml`); lists such as
`environments` take JSON (`ML_ENVIRONMENTS='[{"name": ...}]'`). Secrets are never configuration values: the file
names secrets, and their values live encrypted in the store (`ml-connector secrets set NAME`).

Adapters never see this module: connector/app.py reads it and passes plain values down.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import json

from cards import canonical_locale
from connector.approvals.config import ApprovalSettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_FILE = "ml-connector.toml"
CONFIG_ENV = "ML_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key and says what is wrong."""


def check_locale(value: str | None) -> str | None:
    """A card locale as configured (`de-DE`, `de_de`, `fr`) in its BCP 47 form; ValueError if CLDR does not know it."""
    if value is None:
        return None
    canonical = canonical_locale(value)
    if canonical is None:
        raise ValueError(f"unknown locale {value!r}: use a BCP 47 tag such as de-DE, fr-FR or en-US")
    return canonical


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None  # how Teams, Graph and F&O reach us (https in production)
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key, serve HTTPS (TLS 1.2 minimum)
    tls_key: Path | None = None
    max_body_bytes: int = Field(1024 * 1024, ge=1024)  # larger event bodies are refused with 413

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServerSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"file not found: {path}")
        return self


class StoreSettings(_Section):
    url: str = "sqlite:///ml-connector.db"  # or mongodb://host/dbname

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite://", "mongodb://", "mongodb+srv://")):
            raise ValueError("must start with sqlite://, mongodb:// or mongodb+srv://")
        return v


CloudName = Literal["public", "gcc", "gcch", "dod", "china", "custom"]

# Microsoft endpoints per national cloud. Values for gcch/dod from Microsoft's botbuilder government constants
# and Graph national-cloud docs; China values are unconfirmed here (README says so): override as needed.
_CLOUDS: dict[str, dict[str, str]] = {
    "public": {
        "authority_host": "https://login.microsoftonline.com",
        "graph_url": "https://graph.microsoft.com",
        "bot_oauth_scope": "https://api.botframework.com",
        "bot_token_issuer": "https://api.botframework.com",
        "bot_openid_metadata_url": "https://login.botframework.com/v1/.well-known/openidconfiguration",
        "bot_channel_service": "",
        "bot_service_url": "https://smba.trafficmanager.net/teams/",
    },
    "gcc": {
        "authority_host": "https://login.microsoftonline.com",
        "graph_url": "https://graph.microsoft.com",
        "bot_oauth_scope": "https://api.botframework.com",
        "bot_token_issuer": "https://api.botframework.com",
        "bot_openid_metadata_url": "https://login.botframework.com/v1/.well-known/openidconfiguration",
        "bot_channel_service": "",
        "bot_service_url": "https://smba.infra.gcc.teams.microsoft.com/teams",
    },
    "gcch": {
        "authority_host": "https://login.microsoftonline.us",
        "graph_url": "https://graph.microsoft.us",
        "bot_oauth_scope": "https://api.botframework.us",
        "bot_token_issuer": "https://api.botframework.us",
        "bot_openid_metadata_url": "https://login.botframework.azure.us/v1/.well-known/openidconfiguration",
        "bot_channel_service": "https://botframework.azure.us",
        "bot_service_url": "https://smba.infra.gov.teams.microsoft.us/teams",
    },
    "dod": {
        "authority_host": "https://login.microsoftonline.us",
        "graph_url": "https://dod-graph.microsoft.us",
        "bot_oauth_scope": "https://api.botframework.us",
        "bot_token_issuer": "https://api.botframework.us",
        "bot_openid_metadata_url": "https://login.botframework.azure.us/v1/.well-known/openidconfiguration",
        "bot_channel_service": "https://botframework.azure.us",
        "bot_service_url": "https://smba.infra.dod.teams.microsoft.us/teams",
    },
    "china": {
        "authority_host": "https://login.chinacloudapi.cn",
        "graph_url": "https://microsoftgraph.chinacloudapi.cn",
        "bot_oauth_scope": "https://api.botframework.azure.cn",
        "bot_token_issuer": "https://api.botframework.azure.cn",
        "bot_openid_metadata_url": "https://login.botframework.azure.cn/v1/.well-known/openidconfiguration",
        "bot_channel_service": "",
        "bot_service_url": "",
    },
}


class CloudSettings(_Section):
    """Which Microsoft cloud. Every endpoint can be overridden; `custom` requires them all."""

    name: CloudName = "public"
    authority_host: str | None = None
    graph_url: str | None = None
    bot_oauth_scope: str | None = None  # scope of the bot's outbound token (without /.default)
    bot_token_issuer: str | None = None  # issuer of inbound Bot Framework tokens
    bot_openid_metadata_url: str | None = None  # where inbound token signing keys are published
    bot_login_url: str | None = None  # token endpoint for the bot's outbound token (derived from authority)
    bot_channel_service: str | None = None
    bot_service_url: str | None = None  # global proactive service URL when no install recorded one
    graph_resource: str | None = None  # the Graph token's resource when it differs from graph_url (sandbox)
    ca_bundle: Path | None = None  # extra CA trusted for outbound TLS (the sandbox's CA)

    def endpoint(self, key: str) -> str:
        value = getattr(self, key)
        if value is not None:
            return str(value).rstrip("/") if key.endswith("_url") and key != "bot_service_url" else str(value)
        return _CLOUDS.get(self.name, {}).get(key, "")

    @model_validator(mode="after")
    def _custom_complete(self) -> "CloudSettings":
        if self.name == "custom":
            missing = [k for k in ("authority_host", "graph_url") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"cloud 'custom' needs {', '.join(missing)}")
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"ca_bundle file not found: {self.ca_bundle}")
        return self


CredentialType = Literal["secret", "certificate"]


class IdentitySettings(_Section):
    """The Entra ID app registration the connector uses (environments may override)."""

    tenant_id: str = ""
    client_id: str = ""
    credential: str = "entra-client-secret"  # name of a stored secret (value: client secret or PEM key)
    credential_type: CredentialType = "secret"
    certificate_thumbprint: str | None = None  # SHA-1 hex, for certificate credentials


class EnvironmentSettings(_Section):
    """One F&O environment that sends us business events."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    base_url: str  # https://contoso.operations.dynamics.com (no /data)
    tenant_id: str | None = None  # default: [identity].tenant_id
    client_id: str | None = None  # default: [identity].client_id
    credential: str | None = None  # default: [identity].credential
    credential_type: CredentialType | None = None
    certificate_thumbprint: str | None = None
    event_secret: str | None = None  # stored secret holding the token in the events URL; default env/<name>/event-token
    legal_entities: list[str] = Field(default_factory=list)  # accepted legal entities; empty = all
    locale: str | None = None  # cards' number and date format (BCP 47, e.g. de-DE); a route's locale wins; en-US

    @field_validator("locale")
    @classmethod
    def _locale(cls, v: str | None) -> str | None:
        return check_locale(v)

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://contoso.operations.dynamics.com")
        return v.rstrip("/")

    @property
    def event_secret_name(self) -> str:
        return self.event_secret or f"env/{self.name}/event-token"


class PipelineSettings(_Section):
    concurrency: int = Field(256, ge=1, le=10_000)  # events in flight at once (tasks, not threads)
    lease_seconds: float = Field(120.0, gt=1)
    poll_interval: float = Field(1.0, gt=0)  # idle workers look for due retries this often
    max_attempts: int = Field(12, ge=1)  # per stage, then the event is parked as failed
    backoff_base: float = Field(2.0, gt=0)
    backoff_max: float = Field(900.0, gt=0)


class ODataSettings(_Section):
    concurrency: int = Field(8, ge=1, le=52)  # concurrent requests per environment (F&O allows 52 per user)
    timeout: float = Field(30.0, gt=0)
    max_attempts: int = Field(4, ge=1)
    max_inline_wait: float = Field(10.0, ge=0)  # longer Retry-After → the event is rescheduled instead
    default_retry_after: float = Field(30.0, gt=0)  # a 429 without Retry-After waits this long (Microsoft's sample)
    max_pages: int = Field(50, ge=1)


class CardsSettings(_Section):
    template_dir: Path | None = None  # admin templates that override or add to ours
    max_lines: int = Field(20, ge=0)
    max_bytes: int = Field(28_000, ge=4_000, le=100_000)

    @field_validator("template_dir")
    @classmethod
    def _dir(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError(f"directory not found: {v}")
        return v


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Settings(_Section):
    """The whole configuration. Build with load_settings()."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    cloud: CloudSettings = Field(default_factory=CloudSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    environments: list[EnvironmentSettings] = Field(default_factory=list)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    odata: ODataSettings = Field(default_factory=ODataSettings)
    enrichment: list[dict[str, Any]] = Field(default_factory=list)  # plans; see dynamics/plans.py
    cards: CardsSettings = Field(default_factory=CardsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    bot: dict[str, Any] = Field(default_factory=dict)  # validated by connector/teams_config.py
    routes: list[dict[str, Any]] = Field(default_factory=list)  # validated by connector/routes.py
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)

    @model_validator(mode="after")
    def _unique_environments(self) -> "Settings":
        names = [e.name.lower() for e in self.environments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"environments: duplicate name(s) {', '.join(dupes)}")
        return self

    def environment(self, name: str) -> EnvironmentSettings:
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against README.md, Configuration)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


ENV_PREFIX = "ML_"
_NOT_CONFIG = {CONFIG_ENV, "ML_MASTER_KEY", "ML_MASTER_KEY_FILE", "ML_REQUIRE_ORACLES"}


def environment_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """`ML_SECTION__KEY=value` → {"section": {"key": value}}; JSON values (lists, objects) are decoded."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_CONFIG or name.startswith("ML_TEST_"):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if not path:
            continue
        parsed: Any = value
        if value[:1] in "[{":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"environment variable {name} is not valid JSON") from None
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[path[-1]] = parsed
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | str | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any) and the environment; raise ConfigError naming each bad key.

    Args:
        path: the TOML file; default $ML_CONFIG, else ./ml-connector.toml when it exists.
        environ: where overrides come from (default os.environ); tests pass their own.
    """
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(CONFIG_ENV) or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).exists() else None)
    raw: dict[str, Any] = {}
    source = "defaults and environment"
    if path is not None:
        p = Path(path)
        source = f"{p} and environment"
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {p} is not valid TOML: {exc}") from None
    try:
        return Settings(**_merge(raw, environment_overrides(env)))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
