"""Inbound activity builders: the JSON Teams sends a bot (teams.md §1.1, §2.1, §2.2). Pure functions, no I/O.

Shapes follow the documented examples: install/uninstall (team and personal scope), conversationUpdate events,
a channel message @mentioning the bot, Action.Submit (`message` with `value` + `replyToId`) and Action.Execute
(`invoke` named `adaptiveCard/action`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sandbox.people import Person
from sandbox.teams.world import Channel, Team, World, chat_id, user_mri


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from(person: Person) -> dict:
    return {"id": user_mri(person), "name": person.name, "aadObjectId": person.object_id}


def _base(world: World, service_url: str, kind: str, person: Person | None, conversation: dict,
          channel_data: dict) -> dict:
    return {"type": kind, "id": uuid.uuid4().hex, "timestamp": _now_iso(), "localTimestamp": _now_iso(),
            "channelId": "msteams", "serviceUrl": service_url,
            "from": _from(person) if person else {"id": world.bot_id},
            "recipient": {"id": world.bot_id, "name": world.bot_name},
            "conversation": conversation, "channelData": channel_data, "locale": "en-US"}


def _team_channel(world: World, team: Team, channel: Channel) -> tuple[dict, dict]:
    conversation = {"isGroup": True, "conversationType": "channel", "tenantId": world.tenant_id,
                    "id": channel.id, "name": channel.name}
    data = {"team": {"id": team.id, "name": team.name, "aadGroupId": team.aad_group_id},
            "channel": {"id": channel.id, "name": channel.display_name},
            "tenant": {"id": world.tenant_id}}
    return conversation, data


def _personal(world: World, person: Person) -> tuple[dict, dict]:
    return ({"conversationType": "personal", "tenantId": world.tenant_id, "id": chat_id(person, world.bot_app_id)},
            {"tenant": {"id": world.tenant_id}})


def team_install(world: World, service_url: str, team: Team, by: Person, *, remove: bool = False) -> list[dict]:
    """`installationUpdate` add/remove + `conversationUpdate` teamMemberAdded/Removed for the bot."""
    general = team.channels[team.id]
    conv, data = _team_channel(world, team, general)
    data = dict(data, settings={"selectedChannel": {"id": general.id}}, source={"name": "message"})
    install = _base(world, service_url, "installationUpdate", by, conv, data)
    install["action"] = "remove" if remove else "add"
    update_data = dict(data, eventType="teamMemberRemoved" if remove else "teamMemberAdded")
    update = _base(world, service_url, "conversationUpdate", by, conv, update_data)
    update["membersRemoved" if remove else "membersAdded"] = [{"id": world.bot_id}]
    return [install, update]


def personal_install(world: World, service_url: str, person: Person, *, remove: bool = False) -> list[dict]:
    conv, data = _personal(world, person)
    install = _base(world, service_url, "installationUpdate", person, conv, data)
    install["action"] = "remove" if remove else "add"
    update = _base(world, service_url, "conversationUpdate", person, conv, data)
    update["membersRemoved" if remove else "membersAdded"] = [{"id": world.bot_id}]
    return [install, update]


def channel_event(world: World, service_url: str, team: Team, channel: Channel, event_type: str,
                  by: Person) -> dict:
    """`conversationUpdate` channelCreated / channelRenamed / channelDeleted (channelData.channel = the channel)."""
    conv, data = _team_channel(world, team, team.channels[team.id])
    data = dict(data, eventType=event_type, channel={"id": channel.id, "name": channel.display_name})
    return _base(world, service_url, "conversationUpdate", by, conv, data)


def channel_message(world: World, service_url: str, team: Team, channel: Channel, by: Person, text: str, *,
                    mention_bot: bool = True, conversation_id: str | None = None, message_id: str | None = None,
                    ) -> dict:
    """A user's channel message, by default starting with `<at>Bot</at>` (bots only see @mentions)."""
    conv, data = _team_channel(world, team, channel)
    if conversation_id:
        conv["id"] = conversation_id
    act = _base(world, service_url, "message", by, conv, data)
    entities: list[dict[str, Any]] = [
        {"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web", "timezone": "UTC"}]
    if mention_bot:
        at = f"<at>{world.bot_name}</at>"
        text = f"{at} {text}"
        entities.insert(0, {"type": "mention", "text": at, "mentioned": {"id": world.bot_id, "name": world.bot_name}})
    act.update(text=text, textFormat="plain", entities=entities)
    if message_id:
        act["id"] = message_id
    return act


def personal_message(world: World, service_url: str, by: Person, text: str) -> dict:
    """A user's message to the bot in their 1:1 chat (no @mention needed there)."""
    conv, data = _personal(world, by)
    act = _base(world, service_url, "message", by, conv, data)
    act.update(text=text, textFormat="plain",
               entities=[{"type": "clientInfo", "locale": "en-US", "platform": "Web", "timezone": "UTC"}])
    return act


def _conversation_for(world: World, conversation_id: str, person: Person) -> tuple[dict, dict]:
    if conversation_id.startswith("a:"):
        return _personal(world, person)
    found = world.channel(conversation_id.split(";", 1)[0])
    if not found:
        return ({"id": conversation_id, "tenantId": world.tenant_id}, {"tenant": {"id": world.tenant_id}})
    conv, data = _team_channel(world, *found)
    conv["id"] = conversation_id
    return conv, data


def submit(world: World, service_url: str, conversation_id: str, reply_to_id: str, by: Person,
           value: dict) -> dict:
    """Action.Submit: a `message` with no text, `value` = data merged with inputs, `replyToId` = the card's id."""
    conv, data = _conversation_for(world, conversation_id, by)
    act = _base(world, service_url, "message", by, conv, data)
    act.update(value=value, replyToId=reply_to_id, text="")
    act["channelData"] = dict(act["channelData"], source={"name": "message"}, legacy={"replyToId": reply_to_id})
    return act


def execute(world: World, service_url: str, conversation_id: str, reply_to_id: str, by: Person, *,
            verb: str, data: dict, action_id: str | None = None, trigger: str = "manual") -> dict:
    """Action.Execute: `invoke` named `adaptiveCard/action` (Universal Actions)."""
    conv, cdata = _conversation_for(world, conversation_id, by)
    act = _base(world, service_url, "invoke", by, conv, cdata)
    action = {"type": "Action.Execute", "verb": verb, "data": data}
    if action_id:
        action["id"] = action_id
    act.update(name="adaptiveCard/action", replyToId=reply_to_id, value={"action": action, "trigger": trigger})
    act["channelData"] = dict(act["channelData"], source={"name": "message"})
    return act
