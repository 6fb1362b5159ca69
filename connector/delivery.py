"""The delivery stage: route an enriched event, resolve its mentions, render its cards, post them once.

A card already recorded for (event, route) is never posted again, so a retried or replayed event posts only what
is missing. The one window for a duplicate: the process dies after Teams accepted a post and before the store
recorded it (README, "Delivery guarantees").
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from bot import (
    BotError,
    CardTooLarge,
    GraphClient,
    GraphError,
    GraphThrottled,
    TeamsForbidden,
    TeamsNotFound,
    TeamsThrottled,
    TeamsUnavailable,
)
from cards import Catalog, CardsError, render_card as render
from connector.approvals import ApprovalService, Reconciler, add_refresh, is_workflow_progress_event
from connector.carddata import (
    DIGEST_TEMPLATE,
    UNAVAILABLE_TEMPLATE,
    build_card_data,
    default_template,
    digest_card_data,
    document_key,
    summarize,
)
from connector.ops import logctx
from connector.outbox import Delivered, Outbox, OutboxItem
from connector.pipeline import Park, RetryLater, Stage, StageOutcome
from connector.routes import Route, TargetNotFound, match_routes, resolve_channel
from connector.store import EventRecord, PostedCard, Store

log = logging.getLogger(__name__)

_GUID = re.compile(r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$")


@dataclass
class DeliveryDeps:
    store: Store
    outbox: Outbox
    catalog: Catalog
    routes: list[Route]
    graph: GraphClient | None
    environments: dict[str, str]  # name -> base URL
    clock: Callable[[], float]
    max_lines: int = 20
    max_bytes: int = 28_000
    approvals: ApprovalService | None = None
    reconciler: Reconciler | None = None
    tenants: frozenset[str] | None = None  # served tenants (lower case): installs of any other are never posted to
    locales: dict[str, str] = field(default_factory=dict)  # environment name -> card locale (when configured)


async def resolve_mentions(
    data: dict[str, Any], roles: list[str], graph: GraphClient | None
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Find the Entra user for each wanted role. Returns the mentions and a note per role that failed."""
    mentions: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    if not roles:
        return mentions, notes
    if graph is None:
        return mentions, [f"{r}: Microsoft Graph is not configured, posted without mention" for r in roles]
    ev = data.get("event") or {}
    rec = data.get("record") or {}
    for role in roles:
        key: str | None = None
        if role == "initiator":
            m = _GUID.match(str(ev.get("InitiatingUserAADObjectId") or ""))
            key = m.group(1).lower() if m else None
        elif role == "approver":
            user = rec.get("user") or {}
            key = user.get("Alias") or user.get("Email") or ev.get("WorkflowUserEmail")
        elif role == "vendor":
            key = (rec.get("vendor") or {}).get("PrimaryEmailAddress")
        if not key:
            notes.append(f"{role}: the event and its record name no user, posted without mention")
            continue
        try:
            found = await graph.get_user(key)
            if found is None and role == "vendor":
                found = await graph.find_user_by_mail(key)
        except GraphThrottled as exc:
            raise RetryLater(f"Microsoft Graph throttled the user lookup (Retry-After {exc.retry_after:g}s)",
                             exc.retry_after) from exc
        except GraphError as exc:
            notes.append(f"{role}: user lookup failed ({exc}), posted without mention")
            continue
        if found is None:
            notes.append(f"{role}: {key} not found in Entra ID, posted without mention")
            continue
        mentions[role] = {"id": found.id, "name": found.display_name or found.upn or key}
    return mentions, notes


def choose_template(route: Route, data: dict[str, Any], record: EventRecord) -> str:
    if data.get("missing"):
        return UNAVAILABLE_TEMPLATE
    return route.template or default_template(record.business_event_id)


def make_digest_renderer(deps: DeliveryDeps) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    def render_digest(items: list[dict[str, Any]]) -> dict[str, Any]:
        data = digest_card_data(items)
        return render(DIGEST_TEMPLATE, data, catalog=deps.catalog, max_bytes=deps.max_bytes,
                      max_lines=deps.max_lines).card

    return render_digest


def translate_teams_error(exc: Exception) -> Exception:
    if isinstance(exc, TeamsThrottled):
        return RetryLater(f"Teams throttled the post (Retry-After {exc.retry_after:g}s)", exc.retry_after)
    if isinstance(exc, TeamsUnavailable):
        return RetryLater(f"Teams unavailable: {exc}")
    if isinstance(exc, TeamsForbidden):
        return Park(f"Teams refused the post (app removed from the team or blocked?): {exc}")
    if isinstance(exc, TeamsNotFound):
        return Park(f"Teams conversation not found (channel deleted?): {exc}")
    if isinstance(exc, CardTooLarge):
        return Park(f"Teams refused the card as too large: {exc}")
    if isinstance(exc, BotError):
        return RetryLater(str(exc)) if exc.transient else Park(f"Teams error: {exc}")
    return exc


