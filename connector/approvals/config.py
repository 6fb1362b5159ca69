"""ApprovalSettings: the `[approvals]` section, read once at start and handed to the approvals package as one value.

Every F&O action and parameter name is configuration because none is confirmed (dynamics.md §6, open question 3):
the defaults are the sandbox's (and the documented pattern's) names. Times are seconds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReminderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    first_after: float = Field(24 * 3600, gt=0)  # after the card was posted
    every: float = Field(24 * 3600, gt=0)  # between reminders
    max_count: int = Field(3, ge=0)  # reminders per work item, then silence


class ApprovalSettings(BaseModel):
    """`[approvals]` (README "Configuration"). `user_map` pins F&O users to Entra users:
    `[approvals.user_map] "adele" = "<object id or UPN>"`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # --- F&O workflow actions (WorkflowActions arguments; unconfirmed names) -----------------------------------
    validate_action: str = "validate"
    complete_action: str = "complete"
    outcome_param: str = "outcome"
    comment_param: str = "comment"
    id_param: str | None = None  # also send the work item id in the action body under this name
    comment_template: str = "{decision} in Microsoft Teams by {who}{sep}{comment}"  # who = "Name (upn)"
    # --- approver mapping ---------------------------------------------------------------------------------------
    user_map: dict[str, str] = Field(default_factory=dict)  # F&O user id -> Entra object id or UPN
    mapping_ttl: float = Field(24 * 3600, gt=0)  # a found user is cached this long
    negative_ttl: float = Field(3600, gt=0)  # "no such user" is cached this long
    # --- 1:1 copy -----------------------------------------------------------------------------------------------
    personal_copy: bool = True  # also send the card in a 1:1 chat when the route asks for it
    teams_app_external_id: str | None = None  # the manifest id, to install the app for an approver via Graph
    install_wait: float = Field(30.0, ge=0)  # how long to wait for the personal install to be recorded
    install_poll: float = Field(1.0, gt=0)
    # --- reconciler ---------------------------------------------------------------------------------------------
    reconcile_every: float = Field(15 * 60, gt=0)  # how often a pending approval is re-validated in F&O
    reconcile_per_minute: int = Field(30, ge=1)  # F&O calls the reconciler makes per minute at most
    submitting_stale_after: float = Field(300, gt=0)  # a "submitting" approval without its job is re-enqueued
    background_tick: float = Field(60, gt=0)  # how often run_background looks for due work
    reminders: ReminderSettings = Field(default_factory=ReminderSettings)
    # --- the durable decision job -------------------------------------------------------------------------------
    decision_event_id: str = "ml-connector.ApprovalDecision"
