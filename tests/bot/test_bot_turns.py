"""Inbound activities through `POST /api/messages` (real auth) into our handlers, and the answers Teams gets.

The recording Connector plays the Bot Framework service for the calls a turn makes (channel list, card update).
"""

from __future__ import annotations

import json

import pytest

TEAM = "19:team@thread.tacv2"
CHANNEL = "19:approvals@thread.tacv2"
BOT_ID = "28:00000000-0000-0000-0000-00000000b07"  # conftest's APP_ID
TENANT = "11111111-1111-1111-1111-111111111111"  # conftest's TENANT: the bot serves only this tenant


@pytest.fixture
def send(bot_client, channel_keys):
    async def send(body: dict) -> tuple[int, object]:
        header = f"Bearer {channel_keys.token(service_url=body['serviceUrl'])}"
        response = await bot_client.post("/api/messages", json=body, headers={"Authorization": header})
        text = await response.text()
        return response.status, (json.loads(text) if text and response.content_type == "application/json" else text)

    return send


async def test_team_install_translates_and_lists_channels(send, connector, handlers, make_activity, token):
    body = make_activity("installationUpdate", connector.url, action="add")
    status, _ = await send(body)
    assert status == 201
    [(name, event)] = handlers.calls
    assert name == "install"
    assert (event.action, event.scope, event.source) == ("add", "team", "installationUpdate")
    assert (event.tenant_id, event.team_id, event.aad_group_id, event.team_name) == (
        "11111111-1111-1111-1111-111111111111", TEAM, "group-1", "Finance")
    assert (event.channel_id, event.channel_name, event.service_url) == (CHANNEL, "Approvals", connector.url)
    assert event.bot_id.startswith("28:")
    assert dict(event.channels) == {TEAM: "General", CHANNEL: "Approvals"}
    [listing] = connector.requests
    assert (listing["method"], listing["path"]) == ("GET", f"/v3/teams/{TEAM}/conversations")
    assert listing["auth"] == f"Bearer {token.current}"


async def test_team_install_survives_a_failing_channel_list(send, connector, handlers, make_activity):
    connector.answer(503, {"error": {"code": "ServiceUnavailable", "message": "later"}})
    status, _ = await send(make_activity("installationUpdate", connector.url, action="add"))
    assert status == 201
    [(name, event)] = handlers.calls
    assert name == "install" and dict(event.channels) == {}


async def test_bot_added_to_team_by_conversation_update(send, connector, handlers, make_activity):
    body = make_activity("conversationUpdate", connector.url, membersAdded=[{"id": BOT_ID}])
    body["channelData"]["eventType"] = "teamMemberAdded"
    assert (await send(body))[0] == 201
    [(name, event)] = handlers.calls
    assert (name, event.source, event.scope, event.team_id) == ("install", "conversationUpdate", "team", TEAM)


async def test_uninstall_and_bot_removed(send, connector, handlers, make_activity):
    await send(make_activity("installationUpdate", connector.url, action="remove"))
    body = make_activity("conversationUpdate", connector.url,
                         membersRemoved=[{"id": BOT_ID}])
    body["channelData"]["eventType"] = "teamMemberRemoved"
    await send(body)
    assert [(n, e.action, e.team_id) for n, e in handlers.calls] == [("uninstall", "remove", TEAM)] * 2
    assert connector.requests == []  # no channel listing on the way out


async def test_upgrade_is_an_install_not_an_uninstall(send, connector, handlers, make_activity):
    await send(make_activity("installationUpdate", connector.url, action="remove-upgrade"))
    assert [(n, e.action, e.installed) for n, e in handlers.calls] == [("install", "remove-upgrade", True)]


async def test_personal_install_carries_the_user(send, connector, handlers, make_activity):
    body = make_activity("installationUpdate", connector.url, action="add",
                         conversation={"conversationType": "personal", "tenantId": TENANT, "id": "a:1xyz"},
                         channelData={"tenant": {"id": TENANT}})
    assert (await send(body))[0] == 201
    [(name, event)] = handlers.calls
    assert (event.scope, event.conversation_id, event.user_aad_object_id, event.user_id, event.tenant_id) == (
        "personal", "a:1xyz", "aad-alex", "29:user", TENANT)
    assert event.team_id is None and connector.requests == []


@pytest.mark.parametrize("kind", ["channelCreated", "channelRenamed", "channelDeleted", "teamDeleted"])
async def test_channel_events(send, connector, handlers, make_activity, kind):
    body = make_activity("conversationUpdate", connector.url)
    body["channelData"]["eventType"] = kind
    body["channelData"]["channel"] = {"id": "19:new@thread.tacv2", "name": "New one"}
    assert (await send(body))[0] == 201
    [(name, event)] = handlers.calls
    assert (name, event.kind, event.channel_id, event.channel_name, event.team_id, event.aad_group_id) == (
        "channel", kind, "19:new@thread.tacv2", "New one", TEAM, "group-1")


def _submit(make_activity, url):
    return make_activity("message", url, value={"action": "approve", "workItemId": "W-1", "comment": "ok"},
                         replyToId="1575667808184",
                         conversation={"isGroup": True, "conversationType": "channel", "tenantId": "t",
                                       "id": f"{CHANNEL};messageid=1575667808184"})


