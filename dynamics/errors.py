"""Every error that leaves dynamics/. Foreign errors (aiohttp, json, pydantic) are translated here, once.

    DynamicsError
    ├── EventRejected(field, reason, index)      a Business Event body we refuse (the events endpoint answers 400)
    ├── EnrichmentPlanError(plan, fetch, field)   an enrichment plan from configuration that cannot work
    └── ODataError(status, code, message, inner_message)   the F&O OData API said no
        ├── ODataBadRequest                       400: bad query, unknown field, invalid action parameters
        │   └── ODataUnknownProperty(property, type_name)   400 "Could not find a property named 'X' on type 'T'."
        ├── ODataUnknownEntitySet(entity_set)     404 on a collection URL: this environment has no such entity set
        ├── ODataAuthError                        401 even after a forced token refresh, or 403
        ├── ODataNotFound                         404 on a keyed URL (record or work item gone)
        ├── ODataThrottled(retry_after)           429 whose wait is too long to sit out inline (transient)
        └── ODataUnavailable                      5xx, timeout or connection failure after retries (transient)

Transient errors (`ODataThrottled`, `ODataUnavailable`) carry `transient = True` so a caller can reschedule
without listing classes. This module knows nothing about HTTP libraries.
"""

from __future__ import annotations

import re

__all__ = [
    "DynamicsError",
    "EnrichmentPlanError",
    "EventRejected",
    "ODataAuthError",
    "ODataBadRequest",
    "ODataError",
    "ODataNotFound",
    "ODataThrottled",
    "ODataUnavailable",
    "ODataUnknownEntitySet",
    "ODataUnknownProperty",
]

# OData's own wording (Microsoft.OData.Core, which F&O runs on) when $select/$filter/$orderby names a field the
# entity type does not have; F&O puts it in error.message and/or error.innererror.message.
_UNKNOWN_PROPERTY = re.compile(r"Could not find a property named '([^']+)'(?: on type '([^']+)')?")


class DynamicsError(Exception):
    """Root of every error raised by dynamics/."""

    transient: bool = False


class EventRejected(DynamicsError):
    """A Business Event body that is not a valid event (or array of events).

    Args:
        field: the envelope field at fault (`"body"` for the document as a whole).
        reason: what is wrong, in words fit for an HTTP 400 answer.
        index: position in a JSON array body, or None for a single object.
    """

    def __init__(self, field: str, reason: str, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        where = f"event [{index}]: " if index is not None else ""
        super().__init__(f"{where}{field}: {reason}")


class EnrichmentPlanError(DynamicsError):
    """An enrichment plan that cannot be used, named down to the field.

    Args:
        plan: the plan's name (or its position, `"#2"`, when it has no usable name).
        fetch: the fetch's name or position inside the plan, or None for a plan-level problem.
        field: the offending key (`"entity"`, `"key.PurchaseOrderNumber"`), or None.
        reason: what is wrong.
    """

    def __init__(self, plan: str | None, fetch: str | None, field: str | None, reason: str) -> None:
        self.plan = plan
        self.fetch = fetch
        self.field = field
        self.reason = reason
        parts = [f"enrichment plan {plan!r}" if plan is not None else "enrichment plan"]
        if fetch is not None:
            parts.append(f"fetch {fetch!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(f"{', '.join(parts)}: {reason}")


class ODataError(DynamicsError):
    """An error answer from the F&O OData API, parsed from its `{"error": {...}}` body.

    Args:
        status: HTTP status, or None when the problem was found on our side (e.g. too many pages).
        code: `error.code` from the body (F&O usually sends "").
        message: `error.message` (F&O's outer message is often just "An error has occurred.").
        inner_message: `error.innererror.message`, the useful part. The stack trace is never kept.
        target: "METHOD /data/Set..." without the query string, to say which call failed.
    """

    def __init__(
        self,
        status: int | None,
        code: str = "",
        message: str = "",
        inner_message: str | None = None,
        *,
        target: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.inner_message = inner_message
        self.target = target
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "OData"
        if self.code:
            head += f" {self.code}"
        text = self.message or "no message"
        if self.inner_message and self.inner_message != self.message:
            text += f" ({self.inner_message})"
        on = f" on {self.target}" if self.target else ""
        return f"{head}{on}: {text}"


class ODataBadRequest(ODataError):
    """400: F&O refused the request (bad filter, unknown field or entity set, invalid parameters)."""


class ODataUnknownProperty(ODataBadRequest):
    """400 because the query names a field this environment's entity type does not have.

    Attributes:
        property: the field F&O could not find, e.g. `BuyerGroupId`.
        type_name: the entity type it looked on, e.g. `Microsoft.Dynamics.DataEntities.PurchaseOrderHeaderV2`
            (None if F&O did not say).
    """

    def __init__(self, property: str, type_name: str | None, status: int | None, code: str = "", message: str = "",
                 inner_message: str | None = None, *, target: str | None = None) -> None:
        self.property = property
        self.type_name = type_name
        super().__init__(status, code, message, inner_message, target=target)

    @staticmethod
    def find(*texts: str | None) -> tuple[str, str | None] | None:
        """(property, type name) if any of `texts` is OData's "Could not find a property named ..." message."""
        for text in texts:
            match = _UNKNOWN_PROPERTY.search(text or "")
            if match:
                return match.group(1), match.group(2)
        return None


class ODataUnknownEntitySet(ODataError):
    """404 on a collection URL (`GET /data/<Set>`): this environment exposes no entity set of that name.

    Attributes:
        entity_set: the name asked for.
    """

    def __init__(self, entity_set: str, status: int | None, code: str = "", message: str = "",
                 inner_message: str | None = None, *, target: str | None = None) -> None:
        self.entity_set = entity_set
        super().__init__(status, code, message, inner_message, target=target)


class ODataAuthError(ODataError):
    """401 after one forced token refresh, or 403 (app not registered in F&O, or missing roles)."""


class ODataNotFound(ODataError):
    """404 on a keyed URL: the record (or bound-action target) does not exist."""


class ODataUnavailable(ODataError):
    """F&O could not be reached or kept failing (5xx, timeout, connection error) after retries."""

    transient = True


class ODataThrottled(ODataError):
    """429 whose Retry-After is longer than we wait inline, or which outlasted our attempts.

    Args:
        retry_after: seconds to wait before trying again (from Retry-After, or the client's default).
    """

    transient = True

    def __init__(self, retry_after: float, message: str = "", inner_message: str | None = None, *,
                 code: str = "", target: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(429, code, message or "Too many requests", inner_message, target=target)

    def _describe(self) -> str:
        return f"{super()._describe()} (retry after {self.retry_after:g} s)"
