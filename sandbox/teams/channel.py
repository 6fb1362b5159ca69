"""The channel → bot direction: sign an activity (keys.py) and POST it to the bot's messaging endpoint.

Knows the wire (headers, JWT, timeouts) and records what it sent and what the bot answered; it does not build
activities (activities.py) or decide state changes (emit.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field

import aiohttp

from sandbox.teams.keys import ChannelKeys


@dataclass
class Delivery:
    """What happened to one inbound activity."""

    activity: dict
    status: int | None  # None: the bot could not be reached
    body: object = None  # parsed JSON if the bot answered JSON, else text
    defect: str | None = None
    error: str | None = None

    def as_json(self) -> dict:
        return {"status": self.status, "body": self.body, "defect": self.defect, "error": self.error,
                "activity": self.activity}


@dataclass
class Channel:
    keys: ChannelKeys
    session: aiohttp.ClientSession
    bot_app_id: str
    service_url: str
    bot_endpoint: str | None = None
    clock: Callable[[], float] = time.monotonic
    timeout: float = 30.0
    ssl: Any = None  # ssl.SSLContext trusting the sandbox CA when the bot endpoint is https
    sent: list[dict] = field(default_factory=list)  # inbound log (GET /_sandbox/teams/log → "inbound")

    async def send(self, activity: dict, *, defect: str | None = None) -> Delivery:
        """Sign and POST one activity; never raises for transport errors (they are reported in the Delivery)."""
        if not self.bot_endpoint:
            return self._record(Delivery(activity, None, defect=defect, error="no bot endpoint configured"))
        token = self.keys.token(audience=self.bot_app_id, service_url=activity.get("serviceUrl") or self.service_url,
                                defect=defect)
        conv = activity.get("conversation") or {}
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "x-ms-conversation-id": conv.get("id", ""), "x-ms-tenant-id": conv.get("tenantId", ""),
                   "User-Agent": "Microsoft-SkypeBotApi (ml-connector sandbox)"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self.session.post(self.bot_endpoint, data=json.dumps(activity), headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=self.timeout), ssl=self.ssl) as resp:
                text = await resp.text()
                try:
                    body: object = json.loads(text) if text else None
                except ValueError:
                    body = text
                return self._record(Delivery(activity, resp.status, body, defect))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return self._record(Delivery(activity, None, defect=defect, error=f"{type(exc).__name__}: {exc}"))

    def _record(self, d: Delivery) -> Delivery:
        a = d.activity
        self.sent.append({"seq": len(self.sent) + 1, "time": self.clock(), "type": a.get("type"),
                          "name": a.get("name"), "action": a.get("action"),
                          "eventType": (a.get("channelData") or {}).get("eventType"),
                          "conversation": (a.get("conversation") or {}).get("id"),
                          "from": (a.get("from") or {}).get("aadObjectId"), "defect": d.defect,
                          "status": d.status, "error": d.error})
        return d
