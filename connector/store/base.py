"""The store's contract: what the service keeps durably, as our own dataclasses.

Two implementations (SQLite, the embedded default; MongoDB, for several instances) pass one shared contract
suite in tests/store/. Neither rows nor documents leave an implementation: callers see only these types.
Time is passed in by the caller (epoch seconds) so that tests drive it with a fake clock.

Deduplication is the database's job: enqueue relies on a unique key over (environment, business_event_id,
control_number), never on a check-then-insert.

Leases: a worker claims an event for `lease_seconds`; every later write for that claim names the lease id and is
refused with LeaseLost if the lease has since expired and been taken by another worker (fencing).

Instances: every running process registers an Instance (its worker name, host and pid) with a heartbeat lease of its
own. When a process is known to be gone (its heartbeat lapsed, or it ran on this host and its pid is dead), any other
process retires it: the events it had leased go back to the queue at once instead of waiting out their event
leases. Retiring is a compare-and-set on the expiry that was read, so a live instance that heartbeated in the
meantime is left alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class StoreError(Exception):
    """Root of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the operation; the caller should retry later (HTTP 503)."""


class StoreInsecure(StoreError):
    """The database file can be read by other users of the host; the message says which command fixes it."""


class LeaseLost(StoreError):
    """The claim this write belongs to has expired and another worker holds the event now."""


class NotFound(StoreError):
    """No record with that id."""


class EnqueueResult(str, enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


class EventStatus(str, enum.Enum):
    QUEUED = "queued"  # waiting for a worker (possibly not before next_attempt_at)
    PROCESSING = "processing"  # claimed under a lease
    DONE = "done"  # every stage finished
    FAILED = "failed"  # parked: needs an admin (replay re-queues it)
    IGNORED = "ignored"  # recorded only (the F&O endpoint test event)


@dataclass(frozen=True)
class NewEvent:
    """What the events endpoint hands to enqueue: the validated envelope keys plus the raw payload."""

    environment: str
    business_event_id: str
    control_number: int
    event_id: str
    legal_entity: str | None
    payload: dict[str, Any]
    ignore: bool = False  # store as IGNORED (recorded, never processed)


@dataclass(frozen=True)
class EventRecord:
    id: str  # the store's id for the event (stable, printable)
    environment: str
    business_event_id: str
    control_number: int
    event_id: str
    legal_entity: str | None
    payload: dict[str, Any]
    status: EventStatus
    stage: str  # the next stage to run ("" once done)
    attempts: int  # attempts at the current stage
    received_at: float
    updated_at: float
    next_attempt_at: float
    data: dict[str, Any] = field(default_factory=dict)  # stage outputs, merged by record_step
    last_error: str | None = None
    lease_id: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    step: str  # e.g. "received", "enrich", "post", "park", "replay"
    outcome: str  # "ok", "retry", "failed", "duplicate", ...
    detail: str = ""


@dataclass(frozen=True)
class Claim:
    event: EventRecord
    lease_id: str
    lease_expires_at: float


@dataclass(frozen=True)
class SecretRecord:
    name: str
    ciphertext: bytes  # nonce + AES-GCM ciphertext, opaque to the store
    key_id: str  # which master key encrypted it
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Install:
    """Where the Teams app lives: a team (with its channels), or a personal / group chat."""

    id: str  # caller-chosen key: "team:<19:...>", "personal:<aad object id>", "chat:<conversation id>"
    scope: str  # "team" | "personal" | "groupChat"
    tenant_id: str
    service_url: str
    bot_id: str  # "28:<app id>"
    team_id: str | None = None  # Bot Framework team id (19:...@thread.tacv2)
    aad_group_id: str | None = None  # the Graph team id
    team_name: str | None = None
    channels: dict[str, str] = field(default_factory=dict)  # channel id -> channel name
    conversation_id: str | None = None  # personal / group chat conversation
    user_aad_object_id: str | None = None  # personal installs
    active: bool = True
    installed_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class PostedCard:
    """One card message the bot posted (or a digest that carried the event)."""

    event_id: str  # EventRecord.id
    route: str  # the route's name
    conversation_id: str  # thread or chat the message lives in
    activity_id: str  # the message id (for updates in place)
    service_url: str
    kind: str  # "thread" (new channel thread) | "reply" | "personal" | "digest"
    thread_key: str | None = None  # document key for one-thread-per-document routing
    channel_id: str | None = None
    digest_id: str | None = None
    posted_at: float = 0.0


@dataclass(frozen=True)
class Approval:
    """The state of one F&O workflow work item as the connector tracks it (key: environment + work_item_id).

    Statuses: "pending" (buttons live), "submitting" (a decision job is on its way to F&O), "decided" (F&O
    completed it through us; see outcome), "closed" (no longer pending in F&O for another reason: decided there
    directly, recalled, failed; see fo_status), "superseded" (delegated or escalated: see superseded_by).
    """

    environment: str
    work_item_id: str
    event_id: str  # the work item event whose cards show this approval
    status: str = "pending"
    assignee_fo_user: str | None = None
    assignee_object_id: str | None = None  # Entra object id of the current assignee (who may decide)
    assignee_name: str | None = None
    subject: str | None = None
    outcomes: list[str] = field(default_factory=list)
    outcome: str | None = None  # the decision, once decided
    comment: str | None = None
    decided_by_object_id: str | None = None
    decided_by_name: str | None = None
    decided_at: float | None = None
    fo_status: str | None = None  # F&O's WorkflowWorkItems.Status as last seen
    superseded_by: str | None = None  # work item id that replaced this one
    reminders_sent: int = 0
    last_reminder_at: float | None = None
    next_check_at: float = 0.0  # when the reconciler looks at it next
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class AuditEntry:
    """One approval action, appended and never changed: presses (refusals included), decisions, F&O answers."""

    at: float
    environment: str
    work_item_id: str
    # "press", "refused", "submitted", "completed", "not-pending", "failed", "superseded", "reconciled", "reminder"
    action: str
    actor_object_id: str | None = None
    actor_name: str | None = None
    outcome: str | None = None
    comment: str | None = None
    card: str | None = None  # which copy: "<conversation id>/<activity id>" or "execute"
    detail: str = ""  # F&O's answer, the reason for a refusal...


@dataclass(frozen=True)
class UserMapping:
    """F&O user → Entra user, cached with an expiry (or pinned by configuration)."""

    environment: str
    fo_user: str
    object_id: str | None  # None: known not to map (negative cache)
    upn: str | None
    display_name: str | None
    expires_at: float
    source: str = "graph"  # "graph" | "config"


@dataclass(frozen=True)
class Instance:
    """One running connector process, as registered in the store (connector/instances.py keeps it alive)."""

    id: str  # unique per process life; the pipeline's worker name (what claim() records as the claimer)
    host: str  # where it runs: host name + kernel boot id + pid namespace (a pid means something only there)
    pid: int
    pid_started: str  # the process's start time as the OS reports it ("" if unknown): tells a reused pid apart
    started_at: float
    expires_at: float  # heartbeat lease; 0 while it is being retired


@dataclass(frozen=True)
class SummarySubscription:
    """One user's "my approvals" morning summary (key: user_object_id): where to send it and when it is next due.

    `next_due_at` is the epoch second of the next send (the user's local `send_at` on a working day);
    `last_sent_day` (local ISO date) is set by `claim_summary_day` before a send, so a day is sent at most once,
    whatever the number of instances or restarts.
    """

    user_object_id: str  # lower-case Entra object id
    enabled: bool
    service_url: str
    conversation_id: str  # the user's 1:1 chat with the bot
    tenant_id: str | None = None
    user_name: str | None = None
    time_zone: str = "UTC"  # IANA name the schedule was computed in
    next_due_at: float = 0.0
    last_sent_day: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class GraphSubscription:
    """One Graph change-notification subscription for a channel's messages (key: resource).

    The clientState is not here: it is a secret (SecretBox, name `graph-subscription/<resource hash>`).
    Statuses: "new" (wanted, not created yet), "active", "removed" (Graph removed it: re-create and resync),
    "failed" (Graph refused: see detail). The lease makes one instance work on one subscription at a time.
    """

    resource: str  # /teams/{team-aad-group-id}/channels/{channel-id}/messages
    team_id: str  # the team's Entra group id
    channel_id: str
    status: str = "new"
    subscription_id: str | None = None
    expires_at: float = 0.0
    created_at: float | None = None
    renewed_at: float | None = None
    last_notification_at: float | None = None
    last_resync_at: float | None = None
    renewals: int = 0
    detail: str = ""
    lease_owner: str | None = None
    lease_expires_at: float = 0.0


@dataclass(frozen=True)
class InboundReply:
    """A typed reply waiting to be decided (key: the Teams message id, so Graph, the bot feed and a resync that
    all see one message store it once). Statuses: "queued", "processing" (leased), "done", "failed"."""

    key: str
    source: str  # "graph" | "bot" | "resync"
    payload: dict[str, Any]
    status: str = "queued"
    received_at: float = 0.0
    attempts: int = 0
    next_attempt_at: float = 0.0
    lease_owner: str | None = None
    lease_expires_at: float = 0.0
    outcome: str = ""


@runtime_checkable
class Store(Protocol):
    """The durable state of the service. All methods may raise StoreUnavailable."""

    async def open(self) -> None:
        """Connect and create tables/indexes if needed. Idempotent."""

    async def close(self) -> None: ...

    # --- events -------------------------------------------------------------------------------------------
    async def enqueue(self, event: NewEvent, *, first_stage: str, now: float) -> tuple[EnqueueResult, str]:
        """Store the event once. Returns NEW and the new id, or DUPLICATE and the id of the stored one.

        A new event starts QUEUED at `first_stage` (IGNORED if event.ignore) with a "received" history entry;
        a duplicate adds a "duplicate" history entry to the stored event and changes nothing else.
        """

    async def claim(self, worker: str, *, now: float, lease_seconds: float) -> Claim | None:
        """Atomically take one event that is QUEUED with next_attempt_at <= now, or PROCESSING with an expired
        lease (its worker died). Oldest next_attempt_at first. Returns None when there is nothing to do."""

    async def claim_batch(self, worker: str, *, now: float, lease_seconds: float, limit: int) -> list[Claim]:
        """Up to `limit` claims at once, as `claim` takes one (each event its own lease id), oldest due first; the
        SQLite store takes them in one transaction. Empty when nothing is due. ValueError unless limit >= 1."""

    async def record_step(
        self,
        claim: Claim,
        *,
        step: str,
        outcome: str,
        detail: str = "",
        data: dict[str, Any] | None = None,
        next_stage: str | None = None,
        now: float,
    ) -> Claim:
        """Append a history entry, merge `data` into the event's data (top-level keys replace), and, when
        next_stage is given, move the event to it (attempts back to 0). Returns the claim with the new state."""

    async def extend_lease(self, claim: Claim, *, lease_seconds: float, now: float) -> Claim:
        """Push the claim's lease to now + lease_seconds (a heartbeat for a stage that runs long, such as a post
        waiting for Teams' rate limit). Raises LeaseLost if the lease already expired and another worker holds the
        event (same fencing as every other write). No history entry."""

    async def complete(self, claim: Claim, *, now: float, detail: str = "") -> None:
        """DONE, lease released, history entry "done"."""

    async def finish(self, claim: Claim, *, step: str, detail: str = "", data: dict[str, Any] | None = None,
                     now: float) -> None:
        """The last stage's record_step (outcome "ok", `data` merged) and `complete`, as one fenced write: history
        gets `step` then "done". Raises LeaseLost like both (and then neither happened)."""

    async def reschedule(self, claim: Claim, *, at: float, reason: str, now: float) -> None:
        """Back to QUEUED not before `at`, attempts + 1, last_error = reason, lease released, history "retry"."""

    async def park(self, claim: Claim, *, reason: str, now: float) -> None:
        """FAILED with last_error = reason, lease released, history "parked"."""

    async def replay(self, event_id: str, *, now: float, stage: str | None = None) -> EventRecord:
        """A FAILED (or DONE, for a re-post) event back to QUEUED now, attempts 0, optionally at another stage;
        history "replay". Raises NotFound."""

    async def get_event(self, event_id: str) -> EventRecord | None: ...

    async def list_events(
        self, *, status: EventStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[EventRecord]:
        """Newest first."""

    async def history(self, event_id: str) -> list[HistoryEntry]:
        """Oldest first."""

    async def count_by_status(self) -> dict[EventStatus, int]:
        """Every status, zero included. Cheap at any size (SQLite keeps the counts by trigger)."""

    # --- instances --------------------------------------------------------------------------------------
    # operations (connector/ops) ------------------------------------------------------------------------------
    async def oldest_pending_at(self) -> float | None:
        """received_at of the oldest queued or processing event; None when none waits (cheap: an index)."""
        ...

    async def count_approvals_by_status(self) -> dict[str, int]: ...

    async def count_recent(self, *, since: float) -> list[tuple[str, str, int]]:
        """(environment, business event id, events received since `since`), sorted."""
        ...

    async def purge_events(self, *, before: float) -> int:
        """Delete done and ignored events (payload and history) received and last changed before `before`;
        returns how many. Queued, processing and parked events are never purged."""
        ...

    async def purge_audit(self, *, before: float) -> int:
        """Delete audit entries older than `before` (only ever on an admin's explicit request)."""
        ...

    async def probe_write(self, *, now: float) -> None:
        """A durable write that changes no data, for the readiness probe. Raises StoreUnavailable."""
        ...

    async def backup(self, destination: str) -> None:
        """Copy the store to a new file (SQLite); MongoDB raises StoreError naming its own tools."""
        ...

    async def register_instance(self, instance: Instance) -> None:
        """Insert a new instance record (its id is new: a process registers once per life, or again after its
        record was retired while it was unreachable)."""

    async def heartbeat_instance(self, instance_id: str, *, expires_at: float, now: float) -> None:
        """Push the instance's lease to expires_at. Raises LeaseLost if the record was retired (or is being)."""

    async def list_instances(self) -> list[Instance]:
        """Every registered instance, oldest first."""

    async def retire_instance(self, instance: Instance, *, reason: str, now: float) -> int | None:
        """Compare-and-set on `instance.expires_at` as the caller read it: if the stored record still has it, hand
        every event the instance holds (PROCESSING, claimed under its id) back to the queue (QUEUED, lease
        released, next_attempt_at kept, history "recover"/"released" with `reason`) and delete the record.
        Returns how many events were released, or None (nothing changed) if the record is gone or its expiry moved
        (the instance heartbeated: it is alive). A retirement interrupted half-way is finished by the next one."""

    # --- secrets (ciphertext only; connector/secrets.py encrypts and decrypts) ----------------------------
    async def put_secret(self, name: str, ciphertext: bytes, key_id: str, *, now: float) -> None: ...

    async def get_secret(self, name: str) -> SecretRecord | None: ...

    async def list_secrets(self) -> list[SecretRecord]: ...

    async def delete_secret(self, name: str) -> bool: ...

    # --- Teams installs -----------------------------------------------------------------------------------
    async def upsert_install(self, install: Install) -> None:
        """Insert or replace by install.id."""

    async def get_install(self, install_id: str) -> Install | None: ...

    async def list_installs(self, *, active_only: bool = False) -> list[Install]: ...

    # --- posted cards ---------------------------------------------------------------------------------------
    async def record_card(self, card: PostedCard) -> bool:
        """Record a posted card. Unique on (event_id, route, kind, conversation_id): returns False (and changes
        nothing) if that card was already recorded, so a replayed post is detected."""

    async def cards_for_event(self, event_id: str) -> list[PostedCard]: ...

    async def find_thread(self, thread_key: str, channel_id: str) -> PostedCard | None:
        """The first card posted as a new thread ("thread" kind) for this document key in this channel."""

    # --- approvals ------------------------------------------------------------------------------------------
    async def upsert_approval(self, approval: Approval) -> None:
        """Insert or replace by (environment, work_item_id)."""

    async def get_approval(self, environment: str, work_item_id: str) -> Approval | None: ...

    async def transition_approval(
        self, environment: str, work_item_id: str, *, from_status: tuple[str, ...], changes: dict[str, Any]
    ) -> Approval | None:
        """Compare-and-set: apply `changes` (field -> value) only if the current status is in from_status.
        Returns the updated approval, or None if the status did not match (someone else moved it first)."""

    async def list_approvals(
        self, *, status: str | None = None, due_before: float | None = None, limit: int = 100
    ) -> list[Approval]:
        """Filter by status and by next_check_at <= due_before; oldest next_check_at first."""

    async def append_audit(self, entry: AuditEntry) -> None: ...

    async def list_audit(
        self, *, environment: str | None = None, work_item_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """Newest first."""

    async def put_user_mapping(self, mapping: UserMapping) -> None: ...

    async def get_user_mapping(self, environment: str, fo_user: str) -> UserMapping | None:
        """Case-insensitive on fo_user. Returns expired mappings too (the caller checks expires_at)."""

    async def list_approvals_for(self, assignee_object_id: str, *, status: str = "pending",
                                 limit: int = 500) -> list[Approval]:
        """The approvals whose assignee_object_id equals `assignee_object_id` (exact; object ids are stored
        lower-case) in `status`; oldest created_at first (then environment, work_item_id)."""

    # --- "my approvals" daily summary ---------------------------------------------------------------------
    async def upsert_summary_subscription(self, sub: SummarySubscription) -> None:
        """Insert or replace by user_object_id."""

    async def get_summary_subscription(self, user_object_id: str) -> SummarySubscription | None: ...

    async def list_due_summaries(self, *, now: float, limit: int = 100) -> list[SummarySubscription]:
        """Enabled subscriptions with next_due_at <= now, oldest next_due_at first."""

    async def claim_summary_day(self, user_object_id: str, *, day: str, next_due_at: float,
                                now: float) -> SummarySubscription | None:
        """Compare-and-set: if the subscription is enabled and `day` (ISO date) is later than its last_sent_day,
        set last_sent_day = day and next_due_at; return the updated subscription. None: not enabled, or that
        day was already claimed (by this or another instance)."""

    # --- typed replies: Graph subscriptions and the reply inbox -------------------------------------------------
    async def add_graph_subscription(self, sub: GraphSubscription) -> bool:
        """Insert if no subscription has this resource; False (nothing changed) if one has."""

    async def put_graph_subscription(self, sub: GraphSubscription) -> None:
        """Insert or replace by resource (the caller holds its lease)."""

    async def get_graph_subscription(self, resource: str) -> GraphSubscription | None: ...

    async def find_graph_subscription(self, subscription_id: str) -> GraphSubscription | None:
        """By Graph's subscription id (what a notification names)."""

    async def list_graph_subscriptions(self) -> list[GraphSubscription]:
        """Ordered by resource."""

    async def delete_graph_subscription(self, resource: str) -> bool: ...

    async def lease_graph_subscription(self, resource: str, owner: str, *, now: float,
                                       lease_seconds: float) -> GraphSubscription | None:
        """Compare-and-set: take the subscription's lease if it is free, expired or already `owner`'s; None when
        another owner holds it (or there is no such subscription)."""

    async def note_graph_notification(self, subscription_id: str, *, at: float) -> None:
        """Set last_notification_at (never moves it back)."""

    async def enqueue_reply(self, reply: InboundReply) -> bool:
        """Insert unless a reply with this key exists (whatever its status): False = a duplicate, nothing changed."""

    async def claim_replies(self, owner: str, *, now: float, lease_seconds: float,
                            limit: int = 20) -> list[InboundReply]:
        """Lease up to `limit` replies that are queued and due, or processing under an expired lease; oldest
        received first. Each claimed reply has attempts + 1."""

    async def finish_reply(self, key: str, owner: str, *, status: str, outcome: str, now: float,
                           retry_at: float | None = None) -> bool:
        """Release the lease: status "done"/"failed", or "queued" again with `retry_at`. False when `owner` no
        longer holds the lease (another instance took it over)."""

    async def get_reply(self, key: str) -> InboundReply | None: ...

    async def find_cards_by_activity(self, activity_id: str) -> list[PostedCard]:
        """The posted cards whose message id is `activity_id` (a thread's root message)."""
