"""A plan states what one event costs in F&O requests, which is what F&O's per-user limit divides (perf goal 1)."""

from __future__ import annotations

from dynamics import plans_from_config


def test_each_default_plan_states_its_requests_per_event() -> None:
    plans = {plan.name: plan for plan in plans_from_config(None)}
    assert plans["purchase_order_confirmed"].requests_per_event == 1  # header with $expand of lines and vendor
    assert plans["workflow_work_item"].requests_per_event == 2
    assert all(plan.requests_per_event == len(plan.fetches) - len(plan.expanded) for plan in plans.values())


def test_removing_a_fetch_lowers_the_cost() -> None:
    raw = [{"name": "vendor_payment_posted", "fetches": [{"name": "vendor", "enabled": False}]}]
    plan = next(p for p in plans_from_config(raw) if p.name == "vendor_payment_posted")
    assert plan.requests_per_event == 2


def test_an_expanded_fetch_costs_nothing_and_without_expand_it_costs_a_request() -> None:
    raw = [{"name": "purchase_order_confirmed", "fetches": [{"name": "order", "expand": []}]}]
    plan = next(p for p in plans_from_config(raw) if p.name == "purchase_order_confirmed")
    assert plan.requests_per_event == 3  # header, lines, vendor read separately
    raw = [{"name": "purchase_order_confirmed", "fetches": [{"name": "vendor", "enabled": False}]}]
    plan = next(p for p in plans_from_config(raw) if p.name == "purchase_order_confirmed")
    assert [f.name for f in plan.fetches] == ["order", "lines"] and plan.expanded == {
        "lines": ("order", "PurchaseOrderLines")}  # disabling a fetch also takes it out of the expand
    assert plan.requests_per_event == 1
