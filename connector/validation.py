"""One validation of the whole configuration, shared by `serve` and `ml-connector check`.

Placeholder until the `config` branch's fuller version is merged: it runs the checks create_app runs before it
opens anything ([bot], routes, enrichment plans, the card templates) and raises ConfigError naming what is wrong.
"""

from __future__ import annotations

from cards import Catalog, TemplateInvalid
from connector.config import ConfigError, Settings
from connector.routes import routes_from_config
from connector.teams_config import teams_settings
from dynamics import plans_from_config


def validate_settings(settings: Settings) -> None:
    """Raise ConfigError when the service could not start with these settings."""
    teams_settings(settings)
    routes_from_config(settings.routes)
    plans_from_config(settings.enrichment)
    try:
        Catalog.load(settings.cards.template_dir)
    except TemplateInvalid as exc:
        raise ConfigError(f"[cards] template_dir: {exc}") from None
