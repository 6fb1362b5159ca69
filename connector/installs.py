"""Keeps the record of where the Teams app lives: teams with their channels, personal and group chats.

The bot calls these handlers for install, uninstall and channel events; routes resolve team and channel names
against what is recorded here (connector/routes.py). Teams sends two activities for one team install, so every
write is an idempotent upsert.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import AbstractSet, Awaitable, Callable

from bot import ChannelEvent, InstallEvent
from connector.store import Install, Store

log = logging.getLogger(__name__)


def install_id(scope: str, *, team_id: str | None, user_aad_object_id: str | None,
               conversation_id: str | None) -> str:
    if scope == "team" and team_id:
        return f"team:{team_id}"
    if scope == "personal" and user_aad_object_id:
        return f"personal:{user_aad_object_id.lower()}"
    return f"chat:{conversation_id}"


class InstallRecorder:
    """Args:
        tenants: the tenants the bot serves (lower case); events from any other tenant are not recorded. The bot
            already refuses their activities (403); this is the second lock. None = any tenant.
    """

    def __init__(self, store: Store, clock: Callable[[], float],
                 on_change: Callable[[Install], Awaitable[None]] | None = None, *,
                 tenants: AbstractSet[str] | None = None) -> None:
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._tenants = frozenset(t.lower() for t in tenants) if tenants else None

    def _foreign(self, event: InstallEvent | ChannelEvent) -> bool:
        if self._tenants is None or (event.tenant_id or "").lower() in self._tenants:
            return False
        log.warning("not recording %s from tenant %s: the bot does not serve that tenant",
                    type(event).__name__, event.tenant_id or "(none)")
        return True

    async def on_install(self, event: InstallEvent) -> None:
        if self._foreign(event):
            return
        iid = install_id(event.scope, team_id=event.team_id, user_aad_object_id=event.user_aad_object_id,
                         conversation_id=event.conversation_id)
        now = self._clock()
        old = await self._store.get_install(iid)
        channels = dict(old.channels) if old else {}
        channels.update(event.channels)
        if event.scope == "team" and event.team_id and event.team_id not in channels:
            channels[event.team_id] = "General"  # the General channel's id is the team's id
        if event.channel_id and event.channel_name:
            channels[event.channel_id] = event.channel_name
        install = Install(
            id=iid,
            scope=event.scope,
            tenant_id=event.tenant_id,
            service_url=event.service_url,
            bot_id=event.bot_id,
            team_id=event.team_id or (old.team_id if old else None),
            aad_group_id=event.aad_group_id or (old.aad_group_id if old else None),
            team_name=event.team_name or (old.team_name if old else None),
            channels=channels,
            conversation_id=event.conversation_id if event.scope != "team" else (old.conversation_id if old else None),
            user_aad_object_id=event.user_aad_object_id,
            active=True,
            installed_at=old.installed_at if old and old.active else now,
            updated_at=now,
        )
        await self._store.upsert_install(install)
        log.info("installed in %s %s (%d channel(s))", install.scope, install.team_name or iid, len(channels))
        if self._on_change:
            await self._on_change(install)

    async def on_uninstall(self, event: InstallEvent) -> None:
        if self._foreign(event):
            return
        iid = install_id(event.scope, team_id=event.team_id, user_aad_object_id=event.user_aad_object_id,
                         conversation_id=event.conversation_id)
        old = await self._store.get_install(iid)
        if old is None:
            return
        await self._store.upsert_install(replace(old, active=False, updated_at=self._clock()))
        log.info("uninstalled from %s %s", old.scope, old.team_name or iid)

    async def on_channel_event(self, event: ChannelEvent) -> None:
        if not event.team_id or self._foreign(event):
            return
        iid = f"team:{event.team_id}"
        old = await self._store.get_install(iid)
        if old is None:
            return
        channels = dict(old.channels)
        active = old.active
        if event.kind in ("channelDeleted",) and event.channel_id:
            channels.pop(event.channel_id, None)
        elif event.kind in ("channelCreated", "channelRenamed", "channelRestored") and event.channel_id:
            channels[event.channel_id] = event.channel_name or channels.get(event.channel_id, event.channel_id)
        elif event.kind in ("teamDeleted", "teamHardDeleted"):
            active = False
        team_name = event.team_name if event.kind == "teamRenamed" and event.team_name else old.team_name
        await self._store.upsert_install(replace(old, channels=channels, active=active, team_name=team_name,
                                                 updated_at=self._clock()))
