"""What the Teams stand-in knows: teams, channels, app installs, members, threads, messages, 1:1 chats.

Plain in-memory data with the lookups the Connector routes and the page need. No HTTP, no auth, no clock: callers
pass times in. Ids follow Teams' shapes: team/channel `19:<hex>@thread.tacv2` (General's id == the team's id),
aadGroupId a GUID, users `29:<opaque>`, bot `28:<appId>`, thread `<channel>;messageid=<id>`, 1:1 chat `a:<opaque>`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.people import PEOPLE, Person

CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def _hex(seed: str, n: int = 32) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def channel_id_for(seed: str) -> str:
    return f"19:{_hex(seed)}@thread.tacv2"


def user_mri(person: Person) -> str:
    """The Teams (`29:`) id of a sandbox person: stable, opaque-looking."""
    return "29:1" + _hex("mri:" + person.object_id, 40)


def chat_id(person: Person, bot_app_id: str) -> str:
    """The bot↔user 1:1 conversation id (`a:` ids are opaque in Teams)."""
    return "a:1" + _hex(f"chat:{bot_app_id}:{person.object_id}", 48)


def thread_key(conversation_id: str) -> str:
    """Rate-limit 'thread' of a conversation: the channel for channel reply chains, else the conversation."""
    return conversation_id.split(";", 1)[0]


@dataclass
class Channel:
    id: str
    name: str | None  # None for General, as GET /v3/teams/{id}/conversations reports it
    deleted: bool = False

    @property
    def display_name(self) -> str:
        return self.name or "General"


@dataclass
class Team:
    id: str
    name: str
    aad_group_id: str
    channels: dict[str, Channel]
    member_ids: list[str]  # Entra object ids
    installed: bool = False

    def live_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if not c.deleted]


@dataclass
class Message:
    id: str
    conversation_id: str
    activity: dict  # current version (after updates)
    created: float
    sender: str  # "bot" or a user's object id
    reply_to: str | None = None
    versions: int = 1
    deleted: bool = False

    def cards(self) -> list[dict]:
        return [a.get("content") for a in self.activity.get("attachments") or []
                if a.get("contentType") == CARD_TYPE]


@dataclass
class Thread:
    """A channel reply chain (root + replies) or a 1:1 chat (messages in order)."""

    id: str
    kind: str  # "channel" | "personal"
    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None  # personal: the user's object id
    messages: list[Message] = field(default_factory=list)


@dataclass
class World:
    bot_app_id: str
    tenant_id: str
    bot_name: str = "ML Connector"
    people: tuple[Person, ...] = PEOPLE
    teams: dict[str, Team] = field(default_factory=dict)
    personal_installs: set[str] = field(default_factory=set)  # object ids
    blocked_users: set[str] = field(default_factory=set)  # object ids that blocked the bot
    threads: dict[str, Thread] = field(default_factory=dict)
    # Action.Execute responses shown to one viewer only: (viewer oid, message id) -> card
    viewer_cards: dict[tuple[str, str], dict] = field(default_factory=dict)
    # Universal Actions sign-ins the client went through: {user, message_id, how: silent|button|refused, text}
    signins: list[dict] = field(default_factory=list)
    # called with (team, channel id, root id, message id) when a user types in a channel (Graph notifications)
    message_listeners: list[Any] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def bot_id(self) -> str:
        return f"28:{self.bot_app_id}"

    def next_message_id(self) -> str:
        # Teams message ids are epoch milliseconds; keep them strictly increasing and readable.
        return str(1764150000000 + next(self._ids))

    # --- people -------------------------------------------------------------------------------------------------
    def person(self, key: str, *, teams_ids_only: bool = False) -> Person | None:
        """Find a person by object id, `29:` id or UPN/mail (case-insensitive); also by F&O user id unless
        `teams_ids_only` (the Connector takes only ids Teams knows)."""
        k = key.strip().lower()
        for p in self.people:
            ids = [p.object_id.lower(), user_mri(p).lower(), p.upn.lower()]
            if k in ids or (not teams_ids_only and k == p.fo_user_id.lower()):
                return p
        return None

    def account(self, person: Person) -> dict:
        """TeamsChannelAccount JSON of a person (what the members routes return)."""
        given, _, surname = person.name.partition(" ")
        return {"id": user_mri(person), "name": person.name, "aadObjectId": person.object_id,
                "givenName": given, "surname": surname, "email": person.upn, "userPrincipalName": person.upn,
                "tenantId": self.tenant_id, "userRole": "user"}

    # --- teams and channels -------------------------------------------------------------------------------------
    def add_team(self, name: str, channels: list[str], members: list[str] | None = None, *,
                 installed: bool = False) -> Team:
        tid = channel_id_for("team:" + name)
        chans = {tid: Channel(tid, None)}
        for cname in channels:
            cid = channel_id_for(f"channel:{name}:{cname}")
            chans[cid] = Channel(cid, cname)
        ids = [p.object_id for p in self.people] if members is None else \
            [p.object_id for p in map(self.person, members) if p]
        team = Team(tid, name, str(uuid.UUID(_hex("group:" + name))), chans, ids, installed)
        self.teams[tid] = team
        return team

    def team(self, key: str) -> Team | None:
        """By `19:` id, aadGroupId or name (case-insensitive)."""
        k = key.lower()
        return next((t for t in self.teams.values() if k in (t.id.lower(), t.aad_group_id, t.name.lower())), None)

    def channel(self, channel_id: str) -> tuple[Team, Channel] | None:
        for t in self.teams.values():
            if channel_id in t.channels:
                return t, t.channels[channel_id]
        return None

    def find_channel(self, team: Team, key: str | None) -> Channel | None:
        if not key:
            return team.channels[team.id]
        k = key.lower()
        return next((c for c in team.channels.values()
                     if not c.deleted and k in (c.id.lower(), c.display_name.lower())), None)

    def add_channel(self, team: Team, name: str) -> Channel:
        cid = channel_id_for(f"channel:{team.name}:{name}:{len(team.channels)}")
        team.channels[cid] = Channel(cid, name)
        return team.channels[cid]

    # --- threads and messages -----------------------------------------------------------------------------------
    def new_channel_thread(self, team: Team, channel: Channel, root_id: str) -> Thread:
        th = Thread(f"{channel.id};messageid={root_id}", "channel", team.id, channel.id)
        self.threads[th.id] = th
        return th

    def personal_thread(self, person: Person) -> Thread:
        cid = chat_id(person, self.bot_app_id)
        if cid not in self.threads:
            self.threads[cid] = Thread(cid, "personal", user_id=person.object_id)
        return self.threads[cid]

    def person_for_chat(self, conversation_id: str) -> Person | None:
        return next((p for p in self.people if chat_id(p, self.bot_app_id) == conversation_id), None)

    def add_message(self, thread: Thread, activity: dict, now: float, *, sender: str = "bot",
                    message_id: str | None = None, reply_to: str | None = None) -> Message:
        stored = copy.deepcopy(activity)
        msg = Message(message_id or self.next_message_id(), thread.id, stored, now, sender, reply_to)
        stored["id"] = msg.id
        thread.messages.append(msg)
        return msg

    def message(self, conversation_id: str, activity_id: str) -> Message | None:
        th = self.threads.get(conversation_id)
        candidates = th.messages if th else []
        if not th:  # a message id is unique: also look through the channel's other reply chains
            candidates = [m for t in self.threads.values() if thread_key(t.id) == thread_key(conversation_id)
                          for m in t.messages]
        return next((m for m in candidates if m.id == activity_id and not m.deleted), None)

    def snapshot(self) -> dict:
        """Everything the page shows, as JSON."""
        teams = []
        for t in self.teams.values():
            chans = []
            for c in t.live_channels():
                threads = [self._thread_json(th) for th in self.threads.values() if th.channel_id == c.id]
                chans.append({"id": c.id, "name": c.display_name, "threads": threads})
            teams.append({"id": t.id, "name": t.name, "aadGroupId": t.aad_group_id, "installed": t.installed,
                          "channels": chans})
        chats = [dict(self._thread_json(th), user=th.user_id) for th in self.threads.values()
                 if th.kind == "personal"]
        people = [{"id": p.object_id, "name": p.name, "upn": p.upn, "mri": user_mri(p),
                   "personalInstall": p.object_id in self.personal_installs} for p in self.people]
        viewer_cards: dict[str, dict[str, dict]] = {}
        for (viewer, mid), card in self.viewer_cards.items():
            viewer_cards.setdefault(viewer, {})[mid] = card
        return {"bot": {"id": self.bot_id, "name": self.bot_name}, "tenantId": self.tenant_id,
                "teams": teams, "chats": chats, "people": people, "viewerCards": viewer_cards,
                "signins": list(self.signins)}

    def _thread_json(self, th: Thread) -> dict:
        msgs = [{"id": m.id, "sender": m.sender, "text": m.activity.get("text"), "cards": m.cards(),
                 "entities": m.activity.get("entities") or [], "value": m.activity.get("value"),
                 "edited": m.versions > 1, "versions": m.versions, "created": m.created, "replyTo": m.reply_to}
                for m in th.messages if not m.deleted]
        return {"id": th.id, "kind": th.kind, "messages": msgs}


def default_world(bot_app_id: str, tenant_id: str, bot_name: str = "ML Connector") -> World:
    """The demo organisation: finance and procurement teams (US), a procurement team (DE) and an IT team."""
    w = World(bot_app_id, tenant_id, bot_name)
    w.add_team("Finance Operations", ["Purchasing", "Accounts Payable", "Approvals", "Payments"])
    w.add_team("Procurement", ["Purchase orders", "Invoices", "Payments", "Approvals"],
               ["adele", "alex", "megan", "lidia", "lynne", "nestor", "patti", "diego"])
    w.add_team("Einkauf DE", ["Bestellungen", "Rechnungen"],
               ["johanna", "jurgen", "adele", "megan", "patti"])
    w.add_team("IT Helpdesk", ["Alerts"], ["patti", "diego", "isaiah"])
    return w
