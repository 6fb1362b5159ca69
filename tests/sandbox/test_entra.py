"""The Entra stand-in against the real MSAL over real TLS (MSAL is blocking: it runs in a thread, the server in
the test's loop), plus verify() on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.entra import (
    BOTFRAMEWORK_TENANT_ID,
    EntraIssuer,
    InvalidToken,
    load_or_create_signing_key,
    serve_entra,
)
from sandbox.people import TENANT_ID
from sandbox.tls import make_ca

FO = "https://contoso-sandbox.operations.dynamics.com"
APP_ID = "3f1b2c4d-0000-4000-8000-00000000a001"
CERT_APP_ID = "3f1b2c4d-0000-4000-8000-00000000a002"
SECRET = "s3cr3t~value-for-tests"


def self_signed(common_name: str = "ml-connector test") -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def cert_pair() -> tuple[bytes, bytes]:
    return self_signed()


@pytest.fixture
async def entra(tmp_path, cert_pair):
    ca = make_ca(tmp_path / "ca")
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret=SECRET, roles={FO: ["Connector.ReadWrite"]})
    issuer.register_app(CERT_APP_ID, certificate_pem=cert_pair[1])
    runner, host = await serve_entra(issuer, ca.server_context())
    yield issuer, host, ca
    await runner.cleanup()


def msal_app(host: str, ca, client_id: str, credential, tenant: str = TENANT_ID) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace verify=
    session.verify = str(ca.cert_path)
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=f"{host}/{tenant}",
        instance_discovery=False, http_client=session)


async def test_msal_gets_a_token_with_a_secret(entra):
    issuer, host, ca = entra
    app = await asyncio.to_thread(msal_app, host, ca, APP_ID, SECRET)
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    claims = issuer.verify(result["access_token"], FO)
    assert claims["aud"] == FO and claims["appid"] == APP_ID and claims["appidacr"] == "1"
    assert claims["iss"] == f"https://sts.windows.net/{TENANT_ID}/" and claims["ver"] == "1.0"
    assert claims["tid"] == TENANT_ID and claims["roles"] == ["Connector.ReadWrite"]
    assert claims["oid"] == issuer.apps[APP_ID].object_id == claims["sub"]
    assert issuer.issued == 1


async def test_msal_gets_a_token_with_a_certificate(entra, cert_pair):
    issuer, host, ca = entra
    key_pem, cert_pem = cert_pair
    # public_certificate given: MSAL signs PS256 with x5t#S256 (and sends x5c)
    app = await asyncio.to_thread(msal_app, host, ca, CERT_APP_ID,
                                  {"private_key": key_pem.decode(), "public_certificate": cert_pem.decode()})
    result = await asyncio.to_thread(app.acquire_token_for_client, ["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    claims = issuer.verify(result["access_token"], "https://graph.microsoft.com")
    assert claims["appid"] == CERT_APP_ID and claims["appidacr"] == "2"
    # SHA-1 thumbprint only: MSAL signs RS256 with x5t
    sha1 = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex()
    app = await asyncio.to_thread(msal_app, host, ca, CERT_APP_ID,
                                  {"private_key": key_pem.decode(), "thumbprint": sha1})
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert "access_token" in result, result
    assert issuer.issued == 2


async def test_an_unregistered_certificate_is_refused(entra):
    issuer, host, ca = entra
    key_pem, cert_pem = self_signed("someone else")
    app = await asyncio.to_thread(msal_app, host, ca, CERT_APP_ID,
                                  {"private_key": key_pem.decode(), "public_certificate": cert_pem.decode()})
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert result["error"] == "invalid_client" and 700027 in result["error_codes"]


async def test_wrong_secret_is_invalid_client(entra):
    issuer, host, ca = entra
    app = await asyncio.to_thread(msal_app, host, ca, APP_ID, "not-the-secret")
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert result["error_codes"] == [7000215]
    assert issuer.issued == 0 and issuer.refused == 1


async def test_unknown_app_and_bad_scope(entra):
    issuer, host, ca = entra
    app = await asyncio.to_thread(msal_app, host, ca, "00000000-0000-0000-0000-00000000dead", SECRET)
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]
    app = await asyncio.to_thread(msal_app, host, ca, APP_ID, SECRET)
    result = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/data.read"])
    assert result["error"] == "invalid_scope" and result["error_codes"] == [70011]


async def test_botframework_tenant_and_discovery_documents(entra):
    issuer, host, ca = entra
    app = await asyncio.to_thread(msal_app, host, ca, APP_ID, SECRET, "botframework.com")
    result = await asyncio.to_thread(app.acquire_token_for_client, ["https://api.botframework.com/.default"])
    claims = issuer.verify(result["access_token"], "https://api.botframework.com")
    assert claims["tid"] == BOTFRAMEWORK_TENANT_ID
    assert claims["iss"] == f"https://sts.windows.net/{BOTFRAMEWORK_TENANT_ID}/"

    def fetch(path: str) -> requests.Response:
        s = requests.Session()
        s.trust_env = False
        return s.get(f"{host}{path}", verify=str(ca.cert_path), timeout=10)

    doc = (await asyncio.to_thread(fetch, f"/{TENANT_ID}/v2.0/.well-known/openid-configuration")).json()
    assert doc["token_endpoint"] == f"{host}/{TENANT_ID}/oauth2/v2.0/token"
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert doc["issuer"] == f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    keys = (await asyncio.to_thread(fetch, f"/{TENANT_ID}/discovery/v2.0/keys")).json()
    assert keys == issuer.jwks() and keys["keys"][0]["kid"] == issuer.kid
    assert (await asyncio.to_thread(fetch, "/not-a-tenant/v2.0/.well-known/openid-configuration")).status_code == 400


async def test_admin_api_lifetime_fail_next_and_stats(entra):
    issuer, host, ca = entra

    def call(method: str, path: str, body: dict | None = None) -> requests.Response:
        s = requests.Session()
        s.trust_env = False
        return s.request(method, f"{host}/_sandbox/entra/{path}", json=body, verify=str(ca.cert_path), timeout=10)

    assert (await asyncio.to_thread(call, "POST", "token-lifetime", {"seconds": 5})).json() == {"token_lifetime": 5}
    assert (await asyncio.to_thread(call, "POST", "fail-next",
                                    {"count": 1, "status": 429, "retry_after": 0})).status_code == 200
    app = await asyncio.to_thread(msal_app, host, ca, APP_ID, SECRET)
    first = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert first["error"] == "temporarily_unavailable"  # a 429 comes back as an error dict
    second = await asyncio.to_thread(app.acquire_token_for_client, [f"{FO}/.default"])
    assert second["expires_in"] == 5
    stats = (await asyncio.to_thread(call, "GET", "stats")).json()
    assert stats["issued"] == 1 and stats["failed"] == 1 and stats["requests"] == 2
    assert (await asyncio.to_thread(call, "POST", "token-lifetime", {"seconds": 0})).status_code == 400


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def offline_issuer() -> tuple[EntraIssuer, FakeClock]:
    clock = FakeClock()
    issuer = EntraIssuer(TENANT_ID, clock=clock, token_lifetime=600, leeway=30)
    issuer.register_app(APP_ID, secret=SECRET)
    return issuer, clock


def test_verify_rejects_wrong_audience_expired_and_tampered(offline_issuer):
    issuer, clock = offline_issuer
    token, _ = issuer.issue(APP_ID, FO)
    assert issuer.verify(token, FO)["aud"] == FO
    with pytest.raises(InvalidToken, match="audience"):
        issuer.verify(token, FO + "/")
    with pytest.raises(InvalidToken, match="expired"):
        clock.now += 600 + 31
        try:
            issuer.verify(token, FO)
        finally:
            clock.now -= 600 + 31
    clock.now += 600 + 29  # within leeway
    issuer.verify(token, FO)
    clock.now -= 600 + 29
    head, body, sig = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["roles"] = ["Admin"]
    forged = ".".join([head, jwt.utils.base64url_encode(json.dumps(claims).encode()).decode(), sig])
    with pytest.raises(InvalidToken, match="bad signature"):
        issuer.verify(forged, FO)
    other = EntraIssuer(TENANT_ID, clock=clock)
    other.register_app(APP_ID, secret=SECRET)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        issuer.verify(other.issue(APP_ID, FO)[0], FO)
    with pytest.raises(InvalidToken, match="malformed"):
        issuer.verify("not-a-jwt", FO)


def test_v2_tokens_and_the_audience_rule(offline_issuer):
    issuer, clock = offline_issuer
    v2 = EntraIssuer(TENANT_ID, clock=clock, token_version="2.0", signing_key=issuer._key)
    v2.register_app(APP_ID, secret=SECRET)
    body = v2.token_response(TENANT_ID, {"grant_type": "client_credentials", "client_id": APP_ID,
                                         "client_secret": SECRET, "scope": "https://graph.microsoft.com//.default"},
                             authorization=None, token_endpoints=set())
    claims = v2.verify(body["access_token"], "https://graph.microsoft.com/")
    assert claims["ver"] == "2.0" and claims["azp"] == APP_ID and "appid" not in claims
    assert claims["iss"] == v2.issuer_for(TENANT_ID) == f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"
    assert EntraIssuer.app_id(claims) == APP_ID
    # verify() reads the format from `ver`: an issuer configured for v1 still accepts its key's v2 tokens
    assert issuer.verify(body["access_token"], "https://graph.microsoft.com/")["ver"] == "2.0"


def test_signing_key_survives_a_restart(tmp_path):
    path = tmp_path / "state" / "entra-signing-key.pem"
    first = EntraIssuer(TENANT_ID, signing_key=load_or_create_signing_key(path))
    second = EntraIssuer(TENANT_ID, signing_key=load_or_create_signing_key(path))
    assert first.kid == second.kid and (path.stat().st_mode & 0o077) == 0
    first.register_app(APP_ID, secret=SECRET)
    second.verify(first.issue(APP_ID, FO)[0], FO)