async def test_action_submit_reaches_on_submit(send, connector, handlers, make_activity):
    assert (await send(_submit(make_activity, connector.url)))[0] == 201
    [(name, submit)] = handlers.calls
    assert name == "submit"
    assert dict(submit.value) == {"action": "approve", "workItemId": "W-1", "comment": "ok"}
    assert (submit.reply_to_id, submit.user_aad_object_id, submit.user_id, submit.user_name) == (
        "1575667808184", "aad-alex", "29:user", "Alex Wilber")
    assert (submit.conversation_id, submit.team_id, submit.channel_id) == (
        f"{CHANNEL};messageid=1575667808184", TEAM, CHANNEL)
    assert connector.requests == []  # None: nothing to update


async def test_action_submit_card_result_updates_the_card_in_place(send, connector, handlers, make_activity, token):
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "<at>Alex</at> approved"}],
            "msteams": {"entities": [{"type": "mention", "text": "<at>Alex</at>",
                                      "mentioned": {"id": "aad-alex", "name": "Alex"}}]}}
    handlers.submit_result = card
    assert (await send(_submit(make_activity, connector.url)))[0] == 201
    [put] = connector.requests
    assert put["method"] == "PUT"
    assert put["path"] == f"/v3/conversations/{CHANNEL};messageid=1575667808184/activities/1575667808184"
    assert put["auth"] == f"Bearer {token.current}"
    assert put["json"]["attachments"] == [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]


async def test_action_submit_text_result_replies_in_the_thread(send, connector, handlers, make_activity):
    handlers.submit_result = "Approved."
    assert (await send(_submit(make_activity, connector.url)))[0] == 201
    [post] = connector.requests
    assert post["method"] == "POST" and post["json"]["text"] == "Approved."
    assert post["path"].startswith(f"/v3/conversations/{CHANNEL};messageid=1575667808184/activities")


def _execute(make_activity, url, action_type="Action.Execute"):
    return make_activity("invoke", url, name="adaptiveCard/action", replyToId="m-42",
                         value={"action": {"type": action_type, "id": "approve-btn", "verb": "approve",
                                           "data": {"workItemId": "W-1"}}, "trigger": "manual"})


async def test_action_execute_answers_our_invoke_response(send, connector, handlers, make_activity):
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Approved"}]}
    handlers.execute_result = card
    status, body = await send(_execute(make_activity, connector.url))
    assert status == 200
    assert body == {"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": card}
    [(name, execute)] = handlers.calls
    assert (name, execute.verb, dict(execute.data), execute.action_id, execute.trigger, execute.reply_to_id) == (
        "execute", "approve", {"workItemId": "W-1"}, "approve-btn", "manual", "m-42")
    assert execute.user_aad_object_id == "aad-alex"


async def test_action_execute_text_result(send, connector, handlers, make_activity):
    handlers.execute_result = "Already decided."
    status, body = await send(_execute(make_activity, connector.url))
    assert (status, body) == (200, {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                                    "value": "Already decided."})


async def test_other_action_type_in_an_execute_invoke_is_400(send, connector, handlers, make_activity):
    status, body = await send(_execute(make_activity, connector.url, action_type="Action.Submit"))
    assert status == 400 and body["type"] == "application/vnd.microsoft.error"
    assert handlers.calls == []


async def test_failing_execute_answers_an_error_card_without_the_exception_text(send, connector, handlers,
                                                                                 make_activity, caplog):
    handlers.fail_with = RuntimeError("database password is hunter2")
    status, body = await send(_execute(make_activity, connector.url))
    assert status == 200
    assert body["statusCode"] == 500 and body["type"] == "application/vnd.microsoft.error"
    assert "hunter2" not in json.dumps(body)
    assert connector.requests == []  # nothing posted to Teams
    assert "hunter2" in caplog.text  # but logged for us


async def test_failing_submit_is_500_without_detail_and_posts_nothing(send, connector, handlers, make_activity):
    handlers.fail_with = RuntimeError("secret detail")
    status, body = await send(_submit(make_activity, connector.url))
    assert (status, body) == (500, {"error": "internal"})
    assert connector.requests == []


@pytest.mark.parametrize("result", ["Hello.", {"type": "AdaptiveCard", "version": "1.5", "body": []}])
async def test_connector_404_while_answering_a_message_is_logged_not_500(send, connector, handlers, make_activity,
                                                                        caplog, result):
    # the conversation was deleted (or the bot removed) between Teams sending the message and our reply
    handlers.message_result = result
    connector.answer(404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}})
    body = make_activity("message", connector.url, text="hi")
    status, answer = await send(body)
    assert status == 201, answer
    [(name, _)] = handlers.calls
    assert name == "message"
    [post] = connector.requests
    assert post["method"] == "POST" and "/activities" in post["path"]
    assert "could not reply to the message in the turn (ErrorResponseException, HTTP 404)" in caplog.text
    assert "bot turn failed" not in caplog.text


async def test_connector_404_while_updating_a_pressed_card_is_logged_not_500(send, connector, handlers,
                                                                            make_activity, caplog):
    handlers.submit_result = {"type": "AdaptiveCard", "version": "1.5", "body": []}
    connector.answer(404, {"error": {"code": "ConversationNotFound", "message": "Conversation not found."}})
    status, _ = await send(_submit(make_activity, connector.url))
    assert status == 201
    assert [r["method"] for r in connector.requests] == ["PUT"]
    assert "HTTP 404" in caplog.text
