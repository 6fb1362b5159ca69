"""The opt-in morning summary: a durable per-user schedule in the store, sent once per local working day.

`my approvals daily on` stores a SummarySubscription (the 1:1 chat, the user's time zone from Graph's
`GET /users/{id}/mailboxSettings` -> timeZone, else `[approvals.summary] default_time_zone`, and the next due
time). `run_once(now)` (the background loop's one round, what tests call with a fake clock) sends what is due:

- A due subscription is claimed for today's local date with the store's compare-and-set before anything is sent:
  one instance wins a day, a restart finds the day taken. The price of that order: a crash between the claim and
  the send loses that morning's summary (never a duplicate).
- Only at or after `send_at` on a working day; after downtime, today's summary is sent late (once), earlier days'
  are not sent at all.
- Nothing waiting: nothing sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import replace
from typing import Any, Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot import GraphError, IncomingMessage, TeamsError
from connector.approvals.config import SummarySettings
from connector.store import Store, SummarySubscription

log = logging.getLogger(__name__)

# Outlook keeps Windows time zone names (mailboxSettings.timeZone); zoneinfo needs IANA names. The common ones
# (CLDR windowsZones, territory 001); an IANA name passes through, anything else falls back to the default.
WINDOWS_ZONES = {
    "UTC": "UTC", "Coordinated Universal Time": "UTC", "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik", "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest", "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw", "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev", "GTB Standard Time": "Europe/Bucharest", "Russian Standard Time":
    "Europe/Moscow", "Turkey Standard Time": "Europe/Istanbul", "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg", "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata", "China Standard Time": "Asia/Shanghai", "Singapore Standard Time":
    "Asia/Singapore", "Tokyo Standard Time": "Asia/Tokyo", "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney", "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York", "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver", "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles", "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu", "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo", "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina", "W. Australia Standard Time": "Australia/Perth",
}


def to_iana(name: str | None) -> str | None:
    if not name:
        return None
    candidate = WINDOWS_ZONES.get(name, name)
    try:
        ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return candidate


def next_send(after: float, zone: str, settings: SummarySettings) -> float:
    """The first `send_at` on a working day (in `zone`) strictly after `after` (epoch seconds)."""
    tz = ZoneInfo(zone)
    hour, minute = (int(p) for p in settings.send_at.split(":"))
    local = dt.datetime.fromtimestamp(after, tz)
    for days in range(0, 9):
        day = local.date() + dt.timedelta(days=days)
        if day.isoweekday() not in settings.working_days:
            continue
        at = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()
        if at > after:
            return at
    return after + 86400  # no working days configured: look again tomorrow


SendSummary = Callable[[SummarySubscription], Awaitable[str | None]]  # -> what was sent, None: nothing waits


class DailySummary:
    """Args:
        send: sends one user's summary (built by the caller from the list), None when nothing waits.
        graph: GraphClient or None (time zones).
    """

    def __init__(self, store: Store, settings: SummarySettings, *, send: SendSummary, graph: Any,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.send = send
        self.graph = graph
        self.clock = clock

    async def time_zone(self, object_id: str) -> tuple[str, str]:
        """(IANA zone, where it came from)."""
        if self.graph is not None and hasattr(self.graph, "get_mailbox_time_zone"):
            try:
                found = await self.graph.get_mailbox_time_zone(object_id)
            except GraphError as exc:
                log.info("no mailbox time zone for %s: %s", object_id, exc)
                found = None
            zone = to_iana(found)
            if zone:
                return zone, "your Outlook settings"
        return self.settings.default_time_zone, "the connector's default"

    async def turn_on(self, message: IncomingMessage) -> str:
        oid = (message.user_aad_object_id or "").lower()
        if not self.settings.enabled:
            return "The daily summary is switched off for this connector."
        if not oid:
            return "Teams did not say who you are; the daily summary cannot be set up."
        now = self.clock()
        zone, source = await self.time_zone(oid)
        old = await self.store.get_summary_subscription(oid)
        await self.store.upsert_summary_subscription(SummarySubscription(
            user_object_id=oid, enabled=True, service_url=message.service_url,
            conversation_id=message.conversation_id, tenant_id=message.tenant_id, user_name=message.user_name,
            time_zone=zone, next_due_at=next_send(now, zone, self.settings),
            last_sent_day=old.last_sent_day if old else None, updated_at=now))
        days = "working days" if self.settings.working_days == [1, 2, 3, 4, 5] else "the configured days"
        return (f"Daily summary on: on {days} at {self.settings.send_at} ({zone}, from {source}) I send what "
                "waits for you here, when something does.")

    async def turn_off(self, message: IncomingMessage) -> str:
        oid = (message.user_aad_object_id or "").lower()
        old = await self.store.get_summary_subscription(oid) if oid else None
        if old is None or not old.enabled:
            return "The daily summary was not on."
        await self.store.upsert_summary_subscription(replace(old, enabled=False, updated_at=self.clock()))
        return "Daily summary off."

    async def run_once(self, now: float) -> list[str]:
        lines: list[str] = []
        for sub in await self.store.list_due_summaries(now=now, limit=200):
            try:
                zone = ZoneInfo(sub.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                zone = ZoneInfo(self.settings.default_time_zone)
            local = dt.datetime.fromtimestamp(now, zone)
            hour, minute = (int(p) for p in self.settings.send_at.split(":"))
            today = local.date().isoformat()
            following = next_send(now, str(zone), self.settings)
            on_time = local.isoweekday() in self.settings.working_days and (local.hour, local.minute) >= (hour, minute)
            if not on_time:  # not a working day here, or an odd schedule: move it on without sending
                current = await self.store.get_summary_subscription(sub.user_object_id)
                if current is not None and current.enabled and current.next_due_at <= now:
                    await self.store.upsert_summary_subscription(replace(current, next_due_at=following,
                                                                         updated_at=now))
                lines.append(f"{sub.user_object_id}: not a sending time here, next at {following:.0f}")
                continue
            won = await self.store.claim_summary_day(sub.user_object_id, day=today, next_due_at=following, now=now)
            if won is None:
                continue  # another instance (or an earlier run) took today
            try:
                sent = await self.send(won)
            except TeamsError as exc:
                lines.append(f"{sub.user_object_id}: summary for {today} not sent: {exc}")
                continue
            lines.append(f"{sub.user_object_id}: {today} " + (sent or "nothing waits: not sent"))
        return lines

    async def run_background(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                for line in await self.run_once(self.clock()):
                    log.info("my approvals summary: %s", line)
            except Exception:  # noqa: BLE001 - one bad round must not end the loop
                log.exception("my approvals summary round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.tick)
            except asyncio.TimeoutError:
                pass
