"""The pieces of `ml-connector check` that need no sandbox: the CSDL reader, the progress line, the text output."""

from __future__ import annotations

import io

import pytest

from connector.check import CheckResult, ProgressLine, Status, render_text
from dynamics.metadata import parse_csdl

CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>
<Schema Namespace="Microsoft.Dynamics.DataEntities" Alias="mde" xmlns="http://docs.oasis-open.org/odata/ns/edm">
  <EntityType Name="WorkflowWorkItem"><Key><PropertyRef Name="Id"/></Key>
    <Property Name="Id" Type="Edm.String" Nullable="false"/><Property Name="Status" Type="Edm.String"/>
    <NavigationProperty Name="User" Type="mde.SystemUser"/></EntityType>
  <Action Name="complete" IsBound="true"><Parameter Name="_bindingParameter" Type="mde.WorkflowWorkItem"/>
    <Parameter Name="outcome" Type="Edm.String"/><Parameter Name="comment" Type="Edm.String"/></Action>
  <Action Name="validateAll" IsBound="true">
    <Parameter Name="items" Type="Collection(Microsoft.Dynamics.DataEntities.WorkflowWorkItem)"/></Action>
  <EntityContainer Name="Resources">
    <EntitySet Name="WorkflowWorkItems" EntityType="mde.WorkflowWorkItem"/></EntityContainer>
</Schema></edmx:DataServices></edmx:Edmx>"""


def test_csdl_sets_fields_navigation_and_bound_actions() -> None:
    meta = parse_csdl(CSDL)
    assert meta.entity_sets == {"WorkflowWorkItems": "Microsoft.Dynamics.DataEntities.WorkflowWorkItem"}
    assert meta.missing_fields("WorkflowWorkItems", {"Id", "Status", "User", "Outcome"}) == ["Outcome"]
    assert meta.missing_fields("Nope", {"A", "B"}) == ["A", "B"]
    complete = meta.bound_action("WorkflowWorkItems", "complete")
    assert complete is not None and complete.parameters == ("outcome", "comment")
    assert meta.bound_action("WorkflowWorkItems", "validateAll") is not None  # bound to the collection
    assert meta.bound_action("WorkflowWorkItems", "validate") is None


def test_csdl_refuses_what_is_not_csdl() -> None:
    with pytest.raises(ValueError, match="not XML"):
        parse_csdl("{}")
    with pytest.raises(ValueError, match="no OData v4 Schema"):
        parse_csdl("<html/>")


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal() -> None:
    quiet, shown = _Stream(False), _Stream(True)
    for stream in (quiet, shown):
        line = ProgressLine(stream)
        line("F&O prod: token")
        line.clear()
    assert quiet.getvalue() == ""
    assert "[1] checking F&O prod: token…" in shown.getvalue() and shown.getvalue().endswith("\r\x1b[2K")


def test_text_output_marks_and_fixes() -> None:
    text = render_text([
        CheckResult("G", "a", Status.OK, "fine"),
        CheckResult("G", "b", Status.FAIL, "broken", "do this."),
        CheckResult("H", "c", Status.WARN, "odd", "maybe that."),
    ])
    assert text.splitlines() == ["G", "  ✓ a: fine", "  ✗ b: broken", "      fix: do this.", "",
                                 "H", "  ! c: odd", "      fix: maybe that.", "",
                                 "1 failed, 1 warning(s), 1 passed"]


def test_an_unresolvable_host_is_named_as_such_not_as_a_stack_of_requests_text() -> None:
    from connector.check.entra import explain_token_failure
    from connector.token_wiring import CredentialRef
    from connector.tokens import TokenUnavailable

    ref = CredentialRef("environment 'prod'", "t", "app", "entra-client-secret", "secret", None)
    reason = ("cannot reach Entra ID: ConnectionError: HTTPSConnectionPool(host='login.microsoftonline.com', "
              "port=443): Max retries exceeded with url: /t/v2.0/.well-known/openid-configuration (Caused by "
              "NameResolutionError(\"Failed to resolve 'login.microsoftonline.com' ([Errno -2] Name or service "
              "not known)\"))")
    detail, _ = explain_token_failure(TokenUnavailable(reason), ref, "https://login.microsoftonline.com", "s")
    assert detail == ("cannot reach https://login.microsoftonline.com: the host name does not resolve; "
                      "check the URL, DNS, proxy")
