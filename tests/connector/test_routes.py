"""Routes match events by id (exact or glob), environment, legal entity and conditions on the card data."""

import pytest

from connector.config import ConfigError
from connector.routes import (
    TargetAmbiguous,
    TargetNotFound,
    match_routes,
    resolve_channel,
    route_ambiguities,
    routes_from_config,
)
from connector.store import Install

ROUTES = routes_from_config([
    {"name": "po", "events": ["PurchaseOrderConfirmedBusinessEvent"], "legal_entities": ["USMF"],
     "team": "Procurement", "channel": "Purchase orders"},
    {"name": "big-po", "events": ["PurchaseOrder*"], "team": "Finance",
     "when": [{"field": "event.TransactionCurrencyAmount", "op": ">=", "value": 10000}]},
    {"name": "approvals", "events": ["Workflow_*_WorkItem"], "team": "19:abc@thread.tacv2", "mention": ["approver"]},
])


def names(event_id: str, le: str | None, data: dict) -> list[str]:
    return [r.name for r in match_routes(ROUTES, event_id=event_id, environment="prod", legal_entity=le, data=data)]


def test_exact_glob_legal_entity_and_conditions() -> None:
    po = "PurchaseOrderConfirmedBusinessEvent"
    assert names(po, "usmf", {"event": {"TransactionCurrencyAmount": 500}}) == ["po"]
    assert names(po, "usmf", {"event": {"TransactionCurrencyAmount": 25000.5}}) == ["po", "big-po"]
    assert names(po, "demf", {"event": {"TransactionCurrencyAmount": "12000"}}) == ["big-po"]
    assert names(po, "demf", {"event": {}}) == []
    assert names("Workflow_VendInvoiceReview_000123_Approval_WorkItem", "gbsi", {}) == ["approvals"]
    assert names("Workflow_X_Started", "gbsi", {}) == []


def test_bad_routes_are_reported_with_index() -> None:
    with pytest.raises(ConfigError) as err:
        routes_from_config([{"name": "x", "events": [], "team": "T"},
                            {"name": "y", "events": ["E"], "team": "T", "threading": "sideways"}])
    assert "routes[0].events" in str(err.value) and "routes[1].threading" in str(err.value)


def test_channel_resolution_by_name_and_id() -> None:
    inst = Install(id="team:19:abc@thread.tacv2", scope="team", tenant_id="t", service_url="https://s/", bot_id="28:b",
                   team_id="19:abc@thread.tacv2", team_name="Procurement",
                   channels={"19:abc@thread.tacv2": "General", "19:po@thread.tacv2": "Purchase orders"})
    assert resolve_channel(ROUTES[0], [inst])[1] == "19:po@thread.tacv2"
    assert resolve_channel(ROUTES[2], [inst])[1] == "19:abc@thread.tacv2"
    with pytest.raises(TargetNotFound, match="not installed in team 'Finance'"):
        resolve_channel(ROUTES[1], [inst])


def _team(team_id: str, tenant: str, name: str = "Procurement", **channels: str) -> Install:
    return Install(id=f"team:{team_id}", scope="team", tenant_id=tenant, service_url="https://s/", bot_id="28:b",
                   team_id=team_id, team_name=name,
                   channels={team_id: "General", **{f"19:{k}@thread.tacv2": v for k, v in channels.items()}})


OURS = "aaaaaaaa-0000-0000-0000-000000000001"
THEIRS = "bbbbbbbb-0000-0000-0000-000000000002"


def test_a_team_name_matching_two_installs_is_an_error_naming_the_team_ids() -> None:
    # the same team name in two tenants (or twice in one): never the first one found
    ours = _team("19:ours@thread.tacv2", OURS, po="Purchase orders")
    theirs = _team("19:theirs@thread.tacv2", THEIRS, po="Purchase orders")
    for installs in ([theirs, ours], [ours, theirs]):
        with pytest.raises(TargetAmbiguous, match="set the route's team to the team id") as caught:
            resolve_channel(ROUTES[0], installs)
        assert isinstance(caught.value, TargetNotFound)  # delivery parks it with this message
        assert "'Procurement' matches 2 installed teams" in str(caught.value)
        assert f"19:ours@thread.tacv2 in tenant {OURS}" in str(caught.value)
        assert f"19:theirs@thread.tacv2 in tenant {THEIRS}" in str(caught.value)
    # by id it is exact; limited to the served tenants, the name is unique again
    by_id = routes_from_config([{"name": "po", "events": ["*"], "team": "19:OURS@thread.tacv2", "channel": "General"}])
    assert resolve_channel(by_id[0], [theirs, ours])[0] is ours
    assert resolve_channel(ROUTES[0], [theirs, ours], tenants={OURS})[0] is ours
    with pytest.raises(TargetNotFound, match="not installed"):
        resolve_channel(ROUTES[0], [theirs], tenants={OURS})


def test_a_channel_name_matching_two_channels_is_an_error() -> None:
    team = _team("19:t@thread.tacv2", OURS, a="Purchase orders", b="purchase ORDERS")
    with pytest.raises(TargetAmbiguous, match="channel name 'Purchase orders' matches 2 channels") as caught:
        resolve_channel(ROUTES[0], [team])
    assert "set the route's channel to the channel id" in str(caught.value)
    by_id = routes_from_config([{"name": "po", "events": ["*"], "team": "Procurement",
                                 "channel": "19:b@thread.tacv2"}])
    assert resolve_channel(by_id[0], [team])[1] == "19:b@thread.tacv2"


def test_route_ambiguities_lists_every_ambiguous_route_and_nothing_else() -> None:
    installs = [_team("19:p1@thread.tacv2", OURS, po="Purchase orders"),
                _team("19:p2@thread.tacv2", OURS, po="Purchase orders"),
                _team("19:f@thread.tacv2", OURS, name="Finance")]
    found = route_ambiguities(ROUTES, installs)  # po: ambiguous; big-po: resolves; approvals: not installed
    assert [(a.route, a.kind, a.name) for a in found] == [("po", "team", "Procurement")]
    assert found[0].candidates == (f"19:p1@thread.tacv2 in tenant {OURS}", f"19:p2@thread.tacv2 in tenant {OURS}")
    assert found[0].message.endswith("set the route's team to the team id instead of its name")
    assert route_ambiguities(ROUTES, installs[:1] + installs[2:]) == []
