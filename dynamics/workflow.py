"""Validate and complete F&O workflow work items through bound actions on `WorkflowWorkItems`.

The documented pattern (dynamics.md §6): Validate first (is the item still actionable?), then Complete with an
outcome and a comment. The real action and parameter names are unconfirmed, so every name is a constructor
argument. This module only calls the OData client; who may approve, and as whom, is the caller's business.
"""

from __future__ import annotations

from typing import Any, Protocol

from dynamics.errors import ODataBadRequest, ODataNotFound

__all__ = ["WorkflowActions"]


class _ActionClient(Protocol):
    async def invoke_action(self, entity_set: str, key: dict[str, Any], action: str,
                            params: dict[str, Any] | None = None, *, idempotent: bool = False) -> dict[str, Any]: ...


class WorkflowActions:
    """Work-item actions.

    Args:
        client: an `ODataClient`.
        validate_action, complete_action: bound action names (after `Microsoft.Dynamics.DataEntities.`).
        outcome_param, comment_param: JSON parameter names of the complete action.
        entity_set: the work-item entity set.
        id_field: the key field of the entity set.
        id_param: when set, the work-item id is also sent in the action body under this name.
    """

    def __init__(
        self,
        client: _ActionClient,
        *,
        validate_action: str = "validate",
        complete_action: str = "complete",
        outcome_param: str = "outcome",
        comment_param: str = "comment",
        entity_set: str = "WorkflowWorkItems",
        id_field: str = "Id",
        id_param: str | None = None,
    ) -> None:
        self._client = client
        self._validate = validate_action
        self._complete = complete_action
        self._outcome = outcome_param
        self._comment = comment_param
        self._entity_set = entity_set
        self._id_field = id_field
        self._id_param = id_param

    async def validate(self, work_item_id: str) -> bool:
        """Whether the work item can still be completed.

        Returns False when F&O says the item is gone (404) or refuses the validation (400), or when the action
        answers a false value (`{"value": false}`, `"No"`). An empty 2xx answer counts as valid.

        Raises:
            ODataThrottled, ODataUnavailable: transient. ODataAuthError and other ODataError: as raised.
        """
        try:
            answer = await self._client.invoke_action(
                self._entity_set, {self._id_field: work_item_id}, self._validate, self._body(work_item_id),
                idempotent=True,
            )
        except (ODataNotFound, ODataBadRequest):
            return False
        return _truthy(answer.get("value", True)) if isinstance(answer, dict) else True

    async def complete(self, work_item_id: str, outcome: str, comment: str) -> dict[str, Any]:
        """Complete the work item with `outcome` (e.g. "Approve") and `comment`.

        Not re-sent after a 5xx or timeout (the action may have run); the caller decides, after validating again.

        Returns:
            The action's JSON answer (`{}` when F&O answers 204).

        Raises:
            ODataNotFound: no such work item. ODataBadRequest: F&O refused (not pending, unknown outcome).
            ODataThrottled, ODataUnavailable, ODataAuthError: as raised by the client.
        """
        body = self._body(work_item_id)
        body[self._outcome] = outcome
        body[self._comment] = comment
        return await self._client.invoke_action(self._entity_set, {self._id_field: work_item_id}, self._complete, body)

    def _body(self, work_item_id: str) -> dict[str, Any]:
        return {self._id_param: work_item_id} if self._id_param else {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "valid")
    return bool(value)
