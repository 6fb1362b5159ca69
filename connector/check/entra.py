"""Entra ID's token errors in words an admin can act on (the AADSTS codes from Microsoft's error reference)."""

from __future__ import annotations

import re

from connector.check.model import unreachable
from connector.token_wiring import CredentialRef
from connector.tokens import TokenError, TokenFailure, TokenUnavailable

_AADSTS = re.compile(r"AADSTS(\d+)")


def _codes(exc: TokenError) -> set[int]:
    found = set(exc.codes)
    found |= {int(c) for c in _AADSTS.findall(exc.description or "")}
    return found


def explain_token_failure(exc: TokenFailure, ref: CredentialRef, authority: str, scope: str) -> tuple[str, str]:
    """(detail, fix) for a failed token request. Never includes the credential (TokenError texts are scrubbed)."""
    app, secret = ref.client_id, ref.name
    if isinstance(exc, TokenUnavailable):
        reason = exc.reason
        if "cannot reach" in reason or "ConnectionError" in reason or "Timeout" in reason:
            lowered = reason.lower()
            if "refused" in lowered:
                short = "connection refused"
            elif "timeout" in lowered or "timed out" in lowered:
                short = "timed out"
            elif "name or service not known" in lowered or "nodename nor servname" in lowered \
                    or "failed to resolve" in lowered or "name resolution" in lowered:
                short = "the host name does not resolve"  # requests' text: "Failed to resolve 'host' ([Errno -2]…)"
            elif "certificate verify failed" in lowered:
                short = "its TLS certificate is not trusted (a proxy re-signing TLS? set [cloud] ca_bundle)"
            else:
                short = reason.split(": ", 1)[-1][:160]
            return unreachable(authority, short)
        return (f"Entra ID is unavailable: {reason[:200]}", "try again in a few minutes; if it persists, check "
                "https://status.azure.com and any proxy between here and Entra ID.")
    assert isinstance(exc, TokenError)
    codes = _codes(exc)
    text = (exc.description or exc.error).split(" Trace ID:")[0]
    if 7000215 in codes:
        return (f"Entra ID refused the client secret of app {app} (AADSTS7000215: invalid client secret)",
                f"store the secret's Value (not its Secret ID) from the app registration's Certificates & secrets: "
                f"`ml-connector secrets set {secret}`.")
    if 7000222 in codes:
        return (f"the client secret of app {app} has expired (AADSTS7000222)",
                f"create a new client secret under the app registration's Certificates & secrets and store it with "
                f"`ml-connector secrets set {secret}`.")
    if 700016 in codes:
        return (f"app {app} is not found in tenant {ref.tenant_id} (AADSTS700016)",
                f"set client_id for {ref.owner} to the app registration's Application (client) ID, in the tenant "
                "the app is registered in (multi-tenant apps: have an admin consent to it in this tenant).")
    if 90002 in codes or (exc.error == "invalid_configuration" and "authority" in text.lower()):
        return (f"tenant {ref.tenant_id} is not found (AADSTS90002)",
                "set tenant_id to the Directory (tenant) ID shown on the app registration's Overview page.")
    if 700027 in codes:
        return (f"Entra ID does not know the certificate app {app} signed with (AADSTS700027)",
                f"upload the certificate's public part under the app registration's Certificates & secrets, or "
                f"store the matching key with `ml-connector secrets set {secret} --from-file KEY.pem` and fix "
                "certificate_thumbprint.")
    if 500011 in codes:
        return (f"the resource of scope {scope} does not exist in tenant {ref.tenant_id} (AADSTS500011)",
                "check the URL the scope is built from (the environment's base_url, or [cloud] endpoints).")
    code = next(iter(sorted(codes)), None)
    more = f" (see https://login.microsoftonline.com/error?code={code})" if code else ""
    return (f"Entra ID refused a token for app {app}: {text[:240]}",
            f"fix the app registration or the credential named above{more}.")
