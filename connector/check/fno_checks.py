"""F&O group, per environment: a token, `$metadata`, the app's F&O user, every plan's entity sets and fields,
the approval actions, and the legal entities the configuration names."""

from __future__ import annotations

from typing import Any

from connector.check.context import CheckContext
from connector.check.entra import explain_token_failure
from connector.check.model import CheckTimeout, Reporter, unreachable
from connector.config import EnvironmentSettings
from connector.routes import routes_from_config
from connector.token_wiring import environment_credential, fo_token_source
from connector.tokens import TokenFailure, fo_scope
from dynamics import EnrichmentPlan, ODataAuthError, ODataClient, ODataError, ODataUnavailable, plans_from_config
from dynamics.metadata import Metadata, fetch_metadata

LEGAL_ENTITY_SET = "LegalEntities"  # F&O's LegalEntityEntity; key LegalEntityId (the dataAreaId)
WORK_ITEMS = "WorkflowWorkItems"
ENTRA_APPS = "System administration > Setup > Microsoft Entra ID applications"


def group_name(env: EnvironmentSettings) -> str:
    return f"F&O {env.name}"


async def run(ctx: CheckContext, r: Reporter, env: EnvironmentSettings) -> None:
    ref = environment_credential(ctx.settings, env)
    credential = ctx.credentials.get(ref.name)
    if credential is None or ctx.tokens is None:
        r.fail("token", f"no usable credential '{ref.name}' (see Configuration above)",
               f"store it with `ml-connector secrets set {ref.name}`.")
        return
    try:
        get_token = fo_token_source(ctx.tokens, ref, credential, env)
    except ValueError as exc:
        r.fail("token", str(exc), "set base_url to the environment's https URL, e.g. "
               "https://contoso.operations.dynamics.com.")
        return
    authority = ctx.settings.cloud.endpoint("authority_host")
    try:
        await r.bounded("token", get_token())
    except TokenFailure as exc:
        detail, fix = explain_token_failure(exc, ref, authority, get_token.scope)
        r.fail("token", detail, fix)
        return
    except CheckTimeout as exc:
        r.fail("token", *unreachable(authority, str(exc)))
        return
    r.ok("token", f"app {ref.client_id} got a token for {fo_scope(env.token_resource)}")

    try:
        meta = await r.bounded("$metadata", fetch_metadata(ctx.http, env.base_url, get_token, ssl=ctx.tls,
                                                           timeout=ctx.timeout))
    except ODataAuthError as exc:
        _no_user(r, exc, ref.client_id)
        return
    except ODataUnavailable as exc:
        if exc.status is None:
            r.fail("$metadata", *unreachable(env.base_url, exc.inner_message or exc.message))
        else:
            r.fail("$metadata", str(exc), "F&O answered with a server error: try again; if it persists, check the "
                   "environment's health in Lifecycle Services / the Power Platform admin center.")
        return
    except (ODataError, CheckTimeout) as exc:
        r.fail("$metadata", f"{env.base_url}/data/$metadata: {exc}", "check base_url: it is the environment's "
               "root URL, without /data.")
        return
    r.ok("$metadata", f"{len(meta.entity_sets)} entity sets, {len(meta.actions)} actions")

    client = ODataClient(ctx.http, env.base_url, get_token, timeout=ctx.timeout, max_attempts=1,
                         max_inline_wait=0, ssl=ctx.tls)
    companies = await _legal_entity_ids(ctx, r, client, meta, ref.client_id)
    if companies is _STOP:
        return
    _plans(ctx, r, meta)
    if ctx.settings.approvals.enabled:
        _actions(ctx, r, meta)
    _legal_entities(ctx, r, env, companies)


_STOP: Any = object()


def _no_user(r: Reporter, exc: ODataAuthError, client_id: str) -> None:
    why = exc.inner_message or exc.message
    r.fail("app's F&O user", f"F&O refused app {client_id} (HTTP {exc.status}: {why})",
           f"add the app under {ENTRA_APPS} (Client ID {client_id}) with a user whose security roles can read "
           "the entities the plans use.")


