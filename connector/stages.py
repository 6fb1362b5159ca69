"""Pipeline stages: each makes its adapter calls and says what comes next; errors become RetryLater or Park.

This is where the adapters' error trees meet the pipeline's policy: throttling and outages are transient
(retried, never earlier than Retry-After), a rejected credential or a bad request is permanent (parked with a
reason an admin can act on, then `events replay`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from connector.pipeline import Park, RetryLater, Stage, StageOutcome
from connector.store import EventRecord
from connector.tokens import TokenError, TokenUnavailable
from dynamics import (
    DroppedFields,
    DroppedFieldsView,
    DynamicsError,
    EnrichmentPlan,
    EnrichmentPlanError,
    ODataAuthError,
    ODataClient,
    ODataThrottled,
    ODataUnavailable,
    enrich,
    plan_for,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentRuntime:
    """One F&O environment as the stages see it."""

    name: str
    base_url: str
    odata: ODataClient
    # F&O counts concurrent requests per user (52 by default): bound ours per environment.
    limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    # fields this environment's entities lack, learnt while enriching; lives as long as the process
    dropped: DroppedFields = field(default_factory=DroppedFields)

    def __post_init__(self) -> None:
        if not self.dropped.environment:  # so its log lines and reports name the environment
            self.dropped.environment = self.name

    @property
    def dropped_fields(self) -> DroppedFieldsView:
        """Read-only: entity set -> fields left out of reads here (for `ml-connector check` and status pages)."""
        return self.dropped.view()


_PLAN_CHOICES_KEPT = 1024
_NO_PLAN_DETAIL = "no enrichment plan for this event type: the card shows the event's own fields"


def translate_dynamics_error(exc: Exception) -> Exception:
    if isinstance(exc, ODataThrottled):
        return RetryLater(f"F&O throttled the request (429, Retry-After {exc.retry_after:g}s)", exc.retry_after)
    if isinstance(exc, ODataUnavailable):
        return RetryLater(f"F&O unavailable: {exc}")
    if isinstance(exc, TokenUnavailable):
        return RetryLater(f"Entra ID unavailable: {exc}")
    if isinstance(exc, TokenError):
        return Park(f"Entra ID refused the app's credential: {exc} (fix the credential, then `events replay`)")
    if isinstance(exc, ODataAuthError):
        return Park(f"F&O refused the app: {exc} (is the app registered under Microsoft Entra ID applications?)")
    if isinstance(exc, EnrichmentPlanError):
        return Park(f"enrichment plan error: {exc} (then `events replay`)")
    if isinstance(exc, DynamicsError):
        return Park(f"F&O error: {exc}")
    return exc


def make_enrich_stage(
    environments: dict[str, EnvironmentRuntime], plans: list[EnrichmentPlan], *, next_stage: str
) -> Stage:
    """Read the full record back over OData, per the first plan matching the event type."""
    # event type -> its plan (or None): the plans are fixed for the stage's life, so the choice is made once per type
    chosen: dict[str, EnrichmentPlan | None] = {}

    async def enrich_stage(record: EventRecord) -> StageOutcome:
        env = environments.get(record.environment)
        if env is None:
            raise Park(f"environment '{record.environment}' is no longer configured")
        event_type = record.business_event_id
        if event_type in chosen:
            plan = chosen[event_type]
        else:
            plan = plan_for(event_type, plans)
            if len(chosen) < _PLAN_CHOICES_KEPT:  # event types are few; this only bounds a sender inventing them
                chosen[event_type] = plan
        if plan is None:
            return StageOutcome(next_stage, {"enrichment": {"plan": None, "record": {}, "missing": []}},
                                _NO_PLAN_DETAIL)
        try:
            async with env.limit:
                # The stored record carries what enrichment reads of the event (its payload and legal entity, both
                # as validated at the front door): no re-serialising and re-parsing of the payload per event.
                enriched = await enrich(record, env.odata, plan, base_url=env.base_url, dropped=env.dropped)
        except Exception as exc:  # translated below; anything unknown propagates as a bug
            translated = translate_dynamics_error(exc)
            if translated is exc:
                raise
            raise translated from exc
        detail = f"plan {plan.name}: {enriched.calls} OData call(s)"
        if enriched.missing:
            detail += f"; no longer in Dynamics: {', '.join(enriched.missing)}"
        for entity_set, names in enriched.dropped.items():
            for name in names:
                detail += f"; field {name} dropped: not in this environment's {entity_set}"
        data: dict[str, Any] = {
            "enrichment": {
                "plan": plan.name,
                "record": enriched.record,
                "missing": list(enriched.missing),
                "skipped": list(enriched.skipped),
                "failed": list(getattr(enriched, "failed", []) or []),
                "dropped": {entity_set: list(names) for entity_set, names in enriched.dropped.items()},
                "openUrl": enriched.open_url,
                "documentKey": enriched.document_key,
                "title": enriched.title,
            }
        }
        return StageOutcome(next_stage, data, detail)

    return enrich_stage
