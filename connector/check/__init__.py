"""`ml-connector check`: ping the real systems with the configured credentials and say what to fix.

One module per group of checks (config_checks, fno_checks, teams_checks, server_checks), the runner that runs
them with timeouts (a failing group never stops the others) and the output (text checklist or JSON). Read-only:
nothing is written to F&O, Teams, Graph or the store.
"""

from connector.check.model import CheckResult, Status
from connector.check.output import ProgressLine, render_json, render_text
from connector.check.runner import UnknownEnvironment, failed, run_checks

__all__ = ["CheckResult", "ProgressLine", "Status", "UnknownEnvironment", "failed", "render_json", "render_text",
           "run_checks"]
