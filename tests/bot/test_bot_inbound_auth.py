"""`POST /api/messages` authentication: real botbuilder JWT validation against a loopback OpenID metadata server
(on another thread). Every refusal is a 401 from us (botbuilder alone answers 500 for most of them), and the
handlers never run.
"""

from __future__ import annotations

import time

import jwt
import pytest

APP_ID = "00000000-0000-0000-0000-00000000b07"  # as in conftest.py
SERVICE_URL = "https://smba.trafficmanager.net/teams/"


async def _post(client, body, header):
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Authorization"] = header
    response = await client.post("/api/messages", json=body, headers=headers)
    return response.status, await response.text()


async def test_valid_token_is_accepted(bot_client, channel_keys, handlers, make_activity):
    body = make_activity("message", SERVICE_URL, text="hello")
    status, _ = await _post(bot_client, body, f"Bearer {channel_keys.token(service_url=SERVICE_URL)}")
    assert status == 201
    assert [name for name, _ in handlers.calls] == ["message"]
    assert handlers.calls[0][1].text == "hello"


def _defects(keys, other_key):
    """name -> Authorization header value (None = no header)."""
    now = int(time.time())
    return {
        "missing": None,
        "empty": "",
        "not_bearer": "Basic dXNlcjpwYXNz",
        "not_a_jwt": "Bearer not-a-token",
        "expired": f"Bearer {keys.token(service_url=SERVICE_URL, age=7200, lifetime=3600)}",
        "unknown_key": f"Bearer {keys.token(service_url=SERVICE_URL, kid='never-published', key=other_key)}",
        "bad_signature": f"Bearer {keys.token(service_url=SERVICE_URL, kid='good', key=other_key)}",
        "not_endorsed_for_msteams": f"Bearer {keys.token(service_url=SERVICE_URL, kid='webchat', key=keys.other)}",
        "no_endorsements_at_all": f"Bearer {keys.token(service_url=SERVICE_URL, kid='bare', key=keys.other)}",
        "wrong_audience": f"Bearer {keys.token(service_url=SERVICE_URL, audience='someone-else')}",
        "wrong_serviceurl": f"Bearer {keys.token(service_url='https://evil.example/teams/')}",
        "wrong_issuer": f"Bearer {keys.token(service_url=SERVICE_URL, issuer='https://issuer.example')}",
        "emulator_issuer": "Bearer " + jwt.encode(
            {"iss": "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/", "aud": APP_ID,
             "ver": "1.0", "appid": "x", "exp": now + 600}, keys.good, algorithm="RS256", headers={"kid": "good"}),
        "no_kid": "Bearer " + jwt.encode({"iss": "https://api.botframework.com", "aud": APP_ID,
                                          "serviceurl": SERVICE_URL, "exp": now + 600}, keys.good,
                                         algorithm="RS256"),
    }


@pytest.fixture(scope="module")
def stranger_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("defect", [
    "missing", "empty", "not_bearer", "not_a_jwt", "expired", "unknown_key", "bad_signature",
    "not_endorsed_for_msteams", "no_endorsements_at_all", "wrong_audience", "wrong_serviceurl", "wrong_issuer",
    "emulator_issuer", "no_kid",
])
async def test_bad_tokens_get_401_json_and_never_reach_the_handlers(bot_client, channel_keys, handlers,
                                                                    make_activity, stranger_key, defect):
    header = _defects(channel_keys, stranger_key)[defect]
    status, text = await _post(bot_client, make_activity("message", SERVICE_URL, text="hi"), header)
    assert (status, text) == (401, '{"error": "unauthorized"}')
    assert handlers.calls == []


async def test_unreachable_signing_keys_answer_503_not_401(aiohttp_client, make_runtime, channel_keys,
                                                           make_activity, handlers, unused_tcp_port):
    from aiohttp import web

    runtime = make_runtime(
        to_bot_from_channel_openid_metadata_url=f"http://127.0.0.1:{unused_tcp_port}/v1/.well-known/openid")
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    client = await aiohttp_client(app)
    status, text = await _post(client, make_activity("message", SERVICE_URL, text="hi"),
                               f"Bearer {channel_keys.token(service_url=SERVICE_URL)}")
    assert (status, text) == (503, '{"error": "unavailable"}')
    assert handlers.calls == []


async def test_body_that_is_not_an_activity_is_400(bot_client, channel_keys):
    header = f"Bearer {channel_keys.token(service_url=SERVICE_URL)}"
    assert (await _post(bot_client, {"no": "type"}, header))[0] == 400
    response = await bot_client.post("/api/messages", data="{not json", headers={
        "Authorization": header, "Content-Type": "application/json"})
    assert response.status == 400
    response = await bot_client.post("/api/messages", data="x", headers={
        "Authorization": header, "Content-Type": "text/plain"})
    assert response.status == 415


async def test_validation_runs_off_the_event_loop(bot_client, channel_keys, make_activity, monkeypatch):
    """botbuilder checks signatures (and fetches keys with blocking requests) inside its coroutine; we run that
    coroutine on our own "bot-auth" threads so the bot's event loop never blocks on it."""
    import threading

    threads: set[str] = set()
    original = jwt.decode

    def spy(*args, **kwargs):
        if kwargs.get("algorithms") == ["RS256"]:  # botbuilder's verifying decode, not our unverified peek
            threads.add(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    status, _ = await _post(bot_client, make_activity("message", SERVICE_URL, text="x"),
                            f"Bearer {channel_keys.token(service_url=SERVICE_URL)}")
    assert status == 201
    assert threads and all(name.startswith("bot-auth") for name in threads)


async def test_warm_up_prefetches_off_the_loop(make_runtime, unused_tcp_port):
    assert await make_runtime().warm_up() is True
    down = make_runtime(to_bot_from_channel_openid_metadata_url=f"http://127.0.0.1:{unused_tcp_port}/openid")
    assert await down.warm_up() is False


async def test_same_loop_metadata_server_does_not_deadlock(aiohttp_client, aiohttp_server, make_runtime,
                                                           channel_keys, make_activity, handlers):
    """botbuilder alone hangs when the OpenID metadata is served from the bot's own loop; we don't."""
    from aiohttp import web

    async def openid(request):
        return web.json_response({"issuer": "https://api.botframework.com",
                                  "jwks_uri": str(request.url.with_path("/keys"))})

    async def keys(request):
        return web.json_response(channel_keys.jwks())

    meta_app = web.Application()
    meta_app.router.add_get("/openid", openid)
    meta_app.router.add_get("/keys", keys)
    meta = await aiohttp_server(meta_app)  # on the test's (= the bot's) event loop
    runtime = make_runtime(to_bot_from_channel_openid_metadata_url=str(meta.make_url("/openid")), auth_timeout=5)
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    client = await aiohttp_client(app)
    status, _ = await _post(client, make_activity("message", SERVICE_URL, text="same loop"),
                            f"Bearer {channel_keys.token(service_url=SERVICE_URL)}")
    assert status == 201 and handlers.calls[0][1].text == "same loop"
