"""Every start-up check of the configuration, in one function that `serve` and `config check` both call.

`validate_settings(settings)` runs what the service needs before it opens anything: the [bot] section, the routes,
the enrichment plans and the card templates (the checks create_app used to run one by one), plus the values the
real services insist on: Entra ids are GUIDs, every Microsoft or F&O URL is https (http only for loopback hosts, so
tests and the sandbox can run) and never a link-local/metadata address. It collects every problem before raising
one ConfigError that names each key, and returns warnings for what works but is probably not what was meant.

It reads local files (templates, the TLS pair) but never the network, the store or the secrets: reaching those is
the start-up's job (connector/app.py), which turns their failures into one line of its own.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from cards import Catalog, TemplateInvalid
from connector.config import ConfigError, Settings
from connector.routes import Route, route_problems
from connector.store.factory import sqlite_path
from connector.teams_config import TeamsSettings, teams_problems
from dynamics import DEFAULT_PLANS, EnrichmentPlan, plans_from_config
from dynamics.errors import EnrichmentPlanError

__all__ = ["ValidatedConfig", "validate_settings", "url_problem", "is_guid", "tenant_problem"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$", re.I)
_THUMBPRINT = re.compile(r"^[0-9a-fA-F]{40}$")
# Entra's multi-tenant aliases: an app-only (client credentials) token needs one specific tenant.
_TENANT_ALIASES = {"common", "organizations", "consumers"}
# Link-local (IPv4 169.254/16 holds the cloud instance-metadata service, IPv6 fe80::/10) and AWS's IPv6 metadata.
_METADATA_NETS = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
                  ipaddress.ip_network("fd00:ec2::254/128")]
_CLOUD_URL_KEYS = ("authority_host", "graph_url", "graph_resource", "bot_oauth_scope", "bot_token_issuer",
                   "bot_openid_metadata_url", "bot_login_url", "bot_channel_service", "bot_service_url")


@dataclass(frozen=True)
class ValidatedConfig:
    """What validation built on the way, so the service does not parse the same sections twice."""

    settings: Settings
    teams: TeamsSettings
    routes: list[Route]
    plans: list[EnrichmentPlan]
    catalog: Catalog
    warnings: list[str] = field(default_factory=list)


def validate_settings(settings: Settings) -> ValidatedConfig:
    """Run every start-up check of `settings`; return the parsed sections and the warnings.

    Raises:
        ConfigError: listing every problem as `key: what is wrong` (its `problems` holds the lines).
    """
    problems: list[str] = []
    warnings: list[str] = []
    problems += _identity_problems(settings)
    problems += _url_problems(settings, warnings)
    problems += _store_problems(settings)
    problems += _tls_problems(settings)
    teams, bot_problems = teams_problems(settings)
    problems += bot_problems
    if teams is not None:
        problems += _bot_problems(settings, teams)
    catalog, catalog_problems = _load_catalog(settings)
    problems += catalog_problems
    routes, found = route_problems(settings.routes)
    problems += found
    problems += _route_targets(settings, catalog)
    plans, found = _plans(settings, routes, warnings)
    problems += found
    if teams is not None and not teams.enabled and settings.routes:
        warnings.append("routes are configured but [bot] app_id is empty: no card is posted to Teams")
    if teams is not None and teams.enabled and not settings.routes:
        warnings.append("[bot] is configured but there are no [[routes]]: no card is posted to Teams")
    if not settings.environments:
        warnings.append("no [[environments]] configured: every business event is refused")
    if problems:
        raise ConfigError.listing(None, problems)
    assert teams is not None and catalog is not None  # no problems means both were built
    return ValidatedConfig(settings, teams, routes, plans, catalog, warnings)


# --- values the real services insist on -------------------------------------------------------------------
def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def tenant_problem(value: str) -> str | None:
    """None when `value` names one Entra tenant: its id (GUID) or one of its verified domains.

    Microsoft's token endpoint takes either (`https://login.microsoftonline.com/{tenant}`: "the tenant ID or a
    domain associated with the tenant", MSAL's WithTenantId); an app-only token cannot use the multi-tenant aliases.
    """
    if value.lower() in _TENANT_ALIASES:
        return (f"'{value}' is a multi-tenant alias; an app's own token needs its tenant: the Directory (tenant) ID "
                "GUID, or a verified domain such as contoso.onmicrosoft.com")
    if is_guid(value) or _DOMAIN.match(value):
        return None
    return (f"'{value}' is neither a tenant id (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47) nor a domain "
            "name such as contoso.onmicrosoft.com")


def _guid_problem(key: str, value: str, what: str) -> list[str]:
    if value and not is_guid(value):
        return [f"{key}: '{value}' is not a GUID; use the {what} (Azure portal, a GUID such as "
                "11111111-2222-3333-4444-555555555555)"]
    return []


def _thumbprint_problem(key: str, value: str | None) -> list[str]:
    if value is not None and not _THUMBPRINT.match(value):
        return [f"{key}: expected the certificate's SHA-1 thumbprint, 40 hex digits (as the Azure portal shows it)"]
    return []


def _identity_problems(settings: Settings) -> list[str]:
    identity = settings.identity
    problems: list[str] = []
    if identity.tenant_id and (p := tenant_problem(identity.tenant_id)):
        problems.append(f"identity.tenant_id: {p}")
    problems += _guid_problem("identity.client_id", identity.client_id, "app registration's Application (client) ID")
    problems += _thumbprint_problem("identity.certificate_thumbprint", identity.certificate_thumbprint)
    for i, env in enumerate(settings.environments):
        key = f"environments[{i}]"
        if env.tenant_id is not None and (p := tenant_problem(env.tenant_id)):
            problems.append(f"{key}.tenant_id: {p}")
        if env.client_id is not None:
            problems += _guid_problem(f"{key}.client_id", env.client_id, "app registration's Application (client) ID")
        problems += _thumbprint_problem(f"{key}.certificate_thumbprint", env.certificate_thumbprint)
        # Without these every token request for the environment fails, so every event would be parked.
        if not (env.tenant_id or identity.tenant_id):
            problems.append(f"{key}.tenant_id: no tenant for environment '{env.name}': set [identity] tenant_id "
                            "(or this environment's tenant_id)")
        if not (env.client_id or identity.client_id):
            problems.append(f"{key}.client_id: no app registration for environment '{env.name}': set [identity] "
                            "client_id (or this environment's client_id)")
        kind = env.credential_type or identity.credential_type
        if kind == "certificate" and not (env.certificate_thumbprint or identity.certificate_thumbprint):
            problems.append(f"{key}.certificate_thumbprint: certificate credentials need the certificate's "
                            "thumbprint (set it here or in [identity])")
    return problems


def _bot_problems(settings: Settings, teams: TeamsSettings) -> list[str]:
    if not teams.enabled:
        return []
    problems = _guid_problem("bot.app_id", teams.app_id, "Azure Bot's Microsoft App ID")
    if teams.tenant_id is not None and (p := tenant_problem(teams.tenant_id)):
        problems.append(f"bot.tenant_id: {p}")
    if teams.app_type != "MultiTenant" and not (teams.tenant_id or settings.identity.tenant_id):
        problems.append(f"bot.tenant_id: a {teams.app_type} bot needs its tenant: set [bot] tenant_id "
                        "(or [identity] tenant_id)")
    problems += _thumbprint_problem("bot.certificate_thumbprint", teams.certificate_thumbprint)
    if teams.credential_type == "certificate" and not teams.certificate_thumbprint:
        problems.append("bot.certificate_thumbprint: certificate credentials need the certificate's thumbprint")
    return problems


def url_problem(url: str, *, path: bool = True) -> str | None:
    """None when `url` is an https URL a real service can have; else what is wrong with it.

    http is accepted only for loopback hosts (tests, the sandbox); link-local and metadata addresses never, since
    no Microsoft or F&O service lives there and a token sent there would be handed to the cloud host.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        return f"'{url}' is not a valid URL ({exc})"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"'{url}' is not an https URL"
    host = parts.hostname
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip is not None and (ip.is_link_local or any(ip in net for net in _METADATA_NETS)):
        return f"'{url}' is a link-local (cloud metadata) address, not a service URL"
    if ip is not None and ip.is_unspecified:
        return f"'{url}' names no host ({host} is the unspecified address)"
    loopback = host.lower() == "localhost" or (ip is not None and ip.is_loopback)
    if parts.scheme == "http" and not loopback:
        return f"'{url}' must use https (http is accepted only for loopback hosts, in tests)"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if parts.query or parts.fragment:
        return f"'{url}' must not carry a query or fragment"
    if not path and parts.path not in ("", "/"):
        return f"'{url}' must be the root URL, without a path (found '{parts.path}')"
    return None