def make_deliver_stage(deps: DeliveryDeps) -> Stage:
    async def approval_notes(record: EventRecord, data: dict[str, Any], mentions: dict[str, Any],
                             routes: list[Route]) -> list[str]:
        """Track a work item's approval (and send its 1:1 copy) once its channel cards exist. Safe to repeat."""
        if deps.approvals is None or "approval" not in data:
            return []
        channel_cards = [c for c in await deps.store.cards_for_event(record.id) if c.kind != "personal"]
        return await deps.approvals.on_work_item_posted(record, dict(data, mentions=mentions), channel_cards,
                                                        route_personal=any(r.personal for r in routes))

    async def deliver(record: EventRecord) -> StageOutcome:
        base_url = deps.environments.get(record.environment, "")
        data = build_card_data(record, environment_name=record.environment, base_url=base_url,
                               locale=deps.locales.get(record.environment))
        workflow_notes: list[str] = []
        if deps.reconciler is not None and is_workflow_progress_event(record.business_event_id):
            # A work item decided, recalled or delegated inside F&O: bring its cards up to date.
            try:
                workflow_notes = await deps.reconciler.on_workflow_event(record)
            except (RetryLater, Park) as exc:
                workflow_notes = [f"approval cards not updated yet ({exc}); the reconciler will catch up"]
        routes = match_routes(deps.routes, event_id=record.business_event_id, environment=record.environment,
                              legal_entity=record.legal_entity, data=data)
        if not routes:
            detail = "; ".join(workflow_notes) or "no route matches this event: nothing posted"
            return StageOutcome("", {"delivery": {"routes": []}}, detail)
        done = {(c.route) for c in await deps.store.cards_for_event(record.id)}
        pending = [r for r in routes if r.name not in done]
        if not pending:
            mentions, _ = await resolve_mentions(data, sorted({m for r in routes for m in r.mention}), deps.graph)
            notes = await approval_notes(record, data, mentions, routes)
            return StageOutcome("", None, "; ".join(["every route's card was already posted", *notes]))

        roles: list[str] = sorted({role for r in pending for role in r.mention})
        mentions, notes = await resolve_mentions(data, roles, deps.graph)
        installs = await deps.store.list_installs(active_only=True)
        posted: list[str] = []
        for route in pending:
            try:
                install, channel_id = resolve_channel(route, installs, deps.tenants)
            except TargetNotFound as exc:
                raise Park(str(exc)) from exc
            # The route's readers win, except on approval cards: every copy of one is re-rendered on each decision
            # (connector/approvals/copies.py), in the environment's locale, and must not change language then.
            locale = data["locale"] if "approval" in data else route.locale or data["locale"]
            card_data = dict(data, mentions={k: v for k, v in mentions.items() if k in route.mention}, locale=locale)
            template = choose_template(route, data, record)
            digestible = "approval" not in data

            def render_card(template: str = template, card_data: dict[str, Any] = card_data) -> dict[str, Any]:
                return render(template, card_data, catalog=deps.catalog, max_bytes=deps.max_bytes,
                              max_lines=deps.max_lines).card

            card: dict[str, Any] | Callable[[], dict[str, Any]] = render_card
            if not digestible:  # approval cards always go out on their own: render (and check) them now
                try:
                    card = render_card()
                except CardsError as exc:
                    raise Park(f"route '{route.name}': the card could not be rendered: {exc}") from exc
                if deps.approvals is not None:
                    add_refresh(card, card_data)  # each viewer's client fetches its own view
            # Otherwise the outbox renders the card only if the event is posted on its own: in a burst it is folded
            # into a digest, which needs its summary row only.
            thread_key = document_key(data) if route.threading == "document" else None
            reply_to = None
            if thread_key:
                first = await deps.store.find_thread(thread_key, channel_id)
                reply_to = first.conversation_id if first else None
            async def record_post(delivered: Delivered, route: Route = route, thread_key: str | None = thread_key,
                                  channel_id: str = channel_id) -> None:
                await deps.store.record_card(PostedCard(
                    event_id=record.id,
                    route=route.name,
                    conversation_id=delivered.ref.conversation_id,
                    activity_id=delivered.ref.activity_id,
                    service_url=delivered.ref.service_url,
                    kind=delivered.kind,
                    thread_key=thread_key,
                    channel_id=channel_id,
                    digest_id=delivered.digest_id,
                    posted_at=deps.clock(),
                ))

            item = OutboxItem(
                tenant_id=install.tenant_id,
                service_url=install.service_url,
                channel_id=channel_id,
                card=card,
                summary=summarize(card_data),
                reply_to=reply_to,
                digestible=digestible,
                on_posted=record_post,
            )
            try:
                delivered = await deps.outbox.send(item)
            except CardsError as exc:
                raise Park(f"route '{route.name}': the card could not be rendered: {exc}") from exc
            except Exception as exc:
                translated = translate_teams_error(exc)
                if translated is exc:
                    raise
                raise translated from exc
            logctx.bind(card_id=f"{delivered.ref.conversation_id}/{delivered.ref.activity_id}")  # later lines
            where = f"{install.team_name or install.team_id} / {install.channels.get(channel_id, channel_id)}"
            if delivered.kind == "digest":
                posted.append(f"{route.name}: in digest {delivered.digest_id} ({delivered.digest_size} events) "
                              f"to {where}")
            else:
                posted.append(f"{route.name}: {delivered.kind} card to {where} (message {delivered.ref.activity_id})")
        notes += await approval_notes(record, data, mentions, routes)
        detail = "; ".join(posted + notes + workflow_notes)
        return StageOutcome("", {"delivery": {"routes": [r.name for r in routes], "notes": notes}}, detail)

    return deliver
