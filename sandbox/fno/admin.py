"""Admin API of the F&O stand-in, under `/_sandbox/fno/` (loopback only, no auth): knobs, faults, stats.

POST throttle {count|seconds, retry_after}    resource pressure: 429 for everyone
POST limits {requests, execution_seconds, concurrent, window_seconds, penalty_seconds, user_limits}
POST fail {status, count, path_prefix}        the next `count` /data requests under the prefix answer `status`
POST config {page_size, latency_ms, unknown_client_status, assignee_only, validate_action, complete_action,
             outcome_param, comment_param, action_latency_ms: {action: ms}, action_latency_commit_first,
             completion_policy: any_authenticated|assignee_only|assignee_or_delegate,
             delegates: {assignee user id: delegate user id}}; GET config
                                              stats.completions: who completed each item, via delegated|app
GET stats; POST stats/reset                   requests per set and status, 429s sent, recent requests, row counts,
                                              validate_calls / complete_calls: {work item id: n}
GET work-items?status=&user=&document_id=&id=  work items (OData field format), oldest first
POST delete {entity_set, key}                 remove a record ("record no longer exists")
GET record?entity_set=..&<key>=..             read one record without auth (for tests and the demo)
POST apps {client_id, user_id, name}; GET apps   the "Microsoft Entra ID applications" table
POST apps/remove {client_id}                  delete a row of that table: the app then has no F&O user and every
                                              /data call answers `unknown_client_status` (dynamics.md simulator
                                              spec item 8: 403 by default, configurable; real F&O's is unconfirmed)
POST schema {reset, remove_fields: {set: [field]}, remove_actions: [name], remove_entity_sets: [set]}; GET schema
                                              make this environment lack fields, WorkflowWorkItems actions or
                                              whole entity sets, as a real environment may: they vanish from
                                              $metadata and the service document, and naming them answers F&O's
                                              own error (400 "Could not find a property named 'X' on type ..." for
                                              a field, 404 for a set or action). Rows keep every field underneath.
                                              Removals accumulate; `reset: true` (applied first) restores all.
                                              Unknown names answer 400. Answers the removals now in force.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from sandbox.admin_http import bad_request, json_object

from sandbox.fno import workflow
from sandbox.fno.odata import POLICIES, SERVICE, Fault, FnoService, Stats
from sandbox.fno.schema import SchemaError
from sandbox.fno.state import to_odata_row


def _svc(request: web.Request) -> FnoService:
    return request.app[SERVICE]


async def throttle(request: web.Request) -> web.Response:
    body = await json_object(request)
    if not body.get("count") and not body.get("seconds"):
        raise web.HTTPBadRequest(text="give count and/or seconds")
    _svc(request).protection.pressure(count=body.get("count"), seconds=body.get("seconds"),
                                      retry_after=int(body.get("retry_after", 5)))
    return web.json_response({"ok": True})


async def limits(request: web.Request) -> web.Response:
    body, prot = await json_object(request), _svc(request).protection
    for name in ("requests", "execution_seconds", "concurrent", "window_seconds", "penalty_seconds"):
        if name in body:
            setattr(prot.limits, name, type(getattr(prot.limits, name))(body[name]))
    if "user_limits" in body:
        prot.user_limits = bool(body["user_limits"])
    return web.json_response({**dataclasses.asdict(prot.limits), "user_limits": prot.user_limits})


async def fail(request: web.Request) -> web.Response:
    body = await json_object(request)
    status = int(body.get("status", 500))
    if not 400 <= status <= 599:
        raise web.HTTPBadRequest(text="status must be 4xx or 5xx")
    _svc(request).faults.append(Fault(status, int(body.get("count", 1)), body.get("path_prefix", "/data")))
    return web.json_response({"ok": True})


async def get_config(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(_svc(request).config))


async def set_config(request: web.Request) -> web.Response:
    body, cfg = await json_object(request), _svc(request).config
    for name, value in body.items():
        if name in ("base_url", "environment") or not hasattr(cfg, name):
            raise web.HTTPBadRequest(text=f"unknown or read-only setting {name}")
        if name == "completion_policy" and value not in POLICIES:
            raise web.HTTPBadRequest(text=f"completion_policy must be one of {', '.join(POLICIES)}")
        try:
            setattr(cfg, name, type(getattr(cfg, name))(value))
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text=f"bad value for {name}: {value!r}") from None
    return web.json_response(dataclasses.asdict(cfg))


async def stats(request: web.Request) -> web.Response:
    svc = _svc(request)
    return web.json_response({**svc.stats.as_dict(), "records": svc.state.counts()})


async def reset_stats(request: web.Request) -> web.Response:
    _svc(request).stats = Stats()
    return web.json_response({"ok": True})


async def delete(request: web.Request) -> web.Response:
    body, svc = await json_object(request), _svc(request)
    name = body.get("entity_set", "")
    if svc.state.entity_type(name) is None or not isinstance(body.get("key"), dict):
        raise web.HTTPBadRequest(text="give entity_set and key")
    try:
        deleted = svc.state.delete(name, body["key"])
    except KeyError as exc:
        raise web.HTTPBadRequest(text=f"missing key field {exc}") from None
    return web.json_response({"deleted": deleted})


async def record(request: web.Request) -> web.Response:
    svc = _svc(request)
    et = svc.state.entity_type(request.query.get("entity_set", ""))
    if et is None:
        raise web.HTTPBadRequest(text="unknown entity_set")
    key: dict[str, Any] = {}
    for name in et.keys:
        if name not in request.query:
            raise web.HTTPBadRequest(text=f"missing key field {name}")
        key[name] = int(request.query[name]) if et.kinds[name] == "int" else request.query[name]
    row = svc.state.get(et.set_name, key)
    if row is None:
        raise web.HTTPNotFound(text="no such record")
    return web.json_response(to_odata_row(et, row))


async def work_items(request: web.Request) -> web.Response:
    svc, q = _svc(request), request.query
    et = svc.state.entity_type(workflow.SET)
    assert et is not None, "the workflow entity is part of every sandbox"
    filters = {"Status": q.get("status"), "UserId": q.get("user"), "DocumentId": q.get("document_id"),
               "Id": q.get("id")}
    rows = [r for r in svc.state.rows(workflow.SET)
            if all(v is None or (r[k] or "").lower() == v.lower() for k, v in filters.items())]
    rows.sort(key=lambda r: (r["CreatedDateTime"] is None, r["CreatedDateTime"] or 0))
    return web.json_response([to_odata_row(et, r) for r in rows])


async def add_app(request: web.Request) -> web.Response:
    body = await json_object(request)
    if not body.get("client_id") or not body.get("user_id"):
        raise web.HTTPBadRequest(text="give client_id and user_id")
    app = _svc(request).state.register_app(body["client_id"], body["user_id"], body.get("name", ""))
    return web.json_response(dataclasses.asdict(app))


async def remove_app(request: web.Request) -> web.Response:
    body = await json_object(request)
    client_id = str(body.get("client_id") or "").lower()
    if not client_id:
        raise web.HTTPBadRequest(text="give client_id")
    removed = _svc(request).state.apps.pop(client_id, None)
    return web.json_response({"removed": removed is not None})


async def list_apps(request: web.Request) -> web.Response:
    return web.json_response([dataclasses.asdict(a) for a in _svc(request).state.apps.values()])


async def get_schema(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).schema.as_dict())


async def set_schema(request: web.Request) -> web.Response:
    body, svc = await json_object(request), _svc(request)
    try:
        svc.schema.apply(body, svc.state.types, svc.actions())
    except SchemaError as exc:
        raise bad_request(str(exc)) from None
    return web.json_response(svc.schema.as_dict())


def add_fno_admin_routes(app: web.Application) -> None:
    p = "/_sandbox/fno"
    app.router.add_post(f"{p}/throttle", throttle)
    app.router.add_post(f"{p}/limits", limits)
    app.router.add_post(f"{p}/fail", fail)
    app.router.add_get(f"{p}/config", get_config)
    app.router.add_post(f"{p}/config", set_config)
    app.router.add_get(f"{p}/stats", stats)
    app.router.add_post(f"{p}/stats/reset", reset_stats)
    app.router.add_post(f"{p}/delete", delete)
    app.router.add_get(f"{p}/record", record)
    app.router.add_get(f"{p}/work-items", work_items)
    app.router.add_post(f"{p}/apps", add_app)
    app.router.add_get(f"{p}/apps", list_apps)
    app.router.add_post(f"{p}/apps/remove", remove_app)
    app.router.add_get(f"{p}/schema", get_schema)
    app.router.add_post(f"{p}/schema", set_schema)
