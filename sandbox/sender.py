"""F&O's Business Events HTTPS sender: endpoints, activations, delivery with retries, the error log, fault knobs.

Behaves like F&O's HTTPS adapter: each event is ONE POST of one JSON object (`Content-Type: application/json`) to
the endpoint URL (secret embedded in it); success only on 2xx within the timeout; otherwise `retry_count` retries
`retry_wait` apart, then the error log (Resend re-runs the retries, Download payload returns the JSON). Activating
an event sends `BusinessEventsTestEndpointContract` first and fails if that is not accepted.
Events go through a queue served by `threads` workers (F&O's processing threads), so by default they arrive in
commit order. Knobs: duplicates, out-of-order bundles, bursts, delays, 2021-style envelopes, unknown extra fields.
Time (sleep, now) and randomness are handed in. Knows nothing about F&O's data: `scenario.py` builds the fields.

Admin API (`add_sender_admin_routes`, under /_sandbox/events/):
  GET/POST endpoints {url, name} -> {id}; DELETE endpoints/{id}
  POST activate {event_id | event_ids, endpoint, legal_entity=""} (sends the test message; 502 if refused);
  POST deactivate; GET activations
  GET/POST config {retry_count, retry_wait, timeout, success_codes, max_endpoints_per_event, duplicate_probability,
                   duplicate_next, out_of_order, delay, legacy_envelope, extra_fields}
  POST raise {business_event_id, legal_entity, fields, initiating_user_oid} -> {"events": [payload]}
  POST flush (release held out-of-order events); POST drain?timeout=30 (wait for the queue)
  GET log?since=<seq> (every delivery with payload and attempts); GET errors; GET errors/{id}/payload;
  POST errors/{id}/resend {endpoint?} (re-runs the retries, optionally to another endpoint)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import random
import ssl
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

from sandbox.admin_http import json_object

from sandbox.contracts import TEST_CONTROL_NUMBER, TEST_EVENT_ID, ControlNumbers, envelope


@dataclass
class SenderSettings:
    retry_count: int = 3  # "Retry count" on Business events parameters
    retry_wait: float = 1.0  # seconds, "Wait time between retries"
    timeout: float = 10.0  # seconds, "HTTP timeout"
    success_codes: list[int] | None = None  # None: any 2xx
    max_endpoints_per_event: int = 10
    threads: int = 1  # parallel senders pulling from the queue
    # fault knobs
    duplicate_probability: float = 0.0  # each delivery is repeated with this probability
    duplicate_next: int = 0  # the next N events are delivered twice
    out_of_order: int = 0  # hold N events, then deliver them in a shuffled order (never the original one)
    delay: float = 0.0  # seconds before each delivery
    legacy_envelope: bool = False  # 2021-style: no BusinessEventLegalEntity/EventTimeIso8601/InitiatingUser...
    extra_fields: dict[str, Any] = field(default_factory=dict)  # customer extensions: unknown fields

    def succeeded(self, status: int) -> bool:
        return status in self.success_codes if self.success_codes else 200 <= status <= 299


@dataclass
class Endpoint:
    id: str
    name: str
    url: str


@dataclass
class Activation:
    event_id: str
    legal_entity: str  # "" = all legal entities
    endpoint_id: str


@dataclass
class Delivery:
    """One delivery (with its attempts) of one payload to one endpoint: a row of the delivery log."""

    seq: int
    endpoint_id: str
    business_event_id: str
    event_id: str
    control_number: int
    legal_entity: str
    kind: str  # event | test | duplicate | resend | burst
    payload: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool | None = None  # None while in progress


@dataclass
class ErrorEntry:
    id: str
    endpoint_id: str
    payload: dict[str, Any]
    attempts: int
    last_error: str
    last_process_time: str


class ActivationFailed(Exception):
    """The endpoint did not accept the test message: F&O refuses to activate."""


class EventSender:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, settings: SenderSettings | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 rng: random.Random | None = None) -> None:
        self.settings = settings or SenderSettings()
        self.endpoints: dict[str, Endpoint] = {}
        self.activations: list[Activation] = []
        self.log: list[Delivery] = []
        self.errors: dict[str, ErrorEntry] = {}
        self._ssl, self._sleep, self._now = ssl_context, sleep, now
        self._rng = rng or random.Random()
        self._control = ControlNumbers(self._rng)
        self._seq = itertools.count(1)
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._held: list[Delivery] = []
        self._workers: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl else aiohttp.TCPConnector()
        self._session = aiohttp.ClientSession(connector=connector)
        self._workers = [asyncio.create_task(self._worker()) for _ in range(max(1, self.settings.threads))]

    async def close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session:
            await self._session.close()
            self._session = None

    # --- configuration ------------------------------------------------------------------------------------
    def add_endpoint(self, url: str, name: str = "") -> Endpoint:
        endpoint = Endpoint(str(uuid.uuid4()), name or url.split("?")[0], url)
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint_id: str) -> bool:
        self.activations = [a for a in self.activations if a.endpoint_id != endpoint_id]
        return self.endpoints.pop(endpoint_id, None) is not None

    async def activate(self, event_id: str, endpoint_id: str, legal_entity: str = "") -> Delivery:
        """Send the test message, then activate. Raises ActivationFailed (not activated) or KeyError."""
        endpoint = self.endpoints[endpoint_id]
        if sum(a.event_id == event_id and a.legal_entity.lower() == legal_entity.lower()
               for a in self.activations) >= self.settings.max_endpoints_per_event:
            raise ActivationFailed(f"{event_id} already has {self.settings.max_endpoints_per_event} endpoints")
        payload = envelope(TEST_EVENT_ID, {}, legal_entity=legal_entity or "dat", control_number=TEST_CONTROL_NUMBER,
                           event_id=str(uuid.uuid4()), event_time=self._now(), initiating_user_oid=None)
        delivery = self._new_delivery(endpoint.id, payload, "test")
        await self._deliver(delivery, retries=0, to_error_log=False)
        if not delivery.delivered:
            raise ActivationFailed(f"test message to {endpoint.name} failed: {delivery.attempts[-1]}")
        self.activations.append(Activation(event_id, legal_entity, endpoint.id))
        return delivery

    def deactivate(self, event_id: str, legal_entity: str = "", endpoint_id: str | None = None) -> int:
        before = len(self.activations)
        self.activations = [a for a in self.activations if not (
            a.event_id == event_id and a.legal_entity.lower() == legal_entity.lower()
            and endpoint_id in (None, a.endpoint_id))]
        return before - len(self.activations)

    def targets(self, business_event_id: str, legal_entity: str) -> list[str]:
        """Endpoint ids with an activation for this event in this legal entity (or for all)."""
        ids = [a.endpoint_id for a in self.activations if a.event_id == business_event_id
               and a.legal_entity.lower() in ("", legal_entity.lower())]
        return list(dict.fromkeys(ids))

    # --- raising events -----------------------------------------------------------------------------------
    def build(self, business_event_id: str, fields: dict[str, Any], *, legal_entity: str,
              initiating_user_oid: str | None = None) -> dict[str, Any]:
        """The payload F&O would commit for this event (takes the next ControlNumber)."""
        s = self.settings
        return envelope(business_event_id, fields, legal_entity=legal_entity, control_number=self._control.next(),
                        event_id=str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), event_time=self._now(),
                        initiating_user_oid=initiating_user_oid, legacy=s.legacy_envelope, extra=s.extra_fields)

    def raise_event(self, business_event_id: str, fields: dict[str, Any], *, legal_entity: str,
                    initiating_user_oid: str | None = None) -> dict[str, Any]:
        """Commit an event: queue one delivery per active endpoint (none if inactive). Returns the payload."""
        payload = self.build(business_event_id, fields, legal_entity=legal_entity,
                             initiating_user_oid=initiating_user_oid)
        for endpoint_id in self.targets(business_event_id, legal_entity):
            self._enqueue(self._new_delivery(endpoint_id, payload, "event"))
        return payload

    def _enqueue(self, delivery: Delivery) -> None:
        s = self.settings
        copies = [delivery]
        if s.duplicate_next > 0 or (s.duplicate_probability and self._rng.random() < s.duplicate_probability):
            s.duplicate_next = max(0, s.duplicate_next - 1)
            copies.append(self._new_delivery(delivery.endpoint_id, delivery.payload, "duplicate"))
        if s.out_of_order > 1:
            self._held.extend(copies)
            if len(self._held) >= s.out_of_order:
                self.flush()
            return
        for item in copies:
            self._queue.put_nowait(item)

    def flush(self) -> int:
        """Release held (out-of-order) deliveries in a shuffled order that differs from commit order."""
        held, self._held = self._held, []
        order = list(held)
        self._rng.shuffle(order)
        if len(order) > 1 and order == held:
            order.reverse()
        for item in order:
            self._queue.put_nowait(item)
        return len(order)

    async def burst(self, events: list[tuple[str, dict[str, Any], str, str | None]],
                    concurrency: int) -> tuple[list[dict[str, Any]], list[Delivery]]:
        """Commit `events` (event id, fields, legal entity, initiating oid) and deliver them as fast as possible,
        `concurrency` at a time, bypassing the queue. Returns (payloads, deliveries)."""
        payloads, deliveries = [], []
        for business_event_id, fields, le, oid in events:
            payload = self.build(business_event_id, fields, legal_entity=le, initiating_user_oid=oid)
            payloads.append(payload)
            deliveries += [self._new_delivery(eid, payload, "burst") for eid in self.targets(business_event_id, le)]
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(d: Delivery) -> None:
            async with gate:
                await self._deliver(d)
        await asyncio.gather(*(one(d) for d in deliveries))
        return payloads, deliveries

    async def drain(self) -> None:
        """Wait until every queued delivery (retries included) has finished. Held deliveries are not waited for."""
        await self._queue.join()

    # --- errors -------------------------------------------------------------------------------------------
    async def resend(self, error_id: str, endpoint_id: str | None = None) -> Delivery:
        """Re-run outbound processing (with retries) for an error, optionally to another endpoint."""
        entry = self.errors.pop(error_id)
        delivery = self._new_delivery(endpoint_id or entry.endpoint_id, entry.payload, "resend")
        await self._deliver(delivery)
        return delivery

    # --- delivery -----------------------------------------------------------------------------------------
    def _new_delivery(self, endpoint_id: str, payload: dict[str, Any], kind: str) -> Delivery:
        delivery = Delivery(next(self._seq), endpoint_id, payload["BusinessEventId"], payload["EventId"],
                            payload["ControlNumber"], payload.get("BusinessEventLegalEntity")
                            or payload.get("LegalEntity", ""), kind, payload)
        self.log.append(delivery)
        return delivery

    async def _worker(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            except Exception as exc:  # a worker never dies: record and go on
                delivery.attempts.append({"status": None, "error": f"sender bug: {exc!r}"})
                delivery.delivered = False
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: Delivery, *, retries: int | None = None, to_error_log: bool = True) -> None:
        s = self.settings
        retries = s.retry_count if retries is None else retries
        if s.delay:
            await self._sleep(s.delay)
        endpoint = self.endpoints.get(delivery.endpoint_id)
        for attempt in range(retries + 1):
            if attempt:
                await self._sleep(s.retry_wait)
            status, error = await self._post(endpoint, delivery.payload)
            delivery.attempts.append({"status": status, "error": error, "at": self._now().isoformat()})
            if status is not None and s.succeeded(status):
                delivery.delivered = True
                return
        delivery.delivered = False
        if to_error_log:
            entry_id = str(uuid.uuid4())
            last = delivery.attempts[-1]
            self.errors[entry_id] = ErrorEntry(entry_id, delivery.endpoint_id, delivery.payload, len(delivery.attempts),
                                               last["error"] or f"HTTP {last['status']}", self._now().isoformat())

    async def _post(self, endpoint: Endpoint | None, payload: dict[str, Any]) -> tuple[int | None, str | None]:
        if endpoint is None:
            return None, "endpoint not found"
        if self._session is None:
            return None, "sender not started"
        body = _json_bytes(payload)
        try:
            async with self._session.post(endpoint.url, data=body, headers={"Content-Type": "application/json"},
                                          allow_redirects=False,  # a 3xx is not a delivery
                                          timeout=aiohttp.ClientTimeout(total=self.settings.timeout)) as resp:
                await resp.read()
                return resp.status, None if self.settings.succeeded(resp.status) else f"HTTP {resp.status}"
        except asyncio.TimeoutError:
            return None, f"timeout after {self.settings.timeout:g} s"
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            return None, f"{type(exc).__name__}: {exc}"


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def delivery_view(d: Delivery) -> dict[str, Any]:
    return asdict(d)


def error_view(e: ErrorEntry, with_payload: bool = False) -> dict[str, Any]:
    data = asdict(e)
    if not with_payload:
        data.pop("payload")
        data["business_event_id"] = e.payload.get("BusinessEventId")
        data["event_id"] = e.payload.get("EventId")
        data["control_number"] = e.payload.get("ControlNumber")
    return data


# --- admin API: /_sandbox/events/ ------------------------------------------------------------------------------
SENDER = web.AppKey("event_sender", EventSender)


async def _list_endpoints(request: web.Request) -> web.Response:
    return web.json_response([asdict(e) for e in request.app[SENDER].endpoints.values()])


async def _add_endpoint(request: web.Request) -> web.Response:
    body = await json_object(request)
    if not str(body.get("url", "")).startswith(("http://", "https://")):
        raise web.HTTPBadRequest(text="give an http(s) url")
    return web.json_response(asdict(request.app[SENDER].add_endpoint(body["url"], body.get("name", ""))))


async def _remove_endpoint(request: web.Request) -> web.Response:
    return web.json_response({"deleted": request.app[SENDER].remove_endpoint(request.match_info["id"])})


async def _activate(request: web.Request) -> web.Response:
    body, sender = await json_object(request), request.app[SENDER]
    ids = body.get("event_ids") or ([body["event_id"]] if body.get("event_id") else [])
    endpoint_id = body.get("endpoint") or body.get("endpoint_id")
    if not ids or endpoint_id not in sender.endpoints:
        raise web.HTTPBadRequest(text="give event_id(s) and a registered endpoint id")
    tests: list[dict[str, Any]] = []
    done: list[str] = []
    for event_id in ids:
        try:
            tests.append(delivery_view(await sender.activate(event_id, endpoint_id, body.get("legal_entity", ""))))
        except ActivationFailed as exc:
            return web.json_response({"error": str(exc), "activated": done}, status=502)
        done.append(event_id)
    return web.json_response({"activated": ids, "test_deliveries": tests})


async def _deactivate(request: web.Request) -> web.Response:
    body = await json_object(request)
    removed = request.app[SENDER].deactivate(body.get("event_id", ""), body.get("legal_entity", ""),
                                             body.get("endpoint") or body.get("endpoint_id"))
    return web.json_response({"removed": removed})


async def _activations(request: web.Request) -> web.Response:
    return web.json_response([asdict(a) for a in request.app[SENDER].activations])


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[SENDER].settings))


async def _set_config(request: web.Request) -> web.Response:
    body, settings = await json_object(request), request.app[SENDER].settings
    for name, value in body.items():
        if not hasattr(settings, name) or name == "threads":
            raise web.HTTPBadRequest(text=f"unknown or fixed setting {name}")
        setattr(settings, name, value)
    return web.json_response(asdict(settings))


async def _raise(request: web.Request) -> web.Response:
    body = await json_object(request)
    if not body.get("business_event_id") or not isinstance(body.get("fields", {}), dict):
        raise web.HTTPBadRequest(text="give business_event_id, legal_entity and fields")
    payload = request.app[SENDER].raise_event(body["business_event_id"], body.get("fields", {}),
                                              legal_entity=body.get("legal_entity", "usmf"),
                                              initiating_user_oid=body.get("initiating_user_oid"))
    return web.json_response({"events": [payload]})


async def _flush(request: web.Request) -> web.Response:
    return web.json_response({"released": request.app[SENDER].flush()})


async def _drain(request: web.Request) -> web.Response:
    timeout = float(request.query.get("timeout", "30"))
    try:
        await asyncio.wait_for(request.app[SENDER].drain(), timeout)
    except asyncio.TimeoutError:
        return web.json_response({"drained": False}, status=504)
    return web.json_response({"drained": True})


async def _log(request: web.Request) -> web.Response:
    since = int(request.query.get("since", "0"))
    return web.json_response([delivery_view(d) for d in request.app[SENDER].log if d.seq > since])


async def _errors(request: web.Request) -> web.Response:
    return web.json_response([error_view(e) for e in request.app[SENDER].errors.values()])


async def _error_payload(request: web.Request) -> web.Response:
    entry = request.app[SENDER].errors.get(request.match_info["id"])
    if entry is None:
        raise web.HTTPNotFound(text="no such error")
    return web.json_response(entry.payload)


async def _resend(request: web.Request) -> web.Response:
    body, sender = await json_object(request), request.app[SENDER]
    if request.match_info["id"] not in sender.errors:
        raise web.HTTPNotFound(text="no such error")
    delivery = await sender.resend(request.match_info["id"], body.get("endpoint") or body.get("endpoint_id"))
    return web.json_response(delivery_view(delivery))


def add_sender_admin_routes(app: web.Application, sender: EventSender) -> None:
    """Mount the sender's admin API under /_sandbox/events/ on `app`."""
    app[SENDER] = sender
    p = "/_sandbox/events"
    app.router.add_get(f"{p}/endpoints", _list_endpoints)
    app.router.add_post(f"{p}/endpoints", _add_endpoint)
    app.router.add_delete(f"{p}/endpoints/{{id}}", _remove_endpoint)
    app.router.add_post(f"{p}/activate", _activate)
    app.router.add_post(f"{p}/deactivate", _deactivate)
    app.router.add_get(f"{p}/activations", _activations)
    app.router.add_get(f"{p}/config", _get_config)
    app.router.add_post(f"{p}/config", _set_config)
    app.router.add_post(f"{p}/raise", _raise)
    app.router.add_post(f"{p}/flush", _flush)
    app.router.add_post(f"{p}/drain", _drain)
    app.router.add_get(f"{p}/log", _log)
    app.router.add_get(f"{p}/errors", _errors)
    app.router.add_get(f"{p}/errors/{{id}}/payload", _error_payload)
    app.router.add_post(f"{p}/errors/{{id}}/resend", _resend)
