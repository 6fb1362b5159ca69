"""Locales for `formatNumber`, `formatDateTime` (and `string`): CLDR data through Babel, never tables of our own.

Microsoft's engine formats numbers with d3-format and a locale table of its own (`localeInfo`, exact keys such as
`de-DE`); an unknown locale formats as en-US. We take the same symbols from CLDR (Babel): the decimal and grouping
separators and the grouping sizes (3 for most, 3 then 2 for en-IN). The minus stays U+2212 in every locale, as d3
writes it. Dates: Microsoft passes the locale to dayjs, which has no locale but English loaded, so its month and day
names are always English; ours follow the locale's CLDR names (the card is for a reader in that locale). Every
English locale keeps dayjs's English names exactly.

Where CLDR and Microsoft's table disagree (fr-FR groups with U+202F, Microsoft's table U+00A0; `de` or `de-de`,
which Microsoft does not find and formats as en-US) see tests/cards/test_differential.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import get_decimal_symbol, get_group_symbol

__all__ = ["DEFAULT_LOCALE", "DateNames", "NumberSymbols", "canonical_locale", "date_names", "number_symbols"]

DEFAULT_LOCALE = "en-US"


@dataclass(frozen=True)
class NumberSymbols:
    decimal: str
    group: str
    primary: int  # digits in the group next to the decimal point
    secondary: int  # digits in every further group (2 in en-IN: 12,34,567.89)


@dataclass(frozen=True)
class DateNames:
    months_wide: tuple[str, ...]  # January..December
    months_abbreviated: tuple[str, ...]
    days_wide: tuple[str, ...]  # Sunday..Saturday (dayjs order)
    days_abbreviated: tuple[str, ...]
    days_short: tuple[str, ...]
    am: str
    pm: str


EN_US_NUMBERS = NumberSymbols(".", ",", 3, 3)


@lru_cache(maxsize=512)
def _parse(tag: str) -> Locale | None:
    text = tag.strip().replace("_", "-")
    if not text or len(text) > 35:
        return None
    try:
        return Locale.parse(text, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def canonical_locale(tag: object) -> str | None:
    """The BCP 47 form of a locale CLDR knows (`de_de` -> `de-DE`), or None for anything else."""
    if not isinstance(tag, str):
        return None
    loc = _parse(tag)
    if loc is None:
        return None
    return "-".join(p for p in (loc.language, loc.script, loc.territory) if p)


@lru_cache(maxsize=512)
def number_symbols(tag: str | None) -> NumberSymbols:
    """Separators and grouping of `tag` (Latin digits); en-US's for None or a locale CLDR does not know."""
    loc = _parse(tag) if isinstance(tag, str) else None
    if loc is None:
        return EN_US_NUMBERS
    pattern = loc.decimal_formats.get(None)
    primary, secondary = pattern.grouping if pattern is not None else (3, 3)
    if primary <= 0 or primary > 9:  # a pattern without grouping: group as en-US does, like d3
        primary, secondary = 3, 3
    return NumberSymbols(get_decimal_symbol(loc), get_group_symbol(loc), primary, secondary or primary)


@lru_cache(maxsize=512)
def date_names(tag: str | None) -> DateNames | None:
    """CLDR month, day and AM/PM names of `tag`; None for English, unknown locales and None (dayjs's English)."""
    loc = _parse(tag) if isinstance(tag, str) else None
    if loc is None or loc.language == "en":
        return None
    months, days = loc.months["format"], loc.days["format"]
    order = (6, 0, 1, 2, 3, 4, 5)  # Babel counts days from Monday, dayjs from Sunday

    def week(width: str) -> tuple[str, ...]:
        return tuple(days[width][i] for i in order)

    return DateNames(
        months_wide=tuple(months["wide"][m] for m in range(1, 13)),
        months_abbreviated=tuple(months["abbreviated"][m] for m in range(1, 13)),
        days_wide=week("wide"), days_abbreviated=week("abbreviated"), days_short=week("short"),
        am=loc.day_periods["format"]["abbreviated"].get("am", "AM"),
        pm=loc.day_periods["format"]["abbreviated"].get("pm", "PM"),
    )
