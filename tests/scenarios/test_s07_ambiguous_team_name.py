"""One tenant only, scenario: a route naming team "Procurement" when two installs of the served tenant carry that
name is never resolved by guessing: the event is parked with a reason that says to use the team id, and nothing is
posted to either team. A stale install from another tenant (recorded before the bot refused foreign tenants) is
never a target at all: the card goes to our tenant's team."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from connector.routes import route_ambiguities, routes_from_config
from connector.store import EventStatus
from scenariokit import LeakRegistry, Sandbox, inproc_connector, posted_messages, raise_events, wait_finished, \
    wait_installed

OTHER_TENANT = "bbbbbbbb-0000-4000-8000-000000000002"


async def test_a_team_name_installed_twice_parks_the_event_saying_use_the_team_id(
        sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        ours = await wait_installed(store, "Procurement")
        twin = replace(ours, id="team:19:elsewhere@thread.tacv2", team_id="19:elsewhere@thread.tacv2",
                       aad_group_id=None)
        await store.upsert_install(twin)
        routes = routes_from_config(conn.settings.routes)
        assert any(a.kind == "team" and a.name == "Procurement"
                   for a in route_ambiguities(routes, await store.list_installs(active_only=True)))

        payloads = await raise_events(admin, sandbox, "confirm_po", 1)
        records = await wait_finished(store, payloads, 60, what="the event to be parked")
        for r in records.values():
            assert r.status is EventStatus.FAILED, (r.status, r.last_error)
            assert "matches 2 installed teams" in (r.last_error or ""), r.last_error
            assert "team id" in r.last_error and "19:elsewhere@thread.tacv2" in r.last_error, r.last_error
            assert not await store.cards_for_event(r.id)
        assert await posted_messages(admin, sandbox) == {}


async def test_an_install_from_another_tenant_is_never_a_target(
        sandbox: Sandbox, workdir: Path, leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry) as (conn, admin):
        store = conn.services.store
        ours = await wait_installed(store, "Procurement")
        foreign = replace(ours, id="team:19:foreign@thread.tacv2", team_id="19:foreign@thread.tacv2",
                          tenant_id=OTHER_TENANT, aad_group_id=None)
        await store.upsert_install(foreign)

        payloads = await raise_events(admin, sandbox, "confirm_po", 1)
        records = await wait_finished(store, payloads, 60, what="the card to be posted")
        for r in records.values():
            assert r.status is EventStatus.DONE, (r.status, r.last_error)
            cards = await store.cards_for_event(r.id)
            assert cards and all("foreign" not in c.conversation_id for c in cards), cards