def _url_problems(settings: Settings, warnings: list[str]) -> list[str]:
    problems = []
    for i, env in enumerate(settings.environments):
        # The base URL is also the OAuth resource (<base_url>/.default): a path or /data would break both.
        if p := url_problem(env.base_url, path=False):
            problems.append(f"environments[{i}].base_url: {p} (e.g. https://contoso.operations.dynamics.com)")
    for key in _CLOUD_URL_KEYS:
        value = getattr(settings.cloud, key)
        if value and (p := url_problem(str(value))):
            problems.append(f"cloud.{key}: {p}")
    public = settings.server.public_url
    if public is None:
        warnings.append("server.public_url is not set: the events URL that `environments endpoint` prints uses "
                        f"http://{settings.server.host}:{settings.server.port}, which F&O and Teams cannot reach; "
                        "set the https URL they use")
    elif p := url_problem(public):
        problems.append(f"server.public_url: {p}")
    return problems


def _store_problems(settings: Settings) -> list[str]:
    url = settings.store.url
    if not url.startswith("sqlite://"):
        return []  # reaching MongoDB is the start-up's check (network)
    try:
        path = sqlite_path(url)
    except ValueError as exc:
        return [f"store.url: {exc}"]
    if path == ":memory:":
        return []
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        return [f"store.url: the folder {folder} does not exist (create it, or point [store] url elsewhere)"]
    if not os.access(folder, os.W_OK | os.X_OK):
        return [f"store.url: the folder {folder} is not writable by this user (SQLite writes its journal there)"]
    return []


