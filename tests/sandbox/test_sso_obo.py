"""The sandbox's Teams SSO tokens and on-behalf-of grant (real MSAL over real TLS), and F&O's completion policy."""

from __future__ import annotations

import asyncio

import jwt
import msal
import pytest
import requests

from sandbox.entra import EntraIssuer, serve_entra
from sandbox.entra.obo import SSO_SCOPE, TEAMS_WEB_CLIENT, mint_sso_token
from sandbox.fno.odata import Caller, FnoConfig, may_complete
from sandbox.people import TENANT_ID
from sandbox.tls import make_ca

FO = "https://contoso-sandbox.operations.dynamics.com"
BOT = "3f1b2c4d-0000-4000-8000-00000000b0b0"
SECRET = "bot-secret~for-tests"
OID = "0b5e0003-3c2d-4e1f-8a9b-000000000003"
UPN = "megan.bowen@contoso-distribution.example"


@pytest.fixture
async def entra(tmp_path):
    ca = make_ca(tmp_path / "ca")
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(BOT, secret=SECRET)
    runner, host = await serve_entra(issuer, ca.server_context())
    yield issuer, host, ca
    await runner.cleanup()


def _obo(host: str, ca, assertion: str, scope: str = FO + "/.default") -> dict:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace verify=
    session.verify = str(ca.cert_path)
    app = msal.ConfidentialClientApplication(BOT, client_credential=SECRET, authority=f"{host}/{TENANT_ID}",
                                             http_client=session, instance_discovery=False)
    return app.acquire_token_on_behalf_of(assertion, [scope])


async def test_sso_token_is_exchanged_for_a_delegated_f_and_o_token(entra):
    issuer, host, ca = entra
    sso = mint_sso_token(issuer, app_id=BOT, object_id=OID, upn=UPN, name="Megan Bowen")
    claims = jwt.decode(sso, options={"verify_signature": False})
    assert (claims["aud"], claims["scp"], claims["azp"], claims["ver"]) == (BOT, SSO_SCOPE, TEAMS_WEB_CLIENT, "2.0")
    result = await asyncio.to_thread(_obo, host, ca, sso)
    assert "access_token" in result, result
    fo = issuer.verify(result["access_token"], FO)
    assert (fo["upn"], fo["oid"], fo["appid"], fo["tid"]) == (UPN, OID, BOT, TENANT_ID)
    assert "Odata.FullAccess" in fo["scp"].split() and issuer.sso.obo_grants == 1


@pytest.mark.parametrize("switch, error, code", [("consent_missing", "invalid_grant", 65001),
                                                 ("mfa_required", "interaction_required", 50076)])
async def test_switches_answer_entras_errors(entra, switch, error, code):
    issuer, host, ca = entra
    setattr(issuer.sso, switch, True)
    sso = mint_sso_token(issuer, app_id=BOT, object_id=OID, upn=UPN, name="Megan Bowen")
    result = await asyncio.to_thread(_obo, host, ca, sso)
    assert result["error"] == error and code in result["error_codes"], result
    if switch == "consent_missing":
        assert result.get("suberror") == "consent_required"
    else:
        assert result.get("claims")


@pytest.mark.parametrize("bad", ["other_audience", "expired", "no_scope"])
async def test_an_assertion_not_for_this_app_is_invalid_grant(entra, bad):
    issuer, host, ca = entra
    kw = {"other_audience": {"audience": "api://another-app"}, "expired": {"lifetime": -3600},
          "no_scope": {"scp": "User.Read"}}[bad]
    sso = mint_sso_token(issuer, app_id=BOT, object_id=OID, upn=UPN, name="Megan Bowen", **kw)
    result = await asyncio.to_thread(_obo, host, ca, sso)
    assert result["error"] == "invalid_grant", result
    assert issuer.sso.obo_grants == 0


def test_completion_policy():
    item = {"Id": "W1", "UserId": "adele"}
    adele, alex, svc = (Caller("adele", "usmf", BOT, True), Caller("alex", "usmf", BOT, True),
                        Caller("svc", "usmf", "x", False))
    assert may_complete(FnoConfig(), item, svc) is None  # today's behaviour: any authenticated caller
    only = FnoConfig(completion_policy="assignee_only")
    assert may_complete(only, item, adele) is None
    assert "not the assignee" in (may_complete(only, item, alex) or "")
    delegate = FnoConfig(completion_policy="assignee_or_delegate", delegates={"Adele": "alex"})
    assert may_complete(delegate, item, alex) is None
    assert may_complete(delegate, item, svc) is not None
