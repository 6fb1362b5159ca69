"""cards: Adaptive Card templates for Teams (expansion, rendering, catalog, mentions).

What connector/ may use is listed in ``__all__``; everything else is private to cards/.
"""

from .errors import CardsError, TemplateError
from .template import expand

__all__ = [
    "CardsError",
    "TemplateError",
    "expand",
]

# Rendering for connector/: catalog, render, mentions, size limits, validation, preview (cards/render.py & co.)
from .catalog import Catalog, TemplateInvalid  # noqa: E402
from .limits import DEFAULT_MAX_BYTES  # noqa: E402
from .locales import DEFAULT_LOCALE, canonical_locale  # noqa: E402
from .mentions import Mention  # noqa: E402
from .preview import PreviewResult, write_preview  # noqa: E402
# `render` is exported as `render_card`: binding `cards.render` to the function would hide the module.
from .render import RenderedCard, card_attachment, event_fields, render as render_card  # noqa: E402
from .validate import validate_card  # noqa: E402

__all__ += [
    "Catalog",
    "DEFAULT_LOCALE",
    "DEFAULT_MAX_BYTES",
    "Mention",
    "PreviewResult",
    "RenderedCard",
    "TemplateInvalid",
    "canonical_locale",
    "card_attachment",
    "event_fields",
    "render_card",
    "validate_card",
    "write_preview",
]
