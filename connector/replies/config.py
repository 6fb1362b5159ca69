"""ReplySettings: the `[replies]` section (typed approval replies), read once at start.

Times are seconds unless the name says minutes. The reply words are per language and compared case-insensitively
against the first word(s) of a reply; an admin adds a language by adding words, no code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ReplyWords(BaseModel):
    """`[replies.words]`: what counts as "approve" and "reject" at the start of a reply (any language)."""

    model_config = ConfigDict(extra="forbid")

    approve: list[str] = Field(default_factory=lambda: [
        "approve", "approved", "approving", "ok to approve", "genehmigen", "genehmigt", "freigeben", "freigegeben",
        "approuver", "approuvé", "aprobar", "aprobado"], min_length=1)
    reject: list[str] = Field(default_factory=lambda: [
        "reject", "rejected", "rejecting", "decline", "declined", "ablehnen", "abgelehnt", "rejeter", "rejeté",
        "rechazar", "rechazado"], min_length=1)

    @field_validator("approve", "reject")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(w.split()).lower() for w in value]
        if any(not w for w in cleaned):
            raise ValueError("reply words must not be empty")
        return cleaned


class ReplySettings(BaseModel):
    """`[replies]`: where typed replies come from and how the Graph subscriptions are kept alive."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    source: Literal["graph", "bot", "both"] = "bot"  # graph: change notifications; bot: the RSC channel feed
    words: ReplyWords = Field(default_factory=ReplyWords)
    # --- Graph subscriptions (source graph/both) ------------------------------------------------------------
    expiry_minutes: int = Field(4320, ge=45, le=4320)  # Graph's cap for channel messages is 4,320 (3 days)
    renew_when_left: float = Field(0.5, gt=0, lt=1)  # renew when this share of the lifetime is left
    lease_seconds: float = Field(120.0, gt=0)  # one instance works on one subscription at a time
    tick: float = Field(300.0, gt=0)  # how often the manager checks expiries
    resync_every: float = Field(6 * 3600, gt=0)  # the slow catch-up of replies (Teams sends no `missed`)
    notification_path: str = "/api/graph/notifications"
    lifecycle_path: str = "/api/graph/lifecycle"
    # --- processing ---------------------------------------------------------------------------------------
    worker_tick: float = Field(5.0, gt=0)  # how often stored notifications are looked for (also woken at once)
    reply_lease: float = Field(60.0, gt=0)  # a stored reply is processed by one instance at a time
    max_attempts: int = Field(5, ge=1)
