"""Prometheus metrics: one registry per service (no global state), counters fed by the code that does the work,
gauges read from the store when scraped (cached, so a scrape every few seconds costs one cheap query at most).

Every metric is named `ml_connector_*`; README "Operating it" lists them. Label sets are bounded: stages, services,
HTTP status codes, environments and event types come from configuration, channels are capped (`max_channels`,
the rest summed under "other").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class PipelineObserver(Protocol):
    """What the pipeline reports (connector/pipeline.py)."""

    def stage_done(self, stage: str, seconds: float) -> None: ...

    def retried(self, stage: str) -> None: ...

    def parked(self, stage: str) -> None: ...


@dataclass
class StoreSnapshot:
    """What the scrape reads from the store."""

    by_status: dict[str, int]
    oldest_pending_at: float | None
    approvals_by_status: dict[str, int] = field(default_factory=dict)
    graph_subscriptions_by_status: dict[str, int] = field(default_factory=dict)
    graph_subscription_expires_at: float | None = None  # the soonest active subscription's expiry; None: none


PRESS_OUTCOMES = ("accepted", "refused", "already", "stopped")  # ApprovalService's on_press
CARD_UPDATE_RESULTS = ("ok", "gone", "retry", "failed")  # CardCopies' on_update
GRAPH_SUBSCRIPTION_STATUSES = ("new", "active", "removed", "failed")  # connector.store.GraphSubscription


class Metrics:
    """The service's metrics. Methods are cheap (a dict lookup and an add) so the hot paths can call them."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_channels: int = 20) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._clock = clock
        self.max_channels = max_channels
        r = self.registry
        self.events_received = Counter("ml_connector_events_received", "Business events stored as new",
                                       ["environment"], registry=r)
        self.events_duplicate = Counter("ml_connector_events_duplicate", "Business events F&O sent again (not "
                                        "stored twice)", ["environment"], registry=r)
        self.events_rejected = Counter("ml_connector_events_rejected", "Requests to the events endpoint refused",
                                       ["reason"], registry=r)
        self.stage_seconds = Histogram("ml_connector_stage_duration_seconds", "Time a pipeline stage took "
                                       "(successful runs)", ["stage"], buckets=_STAGE_BUCKETS, registry=r)
        self.stage_retries = Counter("ml_connector_stage_retries", "Stage failures rescheduled", ["stage"],
                                     registry=r)
        self.events_parked = Counter("ml_connector_events_parked", "Events parked for an admin", ["stage"],
                                     registry=r)
        self.outbound = Counter("ml_connector_outbound_requests", "HTTP calls to Microsoft's services by answer",
                                ["service", "status"], registry=r)
        self.throttled = Counter("ml_connector_outbound_throttled", "429 answers from Microsoft's services",
                                 ["service"], registry=r)
        self.retry_after_seconds = Counter("ml_connector_outbound_retry_after_seconds", "Seconds of Retry-After "
                                           "asked by Microsoft's services", ["service"], registry=r)
        self.approval_presses = Counter("ml_connector_approval_presses", "Approval presses (button, list or "
                                        "typed reply) by what happened", ["outcome"], registry=r)
        self.card_updates = Counter("ml_connector_teams_card_updates", "Approval card copies updated in place by "
                                    "result", ["result"], registry=r)
        for outcome in PRESS_OUTCOMES:  # present at 0 from the start, so rate() and alerts see every series
            self.approval_presses.labels(outcome)
        for result in CARD_UPDATE_RESULTS:
            self.card_updates.labels(result)
        self._event_counters: dict[str, tuple[Any, Any]] = {}  # environment -> (received, duplicate) children
        self._snapshot: StoreSnapshot | None = None
        self._snapshot_at = float("-inf")
        self._readers: list[Callable[[], Iterable[Any]]] = []
        r.register(_SnapshotCollector(self))

    # --- hot-path recorders ------------------------------------------------------------------------------------
    def event_stored(self, environment: str, new: bool) -> None:
        """One event the front door stored (new) or found stored (a duplicate). The labelled counters are kept per
        environment: prometheus_client's labels() (a lock, a tuple, checks) was most of the metrics' cost per event
        under F&O's bursts."""
        counters = self._event_counters.get(environment)
        if counters is None:
            counters = (self.events_received.labels(environment), self.events_duplicate.labels(environment))
            self._event_counters[environment] = counters
        counters[0 if new else 1].inc()

    def stage_done(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def retried(self, stage: str) -> None:
        self.stage_retries.labels(stage).inc()

    def parked(self, stage: str) -> None:
        self.events_parked.labels(stage).inc()

    def outbound_answer(self, service: str, status: int | str, retry_after: float | None = None) -> None:
        self.outbound.labels(service, str(status)).inc()
        if status == 429:
            self.throttled.labels(service).inc()
        if retry_after:
            self.retry_after_seconds.labels(service).inc(retry_after)

    def approval_press(self, outcome: str) -> None:
        """ApprovalService's `on_press`; an outcome outside PRESS_OUTCOMES would be a bug, not a new series."""
        if outcome in PRESS_OUTCOMES:
            self.approval_presses.labels(outcome).inc()

    def card_update(self, result: str) -> None:
        """CardCopies' `on_update`: one per card copy update tried."""
        if result in CARD_UPDATE_RESULTS:
            self.card_updates.labels(result).inc()

    # --- read at scrape ----------------------------------------------------------------------------------------
    def add_reader(self, reader: Callable[[], Iterable[Any]]) -> None:
        """A callable yielding prometheus metric families at scrape time (tokens, pacing)."""
        self._readers.append(reader)

    def snapshot_due(self, max_age: float) -> bool:
        return self._clock() - self._snapshot_at >= max_age

    def set_snapshot(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot
        self._snapshot_at = self._clock()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SnapshotCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Any]:
        snap = self._m._snapshot
        if snap is not None:
            states = GaugeMetricFamily("ml_connector_events", "Events in the store by state", labels=["state"])
            for state, n in sorted(snap.by_status.items()):
                states.add_metric([state], n)
            yield states
            age = GaugeMetricFamily("ml_connector_oldest_pending_age_seconds",
                                    "Age of the oldest event waiting to be processed (0 when none)")
            age.add_metric([], max(0.0, self._m._clock() - snap.oldest_pending_at)
                           if snap.oldest_pending_at is not None else 0.0)
            yield age
            approvals = GaugeMetricFamily("ml_connector_approvals", "Approvals in the store by status",
                                          labels=["status"])
            for status, n in sorted(snap.approvals_by_status.items()):
                approvals.add_metric([status], n)
            yield approvals
            subs = GaugeMetricFamily("ml_connector_graph_subscriptions", "Graph subscriptions for typed replies "
                                     "by status", labels=["status"])
            counts = dict.fromkeys(GRAPH_SUBSCRIPTION_STATUSES, 0) | snap.graph_subscriptions_by_status
            for status, n in sorted(counts.items()):
                subs.add_metric([status], n)
            yield subs
            if snap.graph_subscription_expires_at is not None:  # absent, not 0, when no subscription is active
                expiry = GaugeMetricFamily("ml_connector_graph_subscription_expiry_seconds",
                                           "Seconds until the soonest active Graph subscription expires")
                expiry.add_metric([], max(0.0, snap.graph_subscription_expires_at - self._m._clock()))
                yield expiry
        for reader in self._m._readers:
            yield from reader()


def token_families(sources: Callable[[], Iterable[Any]], now: Callable[[], float]) -> Callable[[], Iterable[Any]]:
    """Token acquisitions, failures and seconds to expiry per scope (connector/tokens.TokenSource)."""

    def read() -> Iterable[Any]:
        ok = CounterMetricFamily("ml_connector_token_acquisitions", "Tokens obtained from Entra ID",
                                 labels=["scope"])
        failed = CounterMetricFamily("ml_connector_token_failures", "Token requests Entra ID refused or did not "
                                     "answer", labels=["scope"])
        left = GaugeMetricFamily("ml_connector_token_expiry_seconds", "Seconds until the current token expires",
                                 labels=["scope"])
        for src in sources():
            ok.add_metric([src.scope], src.acquisitions)
            failed.add_metric([src.scope], src.failures)
            if src.expires_at != float("-inf"):
                left.add_metric([src.scope], max(0.0, src.expires_at - now()))
        return [ok, failed, left]

    return read


def backlog_families(backlogs: Callable[[], dict[str, int]], max_channels: int) -> Callable[[], Iterable[Any]]:
    """Cards queued per Teams channel: the `max_channels` longest queues by name, the rest as "other"."""

    def read() -> Iterable[Any]:
        fam = GaugeMetricFamily("ml_connector_pacing_backlog", "Cards waiting for a pacing slot per channel",
                                labels=["channel"])
        ranked = sorted(backlogs().items(), key=lambda kv: (-kv[1], kv[0]))
        for channel, n in ranked[:max_channels]:
            fam.add_metric([channel], n)
        rest = sum(n for _, n in ranked[max_channels:])
        if rest:
            fam.add_metric(["other"], rest)
        return [fam]

    return read