async def _legal_entity_ids(ctx: CheckContext, r: Reporter, client: ODataClient, meta: Metadata,
                            client_id: str) -> set[str] | None:
    """The legal entity ids F&O has (None when it has no legal entities entity); _STOP after an auth failure."""
    if LEGAL_ENTITY_SET not in meta.entity_sets:
        r.warn("app's F&O user", f"$metadata has no {LEGAL_ENTITY_SET}: the data read that proves the app's F&O "
               "user was skipped", "")
        return None
    try:
        rows = await r.bounded("app's F&O user", client.query(LEGAL_ENTITY_SET, company=None,
                                                                select=["LegalEntityId"]))
    except ODataAuthError as exc:
        _no_user(r, exc, client_id)
        return _STOP
    except (ODataError, CheckTimeout) as exc:
        r.fail("app's F&O user", f"reading {LEGAL_ENTITY_SET} failed: {exc}",
               f"give the app's F&O user (under {ENTRA_APPS}) a role that can read legal entities.")
        return None
    r.ok("app's F&O user", f"data reads work as the app's F&O user ({len(rows)} legal entities)")
    return {str(row.get("LegalEntityId") or "").lower() for row in rows}


def _key_fields(fetch: Any) -> set[str]:
    """Fields a read cannot do without: its key and filter (and dataAreaId). A missing one parks the event."""
    fields = set(fetch.conditions)
    if fetch.company:
        fields.add("dataAreaId")
    return fields


def _shown_fields(fetch: Any) -> set[str]:
    """Fields only selected or sorted by: the service drops a missing one and the card goes out without it."""
    return set(fetch.select or ()) | {item.split()[0] for item in fetch.orderby or ()}


FNO_REQUESTS_PER_SECOND = 6000 / 300  # F&O's user-based service protection limit (dynamics.md §4)


def _plans(ctx: CheckContext, r: Reporter, meta: Metadata) -> None:
    try:
        plans: list[EnrichmentPlan] = plans_from_config(ctx.settings.enrichment)
    except Exception:  # noqa: BLE001 - reported by the configuration group
        return
    for plan in plans:
        item = f"plan {plan.name}"
        r.starting(item)
        cards = "cards for " + ", ".join(plan.events)
        hard: list[str] = []
        soft: list[str] = []
        separate = 0  # expanded fetches this environment makes the connector read on their own
        for fetch in plan.fetches:
            target = soft if fetch.on_error == "skip" else hard
            if fetch.entity not in meta.entity_sets:
                target.append(f"entity set {fetch.entity} does not exist ({cards} lose record.{fetch.name})")
                continue
            keys = _key_fields(fetch)
            missing_keys = meta.missing_fields(fetch.entity, keys)
            if missing_keys:
                target.append(f"{fetch.entity} has no {', '.join(missing_keys)} to read record.{fetch.name} by "
                              f"({cards} lose it)")
            missing = [f for f in meta.missing_fields(fetch.entity, _shown_fields(fetch)) if f not in keys]
            if missing:
                lost = ", ".join(f"record.{fetch.name}.{f}" for f in missing)
                soft.append(f"{fetch.entity} has no {', '.join(missing)} (the connector leaves it out: {cards} "
                            f"go out without {lost})")
            et = meta.entity_type(fetch.entity)
            for expand in fetch.expand or ():
                if et is not None and expand.navigation not in et.navigation:
                    separate += 1
                    soft.append(f"{fetch.entity} has no navigation property {expand.navigation} (the connector "
                                f"reads record.{expand.fetch} separately: one more F&O request per event)")
        fix = ("add the missing fields to the entity in F&O, or override this plan's fetch in an [[enrichment]] "
               f"entry named \"{plan.name}\" with names $metadata lists (a fetch's expand names navigation "
               f"properties; expand = [] reads every fetch on its own).")
        if separate:
            soft.append(f"{plan.requests_per_event + separate} OData request(s) per event here instead of "
                        f"{plan.requests_per_event}")
        if hard:
            r.fail(item, "; ".join(hard + soft), fix)
        elif soft:
            r.warn(item, "; ".join(soft), fix)
        else:
            n = plan.requests_per_event
            ceiling = f"at most {FNO_REQUESTS_PER_SECOND / n:.1f} events/s" if n else "no F&O reads"
            r.ok(item, f"{len(plan.fetches)} fetch(es) match $metadata; {n} OData request(s) per event: one F&O "
                       f"app user enriches {ceiling} under F&O's 6,000 requests per 5 minutes")


