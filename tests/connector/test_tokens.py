"""TokenProvider against the Entra stand-in over real TLS. The stand-in runs in the test's loop; MSAL's blocking
requests run in worker threads (asyncio.to_thread), so the loop stays free to answer them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connector.secrets import Secret
from connector.tokens import (
    ClientCertificate,
    ClientSecret,
    ManagedIdentity,
    TokenError,
    TokenProvider,
    TokenUnavailable,
    fo_scope,
    graph_scope,
)
from sandbox.entra import EntraIssuer, serve_entra
from sandbox.people import TENANT_ID
from sandbox.tls import make_ca

FO = "https://contoso-sandbox.operations.dynamics.com"
APP_ID = "5a6b7c8d-0000-4000-8000-00000000b001"
CERT_APP_ID = "5a6b7c8d-0000-4000-8000-00000000b002"
SECRET = "Tk~8Q-the-real-secret-value_1234"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cert_pair() -> tuple[str, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ml-connector token test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert.fingerprint(hashes.SHA1()).hex()


@pytest.fixture
async def entra(tmp_path, cert_pair, monkeypatch):
    # the dev machines set REQUESTS_CA_BUNDLE to the system bundle: make sure it points elsewhere than our CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    ca = make_ca(tmp_path / "ca")
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP_ID, secret=SECRET)
    issuer.register_app(CERT_APP_ID, certificate_pem=cert_pair[1].encode())
    runner, host = await serve_entra(issuer, ca.server_context())
    yield issuer, host, str(ca.cert_path)
    await runner.cleanup()


@pytest.fixture
async def provider(entra):
    issuer, host, ca = entra
    clock = Clock()
    p = TokenProvider(authority_host=host, ca_bundle=ca, clock=clock)
    p.test_clock = clock  # type: ignore[attr-defined]
    yield p
    p.close()


async def test_secret_token_is_cached(entra, provider):
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO + "/"))
    token = await src()
    assert issuer.verify(token, FO)["appid"] == APP_ID
    assert await src() == token and await src(force_refresh=False) == token
    assert issuer.issued == 1 and src.acquisitions == 1
    assert provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO)) is src


async def test_certificate_credentials(entra, provider, cert_pair):
    issuer, _, _ = entra
    key_pem, cert_pem, sha1 = cert_pair
    by_cert = provider.token_source(TENANT_ID, CERT_APP_ID,
                                    ClientCertificate(Secret(key_pem), public_cert_pem=cert_pem), graph_scope())
    claims = issuer.verify(await by_cert(), "https://graph.microsoft.com")
    assert claims["appid"] == CERT_APP_ID and claims["appidacr"] == "2"
    by_thumbprint = provider.token_source(TENANT_ID, CERT_APP_ID,
                                          ClientCertificate(Secret(key_pem), thumbprint=sha1), fo_scope(FO))
    assert issuer.verify(await by_thumbprint(), FO)["appid"] == CERT_APP_ID
    assert key_pem not in repr(ClientCertificate(Secret(key_pem), thumbprint=sha1))


async def test_fifty_concurrent_callers_share_one_acquisition(entra, provider):
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    tokens = await asyncio.gather(*(src() for _ in range(50)))
    assert len(set(tokens)) == 1 and issuer.issued == 1


async def test_expiry_renews_before_the_end(entra, provider):
    issuer, _, _ = entra
    issuer.token_lifetime = 2  # short tokens: renewed at half-life, not refresh_margin (300 s) before
    clock = provider.test_clock
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    first = await src()
    assert src.expires_at == clock.now + 2
    clock.now += 0.9
    assert await src() == first
    clock.now += 0.2  # past half-life
    second = await src()
    assert second != first and issuer.issued == 2
    issuer.verify(second, FO)


async def test_margin_for_normal_tokens(entra, provider):
    issuer, _, _ = entra
    issuer.token_lifetime = 3600
    clock = provider.test_clock
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    first = await src()
    clock.now += 3600 - 301
    assert await src() == first
    clock.now += 2
    assert await src() != first and issuer.issued == 2


async def test_a_failed_early_renewal_keeps_the_valid_token(entra, provider):
    issuer, _, _ = entra
    clock = provider.test_clock
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    first = await src()
    clock.now += 3600 - 200  # inside the refresh margin, not expired
    issuer.fail_next(1, status=503, retry_after=0)
    assert await src() == first and issuer.failed == 1
    clock.now += 5.1  # the retry is postponed by Retry-After (or 5 s)
    assert await src() != first and issuer.issued == 2
    issuer.fail_next(1, status=503, retry_after=0)
    with pytest.raises(TokenUnavailable):  # force_refresh (after a 401) never falls back
        await src(force_refresh=True)


async def test_force_refresh_gets_a_new_token_once_for_concurrent_401s(entra, provider):
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    first = await src()
    second = await src(force_refresh=True)
    assert second != first and issuer.issued == 2  # MSAL's own cache was bypassed too
    assert await src() == second
    refreshed = await asyncio.gather(*(src(force_refresh=True) for _ in range(10)))
    assert len(set(refreshed)) == 1 and issuer.issued == 3


async def test_wrong_secret_is_a_token_error_without_the_secret(entra, provider, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng~secret-value-that-must-not-leak"
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(wrong)), fo_scope(FO))
    with pytest.raises(TokenError) as err:
        await src()
    assert err.value.error == "invalid_client" and err.value.codes == [7000215]
    assert "AADSTS7000215" in str(err.value)
    assert wrong not in str(err.value) and wrong not in repr(err.value) and wrong not in caplog.text
    assert wrong not in repr(src) and wrong not in repr(provider)


async def test_unknown_app_is_a_token_error(entra, provider):
    src = provider.token_source(TENANT_ID, "00000000-0000-4000-8000-0000000000ff",
                                ClientSecret(Secret(SECRET)), fo_scope(FO))
    with pytest.raises(TokenError) as err:
        await src()
    assert err.value.error == "unauthorized_client" and "AADSTS700016" in str(err.value)


async def test_throttling_and_outages_are_transient(entra, provider):
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    issuer.fail_next(1, status=429, retry_after=0)
    with pytest.raises(TokenUnavailable) as err:
        await src()
    assert err.value.retry_after == 0
    issuer.fail_next(1, status=503, retry_after=0)
    with pytest.raises(TokenUnavailable):
        await src()
    assert issuer.verify(await src(), FO)  # the next attempt goes through
    assert issuer.failed == 2 and issuer.issued == 1


async def test_msal_holds_back_after_a_5xx_without_retry_after(entra, provider):
    # MSAL 1.39 replays a 429/5xx answer for its Retry-After (5 s when absent) without asking Entra again:
    # the pipeline's backoff must be longer than that for a retry to reach the network.
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    issuer.fail_next(1, status=503)
    for _ in range(2):
        with pytest.raises(TokenUnavailable):
            await src()
    assert issuer.requests == 1 and issuer.stats()["pending_failures"] == 0


async def test_unreachable_or_untrusted_entra_is_transient(entra, tmp_path):
    _, host, _ = entra
    other_ca = make_ca(tmp_path / "other")
    p = TokenProvider(authority_host=host, ca_bundle=str(other_ca.cert_path))
    try:
        with pytest.raises(TokenUnavailable, match="SSLError"):
            await p.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))()
    finally:
        p.close()


async def test_requests_ca_bundle_would_override_verify_but_not_ours(entra, monkeypatch):
    issuer, host, ca = entra
    # the quirk itself: a plain session's verify= loses to REQUESTS_CA_BUNDLE
    plain = requests.Session()
    plain.verify = ca
    with pytest.raises(requests.exceptions.SSLError):
        await asyncio.to_thread(plain.get, f"{host}/_sandbox/entra/stats", timeout=10)
    plain.close()
    # ...while the provider, with the same environment, still trusts our CA
    p = TokenProvider(authority_host=host, ca_bundle=ca)
    try:
        token = await p.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))()
        issuer.verify(token, FO)
    finally:
        p.close()


def test_scopes_and_arguments():
    assert fo_scope("https://Contoso.operations.dynamics.com/") == "https://contoso.operations.dynamics.com/.default"
    assert fo_scope("https://127.0.0.1:8443") == "https://127.0.0.1:8443/.default"
    assert graph_scope() == "https://graph.microsoft.com/.default"
    assert graph_scope("https://graph.microsoft.us/v1.0") == "https://graph.microsoft.us/.default"
    with pytest.raises(ValueError):
        fo_scope("http://contoso.operations.dynamics.com")
    with pytest.raises(ValueError, match="https"):
        TokenProvider(authority_host="http://127.0.0.1:1")
    p = TokenProvider(authority_host="https://127.0.0.1:1")
    with pytest.raises(NotImplementedError, match="managed identity"):
        p.token_source(TENANT_ID, APP_ID, ManagedIdentity(), fo_scope(FO))
    with pytest.raises(ValueError, match=r"/\.default"):
        p.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), "https://x/user.read")
    with pytest.raises(ValueError):
        ClientCertificate(Secret("k"))
    with pytest.raises(ValueError, match="not an unencrypted PEM") as err:
        ClientCertificate(Secret("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), thumbprint="ab")
    assert "AAAA" not in str(err.value)


async def test_unknown_tenant_is_a_token_error(entra, provider):
    src = provider.token_source("not-our-tenant", APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    with pytest.raises(TokenError, match="not-our-tenant"):
        await src()


async def test_every_failed_acquisition_is_a_warning_counted_for_metrics(entra, provider, caplog):
    """An operator sees each Entra retry (the reason and the wait), and the source counts them for /metrics and
    keeps the last failure for /readyz and the status page."""
    issuer, _, _ = entra
    src = provider.token_source(TENANT_ID, APP_ID, ClientSecret(Secret(SECRET)), fo_scope(FO))
    with caplog.at_level(logging.WARNING, logger="connector.tokens"):
        for _ in range(2):
            issuer.fail_next(1, status=429, retry_after=0)
            with pytest.raises(TokenUnavailable):
                await src()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unavailable" in r.getMessage()]
    assert len(warnings) == 2 and all(fo_scope(FO) in r.getMessage() for r in warnings)
    assert SECRET not in caplog.text
    assert src.failures == 2 and src.last_failure is not None and src.last_success_at is None
    await src()
    assert src.acquisitions == 1 and src.last_success_at is not None
