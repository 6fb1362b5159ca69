"""Routes match events by id (exact or glob), environment, legal entity and conditions on the card data."""

import pytest

from connector.config import ConfigError
from connector.routes import TargetNotFound, match_routes, resolve_channel, routes_from_config
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
    assert "routes.0.events" in str(err.value) and "routes.1.threading" in str(err.value)


def test_channel_resolution_by_name_and_id() -> None:
    inst = Install(id="team:19:abc@thread.tacv2", scope="team", tenant_id="t", service_url="https://s/", bot_id="28:b",
                   team_id="19:abc@thread.tacv2", team_name="Procurement",
                   channels={"19:abc@thread.tacv2": "General", "19:po@thread.tacv2": "Purchase orders"})
    assert resolve_channel(ROUTES[0], [inst])[1] == "19:po@thread.tacv2"
    assert resolve_channel(ROUTES[2], [inst])[1] == "19:abc@thread.tacv2"
    with pytest.raises(TargetNotFound, match="not installed in team 'Finance'"):
        resolve_channel(ROUTES[1], [inst])
