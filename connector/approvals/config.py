"""ApprovalSettings: the `[approvals]` section, read once at start and handed to the approvals package as one value.

Every F&O action and parameter name is configuration because none is confirmed (dynamics.md §6, open question 3):
the defaults are the sandbox's (and the documented pattern's) names. Times are seconds.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ReminderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    first_after: float = Field(24 * 3600, gt=0)  # after the card was posted
    every: float = Field(24 * 3600, gt=0)  # between reminders
    max_count: int = Field(3, ge=0)  # reminders per work item, then silence


class CommandWords(BaseModel):
    """`[approvals.commands]`: the words the 1:1 chat recognises, per language (compared case- and
    space-insensitively). "my approvals daily on|off" is a `my_approvals` word, a `daily` word, an `on`/`off` word."""

    model_config = ConfigDict(extra="forbid")

    my_approvals: list[str] = Field(default_factory=lambda: ["my approvals", "meine genehmigungen"], min_length=1)
    help: list[str] = Field(default_factory=lambda: ["help", "hilfe", "?"])
    daily: list[str] = Field(default_factory=lambda: ["daily", "täglich"])
    on: list[str] = Field(default_factory=lambda: ["on", "an", "ein"])
    off: list[str] = Field(default_factory=lambda: ["off", "aus"])


class MyListSettings(BaseModel):
    """`[approvals.my_list]`: the "my approvals" list card."""

    model_config = ConfigDict(extra="forbid")

    page_size: int = Field(10, ge=1, le=25)  # rows per card ("next 10"); fewer when the card would be too large
    max_items: int = Field(500, ge=1, le=5000)  # pending items read per request at most


class SummarySettings(BaseModel):
    """`[approvals.summary]`: the opt-in morning summary (`my approvals daily on`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # whether users may opt in at all
    send_at: str = Field("08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local time of day, HH:MM
    default_time_zone: str = "UTC"  # IANA name, when Graph gives no mailbox time zone
    working_days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])  # ISO weekdays (1 = Monday)
    tick: float = Field(60.0, gt=0)  # how often the scheduler looks for due summaries

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Berlin'") from None
        return value

    @field_validator("working_days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("working_days are ISO weekdays 1 (Monday) .. 7 (Sunday)")
        return sorted(set(value))


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
    # --- as whom F&O records the decision (README "Deciding as the approver") ------------------------------------
    # "service": the connector's app user completes the item (the approver is named in the comment);
    # "approver": Teams single sign-on on the press + on-behalf-of: F&O records the approver's own user;
    # "approver-or-service": as the approver, else (no sign-in possible) as the service, said in audit and comment.
    act_as: Literal["service", "approver", "approver-or-service"] = "service"
    sso_connection_name: str = "ml-connector-sso"  # loginRequest connectionName (Teams wants it non-empty)
    sso_app_id_uri: str | None = None  # the Application ID URI; default api://botid-<bot app id>
    sso_sign_in_url: str | None = None  # the loginRequest's Sign-In button; default Entra's authorize URL
    fallback_comment: str = " (recorded by the connector's service user: {reason})"  # appended on fallback
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
    # --- "my approvals" in the 1:1 chat -------------------------------------------------------------------------
    commands: CommandWords = Field(default_factory=CommandWords)
    my_list: MyListSettings = Field(default_factory=MyListSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)
