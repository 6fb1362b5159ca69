"""What the status page shows, gathered from the store and the running service (no HTML here: admin_page.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from connector.ops.upstreams import Upstreams
from connector.store import EventStatus, Store

DAY = 86_400.0


@dataclass
class ChannelPacing:
    channel: str
    queued: int


@dataclass
class StatusData:
    now: float
    by_state: dict[str, int]
    parked: list[dict[str, Any]]
    recent: list[tuple[str, str, int]]  # environment, event type, count (last 24 h)
    channels: list[ChannelPacing]
    posts: int
    digests: int
    approvals: list[dict[str, Any]]
    upstreams: dict[str, dict[str, Any]]
    installs: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class StatusSources:
    store: Store
    upstreams: Upstreams
    backlog: Callable[[], dict[str, int]] = dict  # channel -> cards queued (the outbox)
    delivered: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (posts, digests) since start
    clock: Callable[[], float] = time.time
    tokens: Callable[[], Any] = list  # connector/tokens.TokenSource objects: Entra's last success and failure

    async def gather(self, *, parked_limit: int = 50, approvals_limit: int = 50) -> StatusData:
        now = self.clock()
        store = self.store
        counts = await store.count_by_status()
        parked = await store.list_events(status=EventStatus.FAILED, limit=parked_limit)
        approvals = await store.list_approvals(status="pending", limit=approvals_limit)
        installs = await store.list_installs(active_only=True)
        posts, digests = self.delivered()
        for src in self.tokens():  # MSAL talks to Entra on its own session: the token sources know the outcomes
            if src.last_success_at is not None:
                current = self.upstreams.state["entra"].last_success
                if current is None or current.at < src.last_success_at:
                    self.upstreams.success("entra", src.last_success_at, src.scope)
            if src.last_failure is not None:
                current = self.upstreams.state["entra"].last_failure
                if current is None or current.at < src.last_failure[0]:
                    self.upstreams.failure("entra", src.last_failure[0], f"{src.scope}: {src.last_failure[1]}")
        return StatusData(
            now=now,
            by_state={k.value: v for k, v in counts.items()},
            parked=[{"id": e.id, "environment": e.environment, "type": e.business_event_id,
                     "control_number": e.control_number, "reason": e.last_error or "", "at": e.updated_at}
                    for e in parked],
            recent=await store.count_recent(since=now - DAY),
            channels=[ChannelPacing(k, v) for k, v in sorted(self.backlog().items(), key=lambda kv: -kv[1])][:50],
            posts=posts, digests=digests,
            approvals=[{"environment": a.environment, "work_item_id": a.work_item_id,
                        "subject": a.subject or "", "approver": a.assignee_name or a.assignee_fo_user or "?",
                        "age": max(0.0, now - a.created_at)}
                       for a in sorted(approvals, key=lambda a: a.created_at)],
            upstreams={name: {"success": s.last_success, "failure": s.last_failure}
                       for name, s in self.upstreams.state.items()},
            installs=[{"id": i.id, "scope": i.scope, "team": i.team_name or "", "channels": len(i.channels),
                       "tenant": i.tenant_id} for i in installs],
        )
