"""Approvals: F&O workflow work items decided from Teams, once, by their assignee, with every card copy kept true.

    config.py     ApprovalSettings (`[approvals]`)
    actas.py      `act_as`: the sign-in gate of a press (Teams SSO, on-behalf-of, fallback to the service)
    mapping.py    F&O user -> Entra user (cached in the store; `[approvals.user_map]` overrides)
    service.py    ApprovalService: a work item card was posted (track it, 1:1 copy); button presses
    jobs.py       the durable jobs (decision, card update) on the pipeline's queue
    decide.py     stages "decide" (the F&O call) and "approval-cards" (update every copy)
    copies.py     renders the approval card per view and updates every copy in place
    fo.py         the F&O side: validate/complete/read, and F&O's row -> approval state
    reconcile.py  Reconciler: re-validate pending approvals, re-enqueue stuck decisions, reminders, workflow events
    report.py     text for `ml-connector approvals list|show`
    my/           "my approvals": the approver's list in the 1:1 chat, and the opt-in morning summary

`Approvals.build(...)` wires them; connector/app.py registers `approvals.stages()` and starts
`approvals.reconciler.run_background(stop)` and `approvals.my.summary.run_background(stop)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from cards import Catalog
from connector.approvals.actas import SignInGate
from connector.approvals.config import ApprovalSettings, ReminderSettings
from connector.approvals.copies import CardCopies, MriLookup, add_refresh
from connector.approvals.decide import ApprovalDeps, make_cards_stage, make_decide_stage
from connector.approvals.fo import FoEnvironment
from connector.approvals.jobs import CARDS_STAGE, DECIDE_STAGE, SYNC_STAGE
from connector.approvals.mapping import ApproverResolver
from connector.approvals.my import Lister, MyApprovals
from connector.approvals.reconcile import Reconciler, is_workflow_progress_event, make_workflow_sync_stage
from connector.approvals.report import (format_approval, format_approvals, format_audit, list_approvals_text,
                                        show_approval)
from connector.approvals.service import ApprovalService, Press, is_approval_action
from connector.pipeline import Stage
from connector.store import Store
from dynamics import WorkflowActions

__all__ = [
    "CARDS_STAGE", "DECIDE_STAGE", "SYNC_STAGE", "ApprovalDeps", "ApprovalService", "ApprovalSettings", "Approvals",
    "ApproverResolver", "CardCopies", "FoEnvironment", "MyApprovals", "Press", "Reconciler", "ReminderSettings",
    "SignInGate",
    "add_refresh",
    "format_approval", "format_approvals", "format_audit", "is_approval_action", "is_workflow_progress_event",
    "list_approvals_text",
    "show_approval", "workflow_actions",
]


def workflow_actions(odata: Any, settings: ApprovalSettings) -> WorkflowActions:
    """A WorkflowActions with the configured (unconfirmed) action and parameter names."""
    return WorkflowActions(odata, validate_action=settings.validate_action, complete_action=settings.complete_action,
                           outcome_param=settings.outcome_param, comment_param=settings.comment_param,
                           id_param=settings.id_param)


class _Waker:
    """A late-bound `pipeline.wake`: the pipeline is built after its stages."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def __call__(self) -> None:
        self.fn()


@dataclass
class Approvals:
    """Everything the app needs from this package, built once."""

    service: ApprovalService
    reconciler: Reconciler
    deps: ApprovalDeps
    waker: _Waker
    my: MyApprovals

    @classmethod
    def build(cls, *, store: Store, settings: ApprovalSettings, poster: Any, graph: Any, catalog: Catalog,
              environments: dict[str, tuple[str, Any]], clock: Callable[[], float] = time.time,
              wake: Callable[[], None] = lambda: None, mri_of: MriLookup | None = None,
              fo: dict[str, FoEnvironment] | None = None, sleep: Any = None, max_bytes: int = 28_000,
              max_lines: int = 20, locales: dict[str, str] | None = None, gate: SignInGate | None = None,
              as_user: Callable[[str, str], Any] | None = None, on_press: Callable[[str], None] | None = None,
              on_card_update: Callable[[str], None] | None = None) -> "Approvals":
        """Args:
            environments: name -> (F&O base URL, ODataClient).
            gate: the sign-in gate of presses (act_as "approver"/"approver-or-service"); None: as the service.
            as_user: (environment, object id) -> WorkItemActions with that user's on-behalf-of token, or None.
            wake: `pipeline.wake` (or set `approvals.wake` once the pipeline exists).
            fo: overrides the FoEnvironments built from `environments` (tests).
            on_press, on_card_update: what each press came to / each card copy update's result (the metrics).
        """
        copies = CardCopies(store, poster, catalog, {n: base for n, (base, _) in environments.items()}, graph=graph,
                            mri_of=mri_of, max_bytes=max_bytes, max_lines=max_lines, locales=dict(locales or {}),
                            **({"on_update": on_card_update} if on_card_update is not None else {}))
        resolver = ApproverResolver(store, graph, user_map=settings.user_map, mapping_ttl=settings.mapping_ttl,
                                    negative_ttl=settings.negative_ttl, clock=clock)
        if fo is None:
            fo = {n: FoEnvironment(n, odata, workflow_actions(odata, settings))
                  for n, (_, odata) in environments.items()}
        waker = _Waker(wake)
        deps = ApprovalDeps(store, settings, fo, copies, clock, wake=waker, as_user=as_user)
        kwargs = {"sleep": sleep} if sleep is not None else {}
        service = ApprovalService(store, settings, copies=copies, resolver=resolver, poster=poster, graph=graph,
                                  wake=waker, environments=list(environments), clock=clock, gate=gate,
                                  on_press=on_press, **kwargs)
        deps.notify = service.tell
        reconciler = Reconciler(deps, poster)
        lister = Lister(store, settings, reconciler=reconciler, fo=fo, clock=clock)
        my = MyApprovals(store=store, settings=settings, service=service, lister=lister, catalog=catalog,
                         poster=poster, graph=graph, clock=clock, max_bytes=max_bytes)
        return cls(service, reconciler, deps, waker, my)

    def set_wake(self, wake: Callable[[], None]) -> None:
        """Point the approvals at the pipeline once it exists: `approvals.set_wake(pipeline.wake)`."""
        self.waker.fn = wake

    def stages(self, *, sync_next_stage: str = "") -> dict[str, Stage]:
        """The stages to register in the Pipeline under these names."""
        return {DECIDE_STAGE: make_decide_stage(self.deps), CARDS_STAGE: make_cards_stage(self.deps),
                SYNC_STAGE: make_workflow_sync_stage(self.reconciler, next_stage=sync_next_stage)}
