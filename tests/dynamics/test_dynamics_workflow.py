"""WorkflowActions over real HTTP, and the template language's edges."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dynamics import ODataBadRequest, ODataClient, WorkflowActions
from dynamics.templates import NOTHING, Template
from dynamics_fakes import FakeFnO, Scripted, fno_error

MakeClient = Callable[..., ODataClient]


async def test_validate_and_complete(fno: FakeFnO, make_client: MakeClient) -> None:
    items = {"'W1'": "Pending", "'W2'": "Completed"}

    def validate(keys: str, body: dict[str, Any]) -> Scripted:
        state = items.get(keys.removeprefix("Id="))
        return Scripted(404, fno_error("Not found")) if state is None else Scripted(200, {"value": state == "Pending"})

    def complete(keys: str, body: dict[str, Any]) -> Scripted:
        if items.get(keys.removeprefix("Id=")) != "Pending":
            return Scripted(400, fno_error("An error has occurred.", "Work item is not pending"))
        items[keys.removeprefix("Id=")] = "Completed"
        return Scripted(200, {"Status": "Completed", **body})

    fno.actions.update(validate=validate, complete=complete)
    actions = WorkflowActions(make_client())
    assert await actions.validate("W1") is True
    assert await actions.validate("W2") is False
    assert await actions.validate("W9") is False
    answer = await actions.complete("W1", "Approve", "ok")
    assert answer == {"Status": "Completed", "outcome": "Approve", "comment": "ok"}
    assert await actions.validate("W1") is False
    with pytest.raises(ODataBadRequest, match="not pending"):
        await actions.complete("W1", "Approve", "again")


async def test_names_are_configurable(fno: FakeFnO, make_client: MakeClient) -> None:
    fno.actions["WorkflowWorkitemComplete"] = lambda keys, body: Scripted(204)
    actions = WorkflowActions(make_client(), complete_action="WorkflowWorkitemComplete", outcome_param="Outcome",
                              comment_param="Comment", id_param="WorkflowWorkitemInstanceID")
    assert await actions.complete("W1", "Reject", "no") == {}
    assert fno.requests[-1].body == {"WorkflowWorkitemInstanceID": "W1", "Outcome": "Reject", "Comment": "no"}


def test_templates() -> None:
    context = {"event": {"A": "x y", "N": 7, "Blank": " ", "L": [{"B": "first"}]}, "base_url": "https://h/p q"}
    assert Template.parse("{event.N}").render_value(context) == 7  # a lone reference keeps its type
    assert Template.parse("n={event.N}").render_value(context) == "n=7"
    assert Template.parse("{event.Blank|event.A}").render(context) == "x y"
    assert Template.parse("{event.Missing}").render_value(context) is NOTHING
    assert Template.parse("{event.L.0.B}").render(context) == "first"
    assert Template.parse("{{literal}} {event.A}").render(context) == "{literal} x y"
    assert Template.parse("{base_url}/?q={event.A}").render(
        context, url_quote_except=frozenset({"base_url"})) == "https://h/p q/?q=x%20y"
    for bad in ("{event.A", "event.A}", "{}", "{event..A}", "{1.A}"):
        with pytest.raises(ValueError):
            Template.parse(bad)
