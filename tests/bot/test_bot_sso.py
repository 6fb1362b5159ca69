"""Universal Actions sign-in on the wire: the retried press's authentication, the loginRequest body, and the SSO
token check (signature, issuer, tenant, audience, scope, presser) against a real key set served over HTTP."""

from __future__ import annotations

import time

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bot import InvokeFailure, LoginRequest, UserTokenRejected, UserTokenValidator
from bot.activities import card_execute, invoke_body

TID = "7d3c1e2a-5b64-4f0e-9a1d-2c7b8e4f6a10"
APP = "3f1b2c4d-0000-4000-8000-00000000b0b0"
OID = "0b5e0003-3c2d-4e1f-8a9b-000000000003"


def _invoke(value_extra: dict) -> dict:
    return {"type": "invoke", "name": "adaptiveCard/action", "from": {"id": "29:x", "aadObjectId": OID},
            "conversation": {"id": "19:c@thread.tacv2;messageid=1", "conversationType": "channel", "tenantId": TID},
            "serviceUrl": "https://smba.example/", "replyToId": "1",
            "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {"workItemId": "W"}},
                      "trigger": "manual", **value_extra}}


def test_the_retried_press_carries_the_token_or_the_state_and_never_shows_it():
    ex = card_execute(_invoke({"authentication": {"id": APP, "connectionName": "c", "token": "eyJ.secret.sig"}}))
    assert ex.auth_token == "eyJ.secret.sig" and ex.auth_id == APP and ex.auth_state is None
    assert "eyJ.secret.sig" not in repr(ex)
    assert card_execute(_invoke({"state": "123456"})).auth_state == "123456"
    assert card_execute(_invoke({})).auth_token is None


def test_login_request_body_follows_the_oauth_card_rules():
    body = invoke_body(LoginRequest("Sign in to approve", "conn", APP, f"api://botid-{APP}", "https://login/x"))
    assert body["statusCode"] == 401 and body["type"] == "application/vnd.microsoft.activity.loginRequest"
    value = body["value"]
    assert value["connectionName"] == "conn" and value["buttons"][0]["value"] == "https://login/x"
    assert value["tokenExchangeResource"] == {"id": APP, "uri": f"api://botid-{APP}"}
    manual = invoke_body(LoginRequest("t", "conn", None, "u", "https://login/x"))["value"]
    assert "tokenExchangeResource" not in manual  # no SSO: Teams goes to the manual sign-in
    failed = invoke_body(InvokeFailure(412, "preconditionFailed", "token exchange failed"))
    assert failed["type"] == "application/vnd.microsoft.error.preconditionFailed" and failed["statusCode"] == 412


@pytest.fixture
async def keys(aiohttp_server):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    app = web.Application()

    async def meta(request):
        return web.json_response({"issuer": f"https://login.example/{TID}/v2.0",
                                  "jwks_uri": str(request.url.with_path(f"/{TID}/discovery/v2.0/keys"))})

    async def jwks(request):
        return web.json_response({"keys": [jwk]})

    app.router.add_get(f"/{TID}/v2.0/.well-known/openid-configuration", meta)
    app.router.add_get(f"/{TID}/discovery/v2.0/keys", jwks)
    server = await aiohttp_server(app)
    return key, str(server.make_url("")).rstrip("/")


def _token(key, **over) -> str:
    now = int(time.time())
    claims = {"aud": APP, "iss": f"https://login.example/{TID}/v2.0", "tid": TID, "oid": OID, "scp": "access_as_user",
              "preferred_username": "megan@x", "nbf": now, "exp": now + 3600, "ver": "2.0"} | over
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.mark.parametrize("over, why", [
    ({}, None),
    ({"oid": "someone-else"}, "another user"),
    ({"aud": "api://other"}, "another app"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"scp": "User.Read"}, "access_as_user"),
    ({"iss": "https://evil.example/v2.0"}, "issuer"),
    ({"tid": "11111111-2222-3333-4444-555555555555"}, "does not serve"),
])
async def test_validator(keys, aiohttp_client, over, why):
    key, host = keys
    import aiohttp
    async with aiohttp.ClientSession() as session:
        v = UserTokenValidator(session, authority_host=host, app_id=APP, tenants=[TID], leeway=60)
        token = _token(key, **over)
        if why is None:
            user = await v.validate(token, presser_object_id=OID)
            assert user.object_id == OID and token not in repr(user)
        else:
            with pytest.raises(UserTokenRejected, match=why) as err:
                await v.validate(token, presser_object_id=OID)
            assert token not in str(err.value)


async def test_a_token_signed_by_another_key_is_refused(keys):
    _, host = keys
    import aiohttp
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with aiohttp.ClientSession() as session:
        v = UserTokenValidator(session, authority_host=host, app_id=APP, tenants=[TID])
        with pytest.raises(UserTokenRejected, match="signature"):
            await v.validate(_token(other), presser_object_id=OID)
