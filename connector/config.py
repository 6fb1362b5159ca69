"""Configuration: one TOML file plus environment overrides, validated once at start.

Every key is documented in README.md ("Configuration"). Environment variables override the file:
`ML_<SECTION>__<KEY>` (for example `ML_SERVER__PORT=9000`, `ML_STORE__URL=mongodb://db/ml`); lists such as
`environments` take JSON (`ML_ENVIRONMENTS='[{"name": ...}]'`). Secrets are never configuration values: the file
names secrets, and their values live encrypted in the store (`ml-connector secrets set NAME`).

Adapters never see this module: connector/app.py reads it and passes plain values down.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cards import canonical_locale
from connector.approvals.config import ApprovalSettings
from connector.replies.config import ReplySettings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_FILE = "ml-connector.toml"
CONFIG_ENV = "ML_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key and says what is wrong.

    `problems` holds one line per problem (`key: what is wrong`), for callers that list or compare them.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    @classmethod
    def listing(cls, source: str | None, problems: Sequence[str]) -> "ConfigError":
        """One line for one problem (start-up errors read best on one line), else a header and a line each."""
        head = f"invalid configuration ({source})" if source else "invalid configuration"
        if len(problems) == 1:
            return cls(f"{head}: {problems[0]}", problems)
        return cls("\n".join([f"{head}:", *(f"  {p}" for p in problems)]), problems)


def key_path(loc: Iterable[str | int], prefix: str = "") -> str:
    """A pydantic error location as the key an admin writes: ("routes", 0, "when", 1, "op") -> routes[0].when[1].op."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def pydantic_problems(exc: ValidationError, prefix: str = "") -> list[str]:
    """`key: message` lines for every error of a pydantic ValidationError."""
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against README.md, Configuration)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{key_path(err['loc'], prefix)}: {msg}")
    return lines


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

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _pem_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file not found: {v} (give the path of a PEM file the service can read)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _tls_pair(cls, data: Any) -> Any:
        # before the fields: "set them together" says more than "file not found" about a half-set pair
        if isinstance(data, dict) and (data.get("tls_cert") is None) != (data.get("tls_key") is None):
            raise ValueError("tls_cert and tls_key must be set together")
        return data