class _EncryptedKey(Exception):
    """Raised from the password callback: the service never prompts for a key's passphrase."""


def _refuse_password() -> bytes:
    raise _EncryptedKey()


def _tls_problems(settings: Settings) -> list[str]:
    server = settings.server
    if server.tls_cert is None or server.tls_key is None:
        return []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(server.tls_cert, server.tls_key, password=_refuse_password)
    except _EncryptedKey:
        return ["server.tls_key: the private key is encrypted; give an unencrypted PEM key (and restrict the "
                "file's permissions)"]
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            return [f"server.tls_key: {server.tls_key} is not the private key of the certificate in "
                    f"{server.tls_cert}"]
        return [f"server.tls_cert: {server.tls_cert} and {server.tls_key} are not a PEM certificate chain and "
                f"its private key ({exc.reason or exc})"]
    except OSError as exc:
        return [f"server.tls_cert: cannot read {exc.filename or server.tls_cert}: {exc.strerror or exc}"]
    return []


# --- sections the service parses itself -------------------------------------------------------------------
def _load_catalog(settings: Settings) -> tuple[Catalog | None, list[str]]:
    try:
        if settings.cards.template_dir is None:
            return Catalog.builtin(), []  # checked once per process (templates are copied out, never shared)
        return Catalog.load(settings.cards.template_dir), []
    except TemplateInvalid as exc:
        return None, [f"cards.template_dir: {exc}"]
    except FileNotFoundError:
        return None, [f"cards.template_dir: the folder {settings.cards.template_dir} does not exist"]
    except OSError as exc:
        return None, [f"cards.template_dir: cannot read {exc.filename}: {exc.strerror}"]


def _route_targets(settings: Settings, catalog: Catalog | None) -> list[str]:
    """What pydantic cannot see in a route: its names must exist elsewhere in the configuration."""
    problems = []
    known_envs = {e.name.lower() for e in settings.environments}
    for i, item in enumerate(settings.routes):
        try:
            route = Route(**item)
        except (ValidationError, TypeError):
            continue  # already reported by route_problems
        if not route.team.strip():
            problems.append(f"routes[{i}].team: must name a team (its name as installed, or its 19:… id)")
        if not route.channel.strip():
            problems.append(f"routes[{i}].channel: must name a channel (or leave it out for General)")
        for env in route.environments:
            if env not in known_envs:
                problems.append(f"routes[{i}].environments: no environment named '{env}' in [[environments]]")
        if route.template is not None and catalog is not None and route.template not in catalog:
            problems.append(f"routes[{i}].template: no card template named '{route.template}' "
                            f"(known: {', '.join(sorted(catalog.names()))})")
    return problems


def _overlaps(a: str, b: str) -> bool:
    """Whether two event ids or globs can name the same event (close enough for a warning)."""
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


def _plans(settings: Settings, routes: list[Route], warnings: list[str]) -> tuple[list[EnrichmentPlan], list[str]]:
    defaults = {p.name: p for p in DEFAULT_PLANS}
    problems = []
    names: list[str] = []
    for i, item in enumerate(settings.enrichment):
        name = item.get("name") if isinstance(item, dict) else None
        hint = _default_plan_hint(name, defaults) if isinstance(name, str) else ""
        try:
            plans_from_config([item])  # one at a time, so that every broken plan is reported
        except EnrichmentPlanError as exc:
            problems.append(f"enrichment[{i}]: {exc}{hint}")
            continue
        if isinstance(name, str):
            if name in names:
                problems.append(f"enrichment[{i}].name: plan '{name}' is configured twice")
            names.append(name)
    if problems:
        return [], problems
    plans = plans_from_config(settings.enrichment)
    default_events = [e for p in DEFAULT_PLANS for e in p.events]
    routed = [e for r in routes for e in r.events]
    for i, item in enumerate(settings.enrichment):
        plan = next((p for p in plans if p.name == item.get("name")), None)
        if plan is None or plan.name in defaults:
            continue
        if not any(_overlaps(e, d) for e in plan.events for d in default_events + routed):
            warnings.append(
                f"enrichment[{i}]: plan '{plan.name}' is not a built-in plan and no route posts its events "
                f"({', '.join(plan.events)}): its records are read but no card shows them"
                + _default_plan_hint(plan.name, defaults))
    return plans, []


def _default_plan_hint(name: str, defaults: dict[str, EnrichmentPlan]) -> str:
    """A pointer to the built-in plan the admin probably meant (`vendor-invoice-posted` → `vendor_invoice_posted`)."""
    if name in defaults:
        return ""
    normal = re.sub(r"[^a-z0-9]", "_", name.lower())
    close = [d for d in defaults if d == normal] or difflib.get_close_matches(name, list(defaults), n=1, cutoff=0.75)
    if close:
        return f" (to change the built-in plan, name it '{close[0]}')"
    return ""