def _actions(ctx: CheckContext, r: Reporter, meta: Metadata) -> None:
    a = ctx.settings.approvals
    item = "approval actions"
    r.starting(item)
    if WORK_ITEMS not in meta.entity_sets:
        r.fail(item, f"entity set {WORK_ITEMS} does not exist: approval cards cannot validate or complete work "
               "items", "make WorkflowWorkItems public in F&O, or set [approvals] enabled = false.")
        return
    qualified = meta.entity_sets[WORK_ITEMS]
    have = sorted(x.name for x in meta.actions if x.bound_to == qualified)
    problems: list[str] = []
    fixes: list[str] = []
    for key, name, params in (("validate_action", a.validate_action, []),
                              ("complete_action", a.complete_action,
                               [("outcome_param", a.outcome_param), ("comment_param", a.comment_param)]
                               + ([("id_param", a.id_param)] if a.id_param else []))):
        action = meta.bound_action(WORK_ITEMS, name)
        if action is None:
            problems.append(f"{WORK_ITEMS} has no bound action '{name}' ([approvals] {key})")
            fixes.append(key)
            continue
        for pkey, pname in params:
            if pname not in action.parameters:
                problems.append(f"action '{name}' has no parameter '{pname}' ([approvals] {pkey}; it takes "
                                f"{', '.join(action.parameters) or 'none'})")
                fixes.append(pkey)
    if problems:
        r.fail(item, "; ".join(problems) + f"; bound actions F&O has: {', '.join(have) or 'none'}",
               f"set [approvals] {', '.join(dict.fromkeys(fixes))} to the names $metadata lists for "
               f"{WORK_ITEMS}.")
    else:
        r.ok(item, f"{a.validate_action} and {a.complete_action}({a.outcome_param}, {a.comment_param}) exist")


def _legal_entities(ctx: CheckContext, r: Reporter, env: EnvironmentSettings, companies: set[str] | None) -> None:
    wanted: dict[str, list[str]] = {}
    for le in env.legal_entities:
        wanted.setdefault(le.lower(), []).append(f"environments '{env.name}' legal_entities")
    try:
        routes = routes_from_config(ctx.settings.routes)
    except Exception:  # noqa: BLE001 - reported by the configuration group
        routes = []
    for route in routes:
        if route.environments and env.name.lower() not in route.environments:
            continue
        for le in route.legal_entities:
            wanted.setdefault(le.lower(), []).append(f"route '{route.name}'")
    item = "legal entities"
    if not wanted:
        r.ok(item, "the configuration names no legal entity (all are accepted)")
        return
    if companies is None:
        r.warn(item, f"could not list F&O's legal entities to compare {', '.join(sorted(wanted))}",
               "check the names against Organization administration > Legal entities by hand.")
        return
    unknown = {le: where for le, where in wanted.items() if le not in companies}
    if unknown:
        r.fail(item, "; ".join(f"{le} ({', '.join(where)}) does not exist in F&O" for le, where in
                               sorted(unknown.items())),
               f"use legal entity ids F&O has ({', '.join(sorted(companies))}) in the routes and "
               "environments[].legal_entities.")
    else:
        r.ok(item, f"{', '.join(sorted(wanted))} exist")
