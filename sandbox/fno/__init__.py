"""The F&O stand-in: entity data (state), OData query rules (query), the /data app (odata), service protection
(throttle) and its admin API (admin)."""

from sandbox.fno.admin import add_fno_admin_routes
from sandbox.fno.odata import Caller, FnoConfig, FnoError, FnoService, create_fno_app
from sandbox.fno.state import ENTITY_TYPES, EntityType, FnoState
from sandbox.fno.throttle import Limits, ServiceProtection

__all__ = ["ENTITY_TYPES", "Caller", "EntityType", "FnoConfig", "FnoError", "FnoService", "FnoState", "Limits",
           "ServiceProtection", "add_fno_admin_routes", "create_fno_app"]