class StoreSettings(_Section):
    url: str = "sqlite:///ml-connector.db"  # or mongodb://host/dbname
    password_file: Path | None = None  # MongoDB: file (mode 600) with the password of the URL's user
    # SQLite: how long a pipeline write (step record, completion) may wait for the other events in flight to share
    # its commit. Never delays an enqueue (F&O's acknowledgement) or anything else somebody waits on.
    commit_delay_ms: float = Field(default=5.0, ge=0, le=1000)

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
    resource: str | None = None  # the token's resource (audience) when base_url is a proxy/gateway; default base_url
    tenant_id: str | None = None  # default: [identity].tenant_id
    client_id: str | None = None  # default: [identity].client_id
    credential: str | None = None  # default: [identity].credential
    credential_type: CredentialType | None = None
    certificate_thumbprint: str | None = None
    event_secret: str | None = None  # stored secret holding the token in the events URL; default env/<name>/event-token
    event_token_grace: float = Field(7 * 24 * 3600, ge=0)  # seconds a rotated-out events URL token stays valid
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

    @field_validator("resource")
    @classmethod
    def _resource(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("https://"):
            raise ValueError("must be the environment's https URL, e.g. https://contoso.operations.dynamics.com")
        return v.rstrip("/") if v is not None else None

    @property
    def token_resource(self) -> str:
        """Whose token F&O accepts: its own URL, even when we reach it through another host."""
        return self.resource or self.base_url

    @property
    def event_secret_name(self) -> str:
        return self.event_secret or f"env/{self.name}/event-token"


class PipelineSettings(_Section):
    concurrency: int = Field(256, ge=1, le=10_000)  # events in flight at once (tasks, not threads)
    lease_seconds: float = Field(120.0, gt=1)
    instance_lease_seconds: float = Field(30.0, gt=1)  # an instance that stops heartbeating this long is retired
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


class OpsSettings(_Section):
    """Operating it (README "Operating it"): metrics, the status page, retention."""

    metrics: bool = True  # collect and serve Prometheus metrics
    metrics_host: str = "127.0.0.1"  # the metrics listener: loopback by default, off the public listener
    metrics_port: int = Field(9464, ge=0, le=65535)  # 0: no own listener (then /metrics on the public one, token)
    metrics_token_secret: str = "ops/metrics-token"  # stored secret: bearer token for /metrics on the public listener
    metrics_cache_seconds: float = Field(15.0, ge=0)  # store-derived gauges are read at most this often
    admin_token_secret: str = "ops/admin-token"  # stored secret: the status page's admin token
    admin_sign_in: Literal["token", "entra"] = "token"  # entra: also "Sign in with Microsoft" (OIDC, MSAL)
    admin_client_id: str | None = None  # the app users sign in to; default [identity].client_id
    admin_client_secret: str | None = None  # stored secret with that app's client secret; default [identity].credential
    admin_group: str | None = None  # object id of the group whose members may use /admin
    admin_role: str | None = None  # or: the app role value assigned to them (e.g. Connector.Admin)
    admin_session_secret: str = "ops/admin-session-key"  # stored secret signing Entra sessions (generated)
    access_log: bool = True  # one INFO line per HTTP request on logger connector.access
    retention_days: float = Field(90.0, ge=0)  # done events are purged after this; 0 keeps them forever
    purge_interval: float = Field(3600.0, gt=0)  # seconds between retention runs


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
    ops: OpsSettings = Field(default_factory=OpsSettings)
    bot: dict[str, Any] = Field(default_factory=dict)  # validated by connector/teams_config.py
    routes: list[dict[str, Any]] = Field(default_factory=list)  # validated by connector/routes.py
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    replies: ReplySettings = Field(default_factory=ReplySettings)

    @model_validator(mode="after")
    def _replies_need_a_public_url(self) -> "Settings":
        if self.replies.enabled and self.replies.source in ("graph", "both") and not self.server.public_url:
            raise ValueError(f"replies.source = {self.replies.source!r} needs server.public_url: Graph posts change "
                             "notifications to https://<public_url>/api/graph/notifications (or use source = \"bot\")")
        return self

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


ENV_PREFIX = "ML_"
_NOT_CONFIG = {CONFIG_ENV, "ML_MASTER_KEY", "ML_MASTER_KEY_FILE", "ML_REQUIRE_ORACLES"}


def _env_path(name: str) -> list[str] | None:
    """The configuration path an `ML_...` variable names, or None when it is not ours to read.

    Only variables whose first segment is a section of Settings are configuration: ML_DEBUG=1 or ML_FOO__BAR=x
    (another tool's, or a typo in the section) are ignored, while ML_SERVER__PROT=1 (a typo inside a known
    section) still reaches validation and is reported as an unknown key.
    """
    if not name.startswith(ENV_PREFIX) or name in _NOT_CONFIG or name.startswith("ML_TEST_"):
        return None
    path = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
    if not path or path[0] not in Settings.model_fields:
        return None
    return path


def ignored_environment_variables(environ: Mapping[str, str]) -> list[str]:
    """Names (never values) of `ML_*` variables that are not configuration and were therefore ignored."""
    return sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in _NOT_CONFIG
                  and not n.startswith("ML_TEST_") and _env_path(n) is None)


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`ML_SECTION__KEY=value` → {"section": {"key": value}}; JSON values (lists, objects) are decoded."""
    out: dict[str, Any] = {}
    for name, value in environ.items():
        path = _env_path(name)
        if path is None:
            continue
        parsed: Any = value
        if value and value[0] in "[{":  # ("" is in every string: an empty value is an empty string, not JSON)
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
        raise ConfigError.listing(source, pydantic_problems(exc)) from None
