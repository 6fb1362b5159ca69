"""dynamics: everything that talks to Dynamics 365 Finance & Operations.

- events.py     Business Event bodies -> BusinessEvent (pure validation, no I/O)
- odata.py      ODataClient: queries, keyed reads, bound actions, 429/5xx/401 handling
- odata_query.py  OData literals and $filter text (pure)
- enrich.py     declarative enrichment plans and `enrich()`; templates.py is their template language
- plans.py      the default plans and merging configured plans over them
- workflow.py   validate/complete workflow work items
- dropped.py    fields an environment lacks, learnt from F&O's answers (per environment, for the process's life)
- errors.py     the DynamicsError tree; nothing else escapes this package

Imports nothing of ours; callers hand in an aiohttp.ClientSession, a token callable and plain values.
"""

from dynamics.dropped import DroppedFields, DroppedFieldsView
from dynamics.enrich import EnrichmentPlan, Enriched, EnumLiteral, Fetch, enrich, load_plan, plan_for
from dynamics.errors import (
    DynamicsError,
    EnrichmentPlanError,
    EventRejected,
    ODataAuthError,
    ODataBadRequest,
    ODataError,
    ODataNotFound,
    ODataThrottled,
    ODataUnavailable,
    ODataUnknownEntitySet,
    ODataUnknownProperty,
)
from dynamics.events import TEST_EVENT_ID, BusinessEvent, parse_events
from dynamics.odata import ODataClient, TokenCallable
from dynamics.odata_query import Enum, build_filter, literal
from dynamics.plans import DEFAULT_PLANS, plans_from_config
from dynamics.workflow import WorkflowActions

__all__ = [
    "DEFAULT_PLANS",
    "TEST_EVENT_ID",
    "BusinessEvent",
    "DroppedFields",
    "DroppedFieldsView",
    "DynamicsError",
    "EnrichmentPlan",
    "EnrichmentPlanError",
    "Enriched",
    "Enum",
    "EnumLiteral",
    "EventRejected",
    "Fetch",
    "ODataAuthError",
    "ODataBadRequest",
    "ODataClient",
    "ODataError",
    "ODataNotFound",
    "ODataThrottled",
    "ODataUnavailable",
    "ODataUnknownEntitySet",
    "ODataUnknownProperty",
    "TokenCallable",
    "WorkflowActions",
    "build_filter",
    "enrich",
    "literal",
    "load_plan",
    "parse_events",
    "plan_for",
    "plans_from_config",
]
