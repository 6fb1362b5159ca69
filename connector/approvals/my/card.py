"""The "my approvals" list card (template `my-approvals`) and the help card.

Every row's buttons are the channel card's own Action.Execute buttons: verb = the outcome in lower case, data
{action, workItemId, eventId, environment}, so the existing press path (ApprovalService.press) decides. The list
adds `list`, `after` (the page's start) and `commentInput` (the id of that row's comment box: inputs need unique
ids on one card) so the answer to a press is this page again, refreshed. The card's `refresh` (Universal Actions,
`userIds` = the caller's MRI) re-fetches the page whenever the caller views it after a decision made anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cards import Catalog, render_card
from connector.approvals.my.listing import Page, Row, cursor_of

TEMPLATE = "my-approvals"
LIST = "my-approvals"  # data.list of every action the list card carries
LIST_VERB = "myApprovals"  # refresh / next page / first page
_STYLES = {"approve": "positive", "reject": "destructive"}


@dataclass(frozen=True)
class ListCard:
    card: dict[str, Any]
    shown: int  # rows on the card (fewer than the page when the size limit cut it)
    total: int


def _row(row: Row, index: int, after: str) -> dict[str, Any]:
    a = row.approval
    comment_id = f"comment_{index}"
    actions = [{"title": o, "verb": o.lower(), "style": _STYLES.get(o.lower(), "default"),
                "data": {"action": o.lower(), "workItemId": a.work_item_id, "eventId": row.event_key or "",
                         "environment": a.environment, "list": LIST, "after": after, "commentInput": comment_id}}
               for o in a.outcomes or ["Approve", "Reject"]]
    item: dict[str, Any] = {
        "workItemId": a.work_item_id, "environment": a.environment, "document": row.document[:200],
        "subject": row.subject[:200], "place": " · ".join(p for p in (row.legal_entity, a.environment) if p),
        "waiting": row.waiting, "commentId": comment_id, "actions": actions,
    }
    if row.vendor:
        item["vendor"] = row.vendor[:120]
    if row.amount:
        item["amount"] = row.amount
    if row.card_url:
        item["cardUrl"] = row.card_url
    if row.unchecked:
        item["warning"] = "Could not be re-checked in Dynamics just now; the decision is checked before it is sent."
    return item


def card_data(page: Page, rows: list[Row], *, after: str, note: str | None, page_size: int,
              more: bool) -> dict[str, Any]:
    block: dict[str, Any] = {}
    if page.total:
        block["headline"] = (f"{page.total} approval{'s' if page.total != 1 else ''} wait"
                             f"{'s' if page.total == 1 else ''} for you")
        first = page.before + 1
        last = page.before + len(rows)
        where = ", ".join(page.environments)
        block["range"] = f"Oldest first · {first}–{last} of {page.total}" + (f" · {where}" if where else "")
        block["items"] = [_row(r, i + 1, after) for i, r in enumerate(rows)]
    if note:
        block["note"] = note
    pager = []
    if more and rows:
        pager.append({"title": f"Next {page_size}", "verb": LIST_VERB,
                      "data": {"list": LIST, "after": cursor_of(rows[-1].approval)}})
    if after:
        pager.append({"title": "Back to the oldest", "verb": LIST_VERB, "data": {"list": LIST, "after": ""}})
    if pager:
        block["pager"] = pager
    return {"myApprovals": block}


def render_list(catalog: Catalog, page: Page, *, after: str, note: str | None, page_size: int, user_mri: str | None,
                max_bytes: int) -> ListCard:
    """The page as a card under `max_bytes`: rows are dropped from the end (they start the next page) rather than
    texts shortened, so the page is always whole rows and nothing is lost between pages."""
    rows = list(page.rows)
    while True:
        more = page.more or len(rows) < len(page.rows)
        rendered = render_card(TEMPLATE, card_data(page, rows, after=after, note=note, page_size=page_size,
                                                   more=more), catalog=catalog, max_bytes=max_bytes)
        if (not rendered.shrunk and rendered.bytes <= max_bytes) or len(rows) <= 1:
            break
        rows.pop()
    card = rendered.card
    card["refresh"] = refresh_block(after, user_mri)
    return ListCard(card, len(rows), page.total)


def refresh_block(after: str, user_mri: str | None) -> dict[str, Any]:
    block: dict[str, Any] = {"action": {"type": "Action.Execute", "title": "Refresh", "verb": LIST_VERB,
                                        "data": {"list": LIST, "after": after}}}
    if user_mri:
        block["userIds"] = [user_mri]  # only the caller's client refreshes it: the list is theirs
    return block


def help_card(my_words: list[str], daily_words: list[str], on_words: list[str], off_words: list[str], *,
              summary_enabled: bool, note: str | None = None) -> dict[str, Any]:
    cmd = my_words[0]
    lines = [f"**{cmd}**: everything waiting for your decision, across environments, oldest first."]
    if summary_enabled and daily_words and on_words and off_words:
        lines.append(f"**{cmd} {daily_words[0]} {on_words[0]}** / **{off_words[0]}**: a summary of what waits, "
                     "every working-day morning in this chat (off by default).")
    lines.append("Cards in your channels keep their own Approve / Reject buttons.")
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": "What I can do", "weight": "Bolder", "size": "Medium",
                                   "wrap": True}]
    if note:
        body.append({"type": "TextBlock", "text": note, "wrap": True, "isSubtle": True})
    body += [{"type": "TextBlock", "text": line, "wrap": True} for line in lines]
    return {"type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"}, "body": body,
            "actions": [{"type": "Action.Execute", "title": "Show my approvals", "verb": LIST_VERB,
                         "data": {"list": LIST, "after": ""}}]}
