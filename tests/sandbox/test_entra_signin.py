"""The Entra stand-in's interactive sign-in (authorization code + PKCE): the rules a real tenant enforces."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from sandbox.entra.issuer import EntraIssuer, OAuthError
from sandbox.entra.signin import SignIn
from sandbox.people import PEOPLE, TENANT_ID

APP = "5a6b7c8d-0000-4000-8000-00000000a0b2"
SECRET = "sandbox-secret"
REDIRECT = "https://connector.example/admin/callback"
VERIFIER = "v" * 50
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def signin() -> SignIn:
    issuer = EntraIssuer(TENANT_ID)
    issuer.register_app(APP, secret=SECRET)
    return SignIn(issuer)


def _code(signin: SignIn, **extra: str) -> str:
    url = signin.authorize({"client_id": APP, "redirect_uri": REDIRECT, "response_type": "code", "state": "s1",
                            "nonce": "n1", "code_challenge": CHALLENGE, "code_challenge_method": "S256", **extra})
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(REDIRECT) and query["state"] == ["s1"]
    return query["code"][0]


def _redeem(signin: SignIn, code: str, **form: str) -> dict:
    return signin.redeem(TENANT_ID, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                     "code_verifier": VERIFIER, **form}, APP, SECRET)


def test_the_id_token_names_the_user_with_nonce_groups_and_roles(signin: SignIn) -> None:
    signin.set_user(PEOPLE[2].upn, groups=["g-1"], roles={APP: ["Connector.Admin"]})
    body = _redeem(signin, _code(signin))
    claims = jwt.decode(body["id_token"], signin.issuer._key.public_key(), algorithms=["RS256"], audience=APP)
    assert claims["oid"] == PEOPLE[2].object_id and claims["preferred_username"] == PEOPLE[2].upn
    assert claims["nonce"] == "n1" and claims["groups"] == ["g-1"] and claims["roles"] == ["Connector.Admin"]
    assert claims["iss"] == signin.issuer.issuer_for(TENANT_ID, "2.0")


@pytest.mark.parametrize("form,secret,error", [
    ({"code_verifier": "w" * 50}, SECRET, "invalid_grant"),  # PKCE mismatch
    ({"redirect_uri": "https://evil.example/cb"}, SECRET, "invalid_grant"),
    ({}, "wrong-secret", "invalid_client"),
])
def test_a_code_needs_its_verifier_redirect_uri_and_the_client_secret(signin: SignIn, form, secret, error) -> None:
    code = _code(signin)
    with pytest.raises(OAuthError) as err:
        signin.redeem(TENANT_ID, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                  "code_verifier": VERIFIER, **form}, APP, secret)
    assert err.value.error == error


def test_a_code_is_used_once(signin: SignIn) -> None:
    code = _code(signin)
    _redeem(signin, code)
    with pytest.raises(OAuthError, match="invalid or expired"):
        _redeem(signin, code)


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_every_response_mode_carries_the_code_and_state(signin: SignIn, mode: str) -> None:
    redirect_uri, params = signin.grant({"client_id": APP, "redirect_uri": REDIRECT, "response_type": "code",
                                         "state": "s1", "response_mode": mode})
    assert redirect_uri == REDIRECT and params["state"] == "s1" and params["code"]


def test_an_unknown_response_mode_is_refused(signin: SignIn) -> None:
    with pytest.raises(OAuthError, match="response_mode"):
        signin.grant({"client_id": APP, "redirect_uri": REDIRECT, "response_type": "code", "response_mode": "web"})
