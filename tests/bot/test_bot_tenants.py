"""One tenant only: activities from a tenant the bot does not serve are refused (403, JSON) before any handler."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from bot import BotSettings
from tests.bot.conftest import APP_ID, TENANT

OTHER = "22222222-2222-2222-2222-222222222222"
PARTNER = "33333333-3333-3333-3333-333333333333"


def _tenant(body: dict, tenant: str | None) -> dict:
    body["channelData"]["tenant"] = {"id": tenant} if tenant else {}
    body["conversation"].pop("tenantId", None)
    if tenant:
        body["conversation"]["tenantId"] = tenant
    return body


async def _post(client, channel_keys, body: dict):
    header = f"Bearer {channel_keys.token(service_url=body['serviceUrl'])}"
    response = await client.post("/api/messages", json=body, headers={"Authorization": header})
    return response.status, await response.json() if response.content_type == "application/json" else None


@pytest.mark.parametrize("kind,fields", [
    ("installationUpdate", {"action": "add"}),
    ("message", {"text": "hi"}),
    ("message", {"value": {"action": "approve", "workItemId": "W-1"}, "replyToId": "m-1"}),
    ("invoke", {"name": "adaptiveCard/action",
                "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {}}}}),
])
async def test_activity_from_another_tenant_is_403_and_reaches_no_handler(bot_client, channel_keys, connector,
                                                                          handlers, make_activity, caplog,
                                                                          kind, fields):
    caplog.set_level(logging.WARNING)
    body = _tenant(make_activity(kind, connector.url, **fields), OTHER)
    token = channel_keys.token(service_url=body["serviceUrl"])
    status, answer = await _post(bot_client, channel_keys, body)
    assert status == 403
    assert answer == {"error": "tenant_not_allowed", "detail": f"this bot does not serve tenant '{OTHER}'"}
    assert handlers.calls == []
    assert connector.requests == []  # not even the channel list of an install
    assert f"tenant {OTHER} is not one this bot serves" in caplog.text
    assert token not in caplog.text and token.split(".")[1] not in caplog.text


async def test_activity_naming_no_tenant_is_403(bot_client, channel_keys, connector, handlers, make_activity):
    body = _tenant(make_activity("installationUpdate", connector.url, action="add"), None)
    status, answer = await _post(bot_client, channel_keys, body)
    assert (status, answer["error"]) == (403, "tenant_not_allowed")
    assert "names no tenant" in answer["detail"]
    assert handlers.calls == []


async def test_home_tenant_in_any_case_and_allowed_tenants_are_accepted(aiohttp_client, make_runtime,
                                                                        channel_keys, connector, handlers,
                                                                        make_activity):
    runtime = make_runtime(allowed_tenants=(PARTNER,))
    app = web.Application()
    app.router.add_post("/api/messages", runtime.messages_handler())
    client = await aiohttp_client(app)
    for tenant in (TENANT.upper(), PARTNER):
        status, _ = await _post(client, channel_keys,
                                _tenant(make_activity("message", connector.url, text="hi"), tenant))
        assert status == 201
    assert [name for name, _ in handlers.calls] == ["message", "message"]
    status, _ = await _post(client, channel_keys, _tenant(make_activity("message", connector.url, text="x"), OTHER))
    assert status == 403


async def test_bad_token_from_another_tenant_is_still_401_first(bot_client, channel_keys, connector,
                                                                make_activity):
    body = _tenant(make_activity("message", connector.url, text="hi"), OTHER)
    token = channel_keys.token(service_url=body["serviceUrl"], audience="someone-else")
    response = await bot_client.post("/api/messages", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401


def test_settings_tenants():
    assert BotSettings(app_id=APP_ID, tenant_id=TENANT.upper(), allowed_tenants=[PARTNER]).tenants == {
        TENANT, PARTNER}
    assert BotSettings(app_id=APP_ID, app_type="MultiTenant").tenants == frozenset()
    with pytest.raises(ValueError, match="allowed_tenants"):
        BotSettings(app_id=APP_ID, tenant_id=TENANT, allowed_tenants=PARTNER)
