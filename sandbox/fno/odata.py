"""F&O's OData endpoint (`/data`) as an aiohttp app, enforcing F&O's rules.

Front door for every `/data` request, in F&O's order: bearer token (audience = the environment base URL) ->
caller (app-only: client id -> "Microsoft Entra ID applications" -> F&O user; delegated: UPN -> SystemUsers) ->
service protection (429 + Retry-After) -> injected faults and latency -> handler. Errors use F&O's error body.
The token check is handed in (`verify_token(token, audience) -> claims`); this module knows no signing keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import quote

from aiohttp import web

from sandbox.fno import workflow
from sandbox.fno.metadata import metadata_xml
from sandbox.fno.query import Query, QueryError, parse_expand, parse_key, parse_query, run_query
from sandbox.fno.schema import Schema
from sandbox.fno.state import NAMESPACE, EntityType, FnoState, to_odata_row
from sandbox.fno.throttle import ServiceProtection, Throttled

ODATA_JSON = "application/json; odata.metadata=minimal"
VerifyToken = Callable[[str, str], Mapping[str, Any]]


@dataclass
class FnoConfig:
    environment: str = "contoso-sandbox"
    base_url: str = ""  # https://127.0.0.1:PORT, no trailing slash: token audience and link base
    page_size: int = 10_000
    latency_ms: float = 0.0  # added to every /data request (benchmarks use 20)
    unknown_client_status: int = 403
    validate_action: str = "validate"
    complete_action: str = "complete"
    outcome_param: str = "outcome"
    comment_param: str = "comment"
    assignee_only: bool = False  # complete by someone other than the assignee -> 403 (validate -> false)
    # who may complete a work item (sso-obo.md §4: unconfirmed in real F&O): any_authenticated (today's app-only
    # behaviour) | assignee_only | assignee_or_delegate (`delegates`: assignee user id -> their delegate's user id)
    completion_policy: str = "any_authenticated"
    delegates: dict[str, str] = field(default_factory=dict)
    # per bound action (by its configured name, e.g. {"complete": 5000}): extra time before F&O answers
    action_latency_ms: dict[str, float] = field(default_factory=dict)
    action_latency_commit_first: bool = False  # False: wait, then act (F&O is slow); True: act, then answer late


@dataclass
class Fault:
    status: int
    remaining: int
    path_prefix: str = "/data"


@dataclass
class Stats:
    total: int = 0
    by_set: Counter = field(default_factory=Counter)
    by_status: Counter = field(default_factory=Counter)
    throttled: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=200))
    validate_calls: Counter = field(default_factory=Counter)  # work item id -> validate calls that reached F&O
    complete_calls: Counter = field(default_factory=Counter)  # work item id -> complete calls (any answer)
    completions: list = field(default_factory=list)  # {work_item_id, completed_by, via: delegated|app, client_id}

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.total, "by_set": dict(self.by_set), "by_status": {str(k): v for k, v in
                self.by_status.items()}, "throttled": self.throttled, "recent": list(self.recent),
                "validate_calls": dict(self.validate_calls), "complete_calls": dict(self.complete_calls),
                "completions": list(self.completions)}


@dataclass(frozen=True)
class Caller:
    user_id: str
    company: str
    client_id: str
    delegated: bool


class FnoError(Exception):
    """Answered with F&O's error body."""

    def __init__(self, status: int, message: str, inner: str | None = None,
                 kind: str = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataException",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.inner, self.kind, self.headers = status, message, inner, kind, headers


def error_response(err: FnoError) -> web.Response:
    body = {"error": {"code": "", "message": err.message, "innererror": {
        "message": err.inner or err.message, "type": err.kind,
        "stacktrace": "   at Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataController"
                      ".ProcessRequest()\r\n   at (sandbox)"}}}
    return web.Response(status=err.status, text=json.dumps(body), headers={"Content-Type": ODATA_JSON,
                                                                            **(err.headers or {})})


class FnoService:
    """Everything the OData app needs, handed in: state, config, throttling, the token check, time."""

    def __init__(self, state: FnoState, verify_token: VerifyToken, *, config: FnoConfig | None = None,
                 protection: ServiceProtection | None = None, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.state, self.verify_token = state, verify_token
        self.config = config or FnoConfig()
        self.protection = protection or ServiceProtection(clock=clock)
        self.clock, self.now, self.sleep = clock, now, sleep
        self.stats = Stats()
        self.faults: list[Fault] = []
        self.on_complete: list[Callable[[dict[str, Any], Caller], Any]] = []  # scenario hooks
        self.schema = Schema()  # what this environment lacks (admin knob); rows stay complete underneath

    def exposed(self, set_name: str) -> EntityType | None:
        """The entity type as this environment's OData exposes it, or None if it has no such entity set."""
        return self.schema.view(self.state.entity_type(set_name))

    def actions(self) -> tuple[str, str]:
        return self.config.validate_action, self.config.complete_action

    def take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.remaining > 0 and path.startswith(fault.path_prefix):
                fault.remaining -= 1
                return fault
        self.faults = [f for f in self.faults if f.remaining > 0]
        return None

    def authenticate(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise FnoError(401, "Authorization has been denied for this request.", "No bearer token.",
                           headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = dict(self.verify_token(token.strip(), self.config.base_url))
        except Exception as exc:  # any failure of the check is a 401, as in F&O
            raise FnoError(401, "Authorization has been denied for this request.", f"Invalid token: {exc}",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        client_id = str(claims.get("appid") or claims.get("azp") or "")
        delegated = "scp" in claims
        if delegated:
            upn = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
            user = self.state.delegated_user(upn, claims.get("oid"))
        else:
            user = self.state.app_user(client_id)
        if user is None or not user.get("Enabled"):
            who = f"user '{claims.get('upn') or claims.get('preferred_username')}'" if delegated else \
                f"application '{client_id}'"
            raise FnoError(self.config.unknown_client_status, "Authorization has been denied for this request.",
                           f"The {who} is not mapped to an enabled user in Microsoft Entra ID applications / "
                           f"users.")
        return Caller(user["UserID"], user["Company"] or "dat", client_id, delegated)


SERVICE = web.AppKey("fno_service", FnoService)
CALLER = web.RequestKey("fno_caller", Caller) if hasattr(web, "RequestKey") else "fno_caller"


@web.middleware
async def front_door(request: web.Request, handler):
    if not request.path.startswith("/data"):
        return await handler(request)
    svc = request.app[SERVICE]
    svc.stats.total += 1
    svc.stats.by_set[_set_name(request.path)] += 1
    response = await _guarded(svc, request, handler)
    svc.stats.by_status[response.status] += 1
    svc.stats.recent.append({"method": request.method, "path": request.path_qs, "status": response.status})
    return response


async def _guarded(svc: FnoService, request: web.Request, handler) -> web.StreamResponse:
    try:
        caller = svc.authenticate(request)
    except FnoError as err:
        return error_response(err)
    verdict = svc.protection.admit((caller.user_id.lower(), caller.client_id.lower()))
    if isinstance(verdict, Throttled):
        svc.stats.throttled += 1
        return error_response(FnoError(429, verdict.message, headers={"Retry-After": str(verdict.retry_after)}))
    try:
        fault = svc.take_fault(request.path)
        if fault:
            raise FnoError(fault.status, "An error has occurred.", "Injected fault (sandbox).")
        if svc.config.latency_ms:
            await svc.sleep(svc.config.latency_ms / 1000)
        request[CALLER] = caller
        return await handler(request)
    except FnoError as err:
        return error_response(err)
    except QueryError as err:
        return error_response(FnoError(400, "The query specified in the URI is not valid. " + str(err), str(err),
                                       "Microsoft.OData.ODataException"))
    finally:
        svc.protection.done(verdict)


def _set_name(path: str) -> str:
    rest = path[len("/data"):].strip("/")
    return rest.split("(")[0].split("/")[0] or "(service)"


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, ensure_ascii=False),
                        headers={"Content-Type": ODATA_JSON, "OData-Version": "4.0"})


def _base(svc: FnoService, request: web.Request) -> str:
    return svc.config.base_url or f"{request.scheme}://{request.host}"


def _cross_company(request: web.Request) -> bool:
    return request.query.get("cross-company", "").lower() == "true"


def _split_segment(svc: FnoService, segment: str) -> tuple[EntityType, str | None]:
    name, paren, rest = segment.partition("(")
    et = svc.exposed(name)
    if et is None:
        raise FnoError(404, f"No HTTP resource was found that matches the request URI '/data/{segment}'.")
    if paren and not rest.endswith(")"):
        raise QueryError(f"Bad key segment '{segment}'.")
    return et, rest[:-1] if paren else None


def _visible(et: EntityType, row: dict[str, Any], caller: Caller, cross: bool) -> bool:
    return cross or not et.company_specific or (row["dataAreaId"] or "").lower() == caller.company.lower()


def _key(svc: FnoService, et: EntityType, key_text: str) -> dict[str, Any]:
    """A key segment parsed against the exposed type; rows are stored under the full key, so an entity whose
    key field was removed cannot be addressed by key (its key no longer matches)."""
    key = parse_key(et, key_text)
    if len(et.keys) != len(svc.state.types[et.set_name].keys):
        raise QueryError("The number of keys specified in the URI does not match number of key properties for "
                         f"the resource '{et.qualified_name}'.")
    return key


async def service_document(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    base = _base(svc, request)
    return _json({"@odata.context": f"{base}/data/$metadata",
                  "value": [{"name": et.set_name, "kind": "EntitySet", "url": et.set_name}
                            for et in svc.schema.views(svc.state.types.values())]})


async def metadata(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    xml = metadata_xml(svc.schema.views(svc.state.types.values()), svc.config.validate_action,
                       svc.config.complete_action, svc.config.outcome_param, svc.config.comment_param,
                       omit_actions=_missing_actions(svc))
    return web.Response(text=xml, content_type="application/xml")


def _missing_actions(svc: FnoService) -> set[str]:
    if svc.exposed(workflow.SET) is None:  # no work-item entity, no actions bound to it
        return set(svc.actions())
    return set(svc.schema.removed_actions)


async def read(request: web.Request) -> web.Response:
    svc, caller = request.app[SERVICE], request[CALLER]
    tail = request.match_info["tail"]
    if "/" in tail:
        raise FnoError(404, f"No HTTP resource was found that matches the request URI '/data/{tail}'.")
    et, key_text = _split_segment(svc, tail)
    cross = _cross_company(request)
    base = _base(svc, request)
    stored_type = svc.state.types[et.set_name]  # companies follow the stored rows, whatever is exposed
    if key_text is not None:
        key = _key(svc, et, key_text)
        row = svc.state.get(et.set_name, key)
        if row is None or not _visible(stored_type, row, caller, cross):
            raise FnoError(404, f"Resource not found for the segment '{et.set_name}'.")
        return _json({"@odata.context": f"{base}/data/$metadata#{et.set_name}/$entity",
                      "@odata.etag": svc.state.etag(et.set_name, row), **to_odata_row(et, row)})
    params = {k: v for k, v in request.query.items()}
    q = parse_query(et, params)
    expands = _expands(svc, et, params["$expand"]) if "$expand" in params else []
    rows = [r for r in svc.state.rows(et.set_name) if _visible(stored_type, r, caller, cross)]
    page, total = run_query(et, rows, q)
    body: dict[str, Any] = {"@odata.context": f"{base}/data/$metadata#{et.set_name}"
                            + (f"({','.join(q.select)})" if q.select else "")}
    if q.count:
        body["@odata.count"] = total
    next_link = None
    size = max(1, svc.config.page_size)
    if len(page) > size:
        page = page[:size]
        next_link = _next_link(base, request, q.skip + size, None if q.top is None else q.top - size)
    body["value"] = [{"@odata.etag": svc.state.etag(et.set_name, r), **to_odata_row(et, r, q.select),
                      **_expanded(svc, caller, cross, r, expands)} for r in page]
    if next_link:
        body["@odata.nextLink"] = next_link
    return _json(body)


def _expands(svc: FnoService, et: EntityType, text: str) -> list[tuple[str, EntityType, Query, bool, tuple]]:
    """(navigation, target type, nested query, many, join) per `$expand` item; 400 as F&O for an unknown one."""
    out = []
    for item in parse_expand(text):
        nav = et.navs.get(item.navigation)
        target = svc.exposed(nav.target) if nav is not None else None
        if nav is None or target is None:
            raise FnoError(400, "The query specified in the URI is not valid. Could not find a property named "
                           f"'{item.navigation}' on type '{et.qualified_name}'.")
        out.append((item.navigation, target, parse_query(target, item.options), nav.many, nav.on))
    return out


def _expanded(svc: FnoService, caller: Caller, cross: bool, row: dict[str, Any],
              expands: list[tuple[str, EntityType, Query, bool, tuple]]) -> dict[str, Any]:
    """The related rows of `row`, each shaped as a separate read of the target set would shape it."""
    out: dict[str, Any] = {}
    for name, target, q, many, on in expands:
        stored = svc.state.types[target.set_name]
        related = [r for r in svc.state.rows(target.set_name)
                   if all(r.get(theirs) == row.get(ours) for ours, theirs in on)
                   and _visible(stored, r, caller, cross)]
        found, _ = run_query(target, related, q)
        shaped = [{"@odata.etag": svc.state.etag(target.set_name, r), **to_odata_row(target, r, q.select)}
                  for r in found]
        out[name] = shaped if many else (shaped[0] if shaped else None)
    return out


def _next_link(base: str, request: web.Request, skip: int, top: int | None) -> str:
    pairs = [(k, v) for k, v in request.query.items() if k not in ("$skip", "$top")]
    if top is not None:
        pairs.append(("$top", str(top)))
    pairs.append(("$skip", str(skip)))
    query = "&".join(f"{quote(k, safe='$-')}={quote(v, safe=chr(39) + '$-_.*,()')}" for k, v in pairs)
    return f"{base}{request.path}?{query}"


async def action(request: web.Request) -> web.Response:
    """Bound actions on one work item: validate (is it still actionable?) and complete (see fno/workflow.py).

    Calls that get here (auth and throttling passed) are counted per work item in stats (validate_calls,
    complete_calls), whatever they answer."""
    svc, caller = request.app[SERVICE], request[CALLER]
    tail = request.match_info["tail"]
    segment, _, action_name = tail.partition("/")
    et, key_text = _split_segment(svc, segment)
    prefix = NAMESPACE + "."
    name = action_name[len(prefix):] if action_name.startswith(prefix) else None
    cfg = svc.config
    if (et.set_name != workflow.SET or key_text is None or name not in (cfg.validate_action, cfg.complete_action)
            or not svc.schema.has_action(name)):
        raise FnoError(404, f"No HTTP resource was found that matches the request URI '/data/{tail}'.")
    key = _key(svc, et, key_text)
    stored = svc.state.get(et.set_name, key)
    counter = svc.stats.validate_calls if name == cfg.validate_action else svc.stats.complete_calls
    counter[stored["Id"] if stored else str(key.get("Id"))] += 1
    try:
        params = await request.json() if request.can_read_body else {}
    except ValueError:
        raise FnoError(400, "The request body is not valid JSON.") from None
    if not isinstance(params, dict):
        raise FnoError(400, "The action parameters must be a JSON object.")
    delay = float(cfg.action_latency_ms.get(name, 0) or 0) / 1000
    if delay and not cfg.action_latency_commit_first:
        await svc.sleep(delay)
    # from here to the answer nothing awaits: the check and the change are one transaction
    item = svc.state.get(et.set_name, key)
    if item is None:
        raise FnoError(404, f"Resource not found for the segment '{et.set_name}'.")
    if name == cfg.validate_action:
        ok = workflow.is_pending(item) and may_complete(cfg, item, caller) is None
        response = _json({"@odata.context": f"{_base(svc, request)}/data/$metadata#Edm.Boolean", "value": ok})
    else:
        response = await _complete(svc, caller, item, params)
    if delay and cfg.action_latency_commit_first:
        await svc.sleep(delay)
    return response


POLICIES = ("any_authenticated", "assignee_only", "assignee_or_delegate")


def may_complete(cfg: FnoConfig, item: dict[str, Any], caller: Caller) -> str | None:
    """None when the completion policy lets `caller` complete `item`, else F&O's refusal text (invented, [U])."""
    policy = "assignee_only" if cfg.assignee_only else cfg.completion_policy
    if policy not in POLICIES:
        return f"The sandbox's completion_policy {policy!r} is not one of {POLICIES}."
    if policy == "any_authenticated" or workflow.is_assignee(item, caller.user_id):
        return None
    delegate = {k.lower(): v for k, v in cfg.delegates.items()}.get((item.get("UserId") or "").lower())
    if policy == "assignee_or_delegate" and delegate and delegate.lower() == caller.user_id.lower():
        return None
    return f"User {caller.user_id} is not the assignee of work item {item['Id']} ({item['UserId']})."


async def _complete(svc: FnoService, caller: Caller, item: dict[str, Any], params: dict[str, Any]) -> web.Response:
    cfg = svc.config
    xpp = "Microsoft.Dynamics.Ax.Xpp.ErrorException"
    if not workflow.is_pending(item):
        text = f"Work item {item['Id']} is not pending: its status is {item['Status']}."
        raise FnoError(400, text, f"{text} The work item cannot be completed.", xpp)
    refusal = may_complete(cfg, item, caller)
    if refusal is not None:
        raise FnoError(403, refusal, refusal, xpp)
    try:
        workflow.complete(svc.state, item, by_user=caller.user_id, outcome=params.get(cfg.outcome_param),
                          comment=params.get(cfg.comment_param), now=svc.now())
    except workflow.WorkItemError as err:
        raise FnoError(err.status, err.message, f"{err.message} (parameter '{cfg.outcome_param}')", xpp) from None
    svc.stats.completions.append({"work_item_id": item["Id"], "completed_by": caller.user_id,
                                  "via": "delegated" if caller.delegated else "app", "client_id": caller.client_id})
    for hook in svc.on_complete:  # the scenario: document status and business events
        result = hook(item, caller)
        if asyncio.iscoroutine(result):
            await result
    return web.Response(status=204)


async def not_supported(request: web.Request) -> web.Response:
    raise FnoError(405, "An error has occurred.", f"{request.method} is not supported by the sandbox.")


def create_fno_app(service: FnoService, admin: Callable[[web.Application], None] | None = None) -> web.Application:
    """The F&O web app. `admin` (optional) adds `/_sandbox/...` routes, which bypass auth and throttling."""
    app = web.Application(middlewares=[front_door])
    app[SERVICE] = service
    app.router.add_get("/data", service_document)
    app.router.add_get("/data/", service_document)
    app.router.add_get("/data/$metadata", metadata)
    app.router.add_get("/data/{tail:.+}", read)
    app.router.add_post("/data/{tail:.+}", action)
    app.router.add_route("*", "/data/{tail:.+}", not_supported)
    if admin:
        admin(app)
    return app
