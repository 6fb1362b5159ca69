"""Errors raised by cards/.

    CardsError                  root of everything cards/ raises on purpose
    └── TemplateError           a template could not be expanded (syntax, unknown function, runtime error
                                in a whole-value binding, too deep or too large); names the template, the JSON
                                path and the expression

Nothing from the expression engine's internals (its private ``EvalError``, Python's RecursionError) leaves
``cards.expand``: it is translated here, once.
"""

from __future__ import annotations


class CardsError(Exception):
    """Root of the errors cards/ raises."""


class TemplateError(CardsError):
    """A template could not be expanded.

    Attributes:
        template: the template's name (e.g. ``purchase-order-confirmed``).
        path: JSON path of the offending value, e.g. ``$.body[2].items[0].text``.
        expression: the expression text, when one is involved.
        reason: what went wrong, without the location.
    """

    def __init__(self, reason: str, *, template: str = "<template>", path: str = "$", expression: str | None = None):
        self.reason = reason
        self.template = template
        self.path = path
        self.expression = expression
        where = f"{template} at {path}"
        if expression is not None:
            where += f" in ${{{expression}}}"
        super().__init__(f"{where}: {reason}")
