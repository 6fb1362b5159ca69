"""Which app, credential and scope each outbound token uses: one place for the service and `ml-connector check`.

connector/app.py builds its token sources from here, and so does the check, so that what the check proves (this
credential gets a token for this scope) is what the service will do. No I/O except reading the stored secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from connector.config import ConfigError, EnvironmentSettings, Settings
from connector.secrets import SecretBox, SecretNotFound
from connector.teams_config import TeamsSettings
from connector.tokens import (ClientCertificate, ClientSecret, OnBehalfOf, TokenProvider, TokenSource, fo_scope,
                              graph_scope)


@dataclass(frozen=True)
class CredentialRef:
    """Where an app's credential lives: the stored secret's name and how to read it."""

    owner: str  # "environment 'x'" or "[bot]", for messages
    tenant_id: str
    client_id: str
    name: str
    kind: str  # "secret" | "certificate"
    thumbprint: str | None


def token_provider(settings: Settings, *, timeout: float = 30) -> TokenProvider:
    ca = settings.cloud.ca_bundle
    return TokenProvider(authority_host=settings.cloud.endpoint("authority_host"),
                         ca_bundle=str(ca) if ca else None, timeout=timeout)


def environment_credential(settings: Settings, env: EnvironmentSettings) -> CredentialRef:
    ident = settings.identity
    return CredentialRef(f"environment '{env.name}'", env.tenant_id or ident.tenant_id,
                         env.client_id or ident.client_id, env.credential or ident.credential,
                         env.credential_type or ident.credential_type,
                         env.certificate_thumbprint or ident.certificate_thumbprint)


def bot_credential(settings: Settings, teams: TeamsSettings) -> CredentialRef:
    return CredentialRef("[bot]", teams.tenant_id or settings.identity.tenant_id, teams.app_id, teams.credential,
                         teams.credential_type, teams.certificate_thumbprint)


async def load_credential(box: SecretBox, *, name: str, kind: str, thumbprint: str | None, owner: str) -> Any:
    """The client secret or certificate key stored under `name`, as a token-library credential."""
    try:
        value = await box.get(name)
    except SecretNotFound:
        raise ConfigError(
            f"{owner}: the credential secret '{name}' is not stored; run `ml-connector secrets set {name}`"
        ) from None
    if kind == "certificate":
        try:
            return ClientCertificate(private_key_pem=value, thumbprint=thumbprint)
        except ValueError:
            raise ConfigError(
                f"{owner}: the stored secret '{name}' is not an unencrypted PEM private key; store it again with "
                f"`ml-connector secrets set {name} --from-file key.pem`"
            ) from None
    return ClientSecret(value)


async def load_ref(box: SecretBox, ref: CredentialRef) -> Any:
    return await load_credential(box, name=ref.name, kind=ref.kind, thumbprint=ref.thumbprint, owner=ref.owner)


def fo_token_source(tokens: TokenProvider, ref: CredentialRef, credential: Any,
                    env: EnvironmentSettings) -> TokenSource:
    # not base_url: behind a proxy or gateway, that host is not F&O's audience
    return tokens.token_source(ref.tenant_id, ref.client_id, credential, fo_scope(env.token_resource))


def bot_scope(settings: Settings) -> str:
    return settings.cloud.endpoint("bot_oauth_scope").rstrip("/") + "/.default"


def bot_token_source(tokens: TokenProvider, settings: Settings, ref: CredentialRef, credential: Any) -> TokenSource:
    return tokens.token_source(ref.tenant_id, ref.client_id, credential, bot_scope(settings))


def graph_token_source(tokens: TokenProvider, settings: Settings, ref: CredentialRef, credential: Any) -> TokenSource:
    graph_url = settings.cloud.endpoint("graph_url")
    return tokens.token_source(ref.tenant_id, ref.client_id, credential,
                               graph_scope(settings.cloud.graph_resource or graph_url))


# --- act_as = "approver": Teams SSO + on-behalf-of with the bot's registration -------------------------------------
SSO_SCOPE_NAME = "access_as_user"


def sso_app_id_uri(settings: Settings, teams: TeamsSettings) -> str:
    """The Application ID URI of the bot's app (Expose an API): `[approvals] sso_app_id_uri`, else the standalone
    bot form api://botid-<app id> (sso-obo.md §3)."""
    return settings.approvals.sso_app_id_uri or f"api://botid-{teams.app_id}"


def sso_sign_in_url(settings: Settings, teams: TeamsSettings) -> str:
    """The loginRequest's Sign-In button: `[approvals] sso_sign_in_url`, else Entra's authorize URL for the app's
    access_as_user scope (the manual sign-in; its code is not redeemed, see connector/approvals/actas.py)."""
    if settings.approvals.sso_sign_in_url:
        return settings.approvals.sso_sign_in_url
    tenant = teams.tenant_id or settings.identity.tenant_id or "organizations"
    query = urlencode({"client_id": teams.app_id, "response_type": "code",
                       "scope": f"{sso_app_id_uri(settings, teams)}/{SSO_SCOPE_NAME}"})
    return f"{settings.cloud.endpoint('authority_host').rstrip('/')}/{tenant}/oauth2/v2.0/authorize?{query}"


def user_token_exchange(tokens: TokenProvider, ref: CredentialRef, credential: Any) -> OnBehalfOf:
    """On-behalf-of with the bot's registration: the SSO token's audience is the bot's app, so only that app may
    exchange it (Entra checks the assertion's audience against the caller)."""
    return OnBehalfOf(tokens, ref.tenant_id, ref.client_id, credential)


def fo_user_scope(env: EnvironmentSettings) -> str:
    """The delegated F&O scope: the same `<environment URL>/.default` as app-only (sso-obo.md §4, [T])."""
    return fo_scope(env.token_resource)
