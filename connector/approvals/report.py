"""Text for `ml-connector approvals list|show`: plain columns, times in UTC. No I/O beyond the store reads."""

from __future__ import annotations

from connector.approvals.copies import when
from connector.store import Approval, AuditEntry, Store


def format_approvals(approvals: list[Approval]) -> str:
    if not approvals:
        return "no approvals"
    rows = [("ENVIRONMENT", "WORK ITEM", "STATUS", "ASSIGNEE", "OUTCOME", "BY", "SUBJECT")]
    for a in approvals:
        rows.append((a.environment, a.work_item_id, a.status + (f" ({a.fo_status})" if a.fo_status else ""),
                     a.assignee_name or a.assignee_fo_user or "-", a.outcome or "-", a.decided_by_name or "-",
                     (a.subject or "")[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def format_approval(a: Approval, audit: list[AuditEntry]) -> str:
    lines = [f"work item {a.work_item_id} ({a.environment}): {a.status}",
             f"  subject:   {a.subject or '-'}",
             f"  assignee:  {a.assignee_name or '-'} (F&O {a.assignee_fo_user or '-'}, "
             f"Entra {a.assignee_object_id or 'not mapped'})",
             f"  outcomes:  {', '.join(a.outcomes) or '-'}",
             f"  F&O:       {a.fo_status or '-'}"]
    if a.outcome:
        lines.append(f"  decision:  {a.outcome} by {a.decided_by_name or '-'} at {when(a.decided_at) or '-'}"
                     + (f": {a.comment}" if a.comment else ""))
    if a.superseded_by:
        lines.append(f"  replaced by work item {a.superseded_by}")
    lines.append(f"  reminders: {a.reminders_sent}; card event {a.event_id}")
    lines.append("audit (oldest first):")
    lines.append(format_audit(audit))
    return "\n".join(lines)


def format_audit(entries: list[AuditEntry]) -> str:
    """Oldest first (the store returns newest first: pass it as is)."""
    if not entries:
        return "  (none)"
    out = []
    for e in sorted(reversed(entries), key=lambda e: e.at):  # newest first in, oldest first out (stable)
        who = f"{e.actor_name or '-'} ({e.actor_object_id})" if e.actor_object_id else (e.actor_name or "-")
        parts = [when(e.at), e.action.ljust(13), who]
        if e.outcome:
            parts.append(f"outcome={e.outcome}")
        if e.comment:
            parts.append(f"comment={e.comment!r}")
        if e.card:
            parts.append(f"card={e.card}")
        if e.detail:
            parts.append(e.detail)
        out.append("  " + "  ".join(parts))
    return "\n".join(out)


async def show_approval(store: Store, environment: str, work_item_id: str) -> str:
    approval = await store.get_approval(environment, work_item_id)
    if approval is None:
        return f"no approval for work item {work_item_id} in {environment}"
    return format_approval(approval, await store.list_audit(environment=environment, work_item_id=work_item_id,
                                                            limit=1000))


async def list_approvals_text(store: Store, *, status: str | None = None, limit: int = 100) -> str:
    return format_approvals(await store.list_approvals(status=status, limit=limit))
