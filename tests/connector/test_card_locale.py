"""The card locale: `environments[].locale` and `routes[].locale` (route wins, default en-US) reach the card data,
and the templates format numbers and dates with it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cards import Catalog, render_card
from connector.carddata import build_card_data, digest_card_data, summarize
from connector.config import ConfigError, EnvironmentSettings
from connector.routes import routes_from_config
from test_carddata import record, shown

ROUTE = {"name": "po", "events": ["PurchaseOrderConfirmedBusinessEvent"], "team": "Finance"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.builtin()


def po(locale: str | None) -> dict:
    rec = record("PurchaseOrderConfirmedBusinessEvent",
                 {"PurchaseOrderNumber": "PO-1", "TransactionCurrencyAmount": 1234567.891, "TransactionCurrencyCode":
                  "EUR", "PurchaseOrderDate": "/Date(1772668800000)/", "VendorAccount": "DE-001"})
    return build_card_data(rec, environment_name="contoso-de", base_url="https://contoso.example", locale=locale)


@pytest.mark.parametrize("locale,amount,date", [
    (None, "1,234,567.89 EUR", "05 Mar 2026"),
    ("de-DE", "1.234.567,89 EUR", "05 März 2026"),
    ("fr-FR", "1\u202f234\u202f567,89 EUR", "05 mars 2026"),
    ("en-IN", "12,34,567.89 EUR", "05 Mar 2026"),
])
def test_card_numbers_and_dates_follow_the_locale(catalog: Catalog, locale: str | None, amount: str,
                                                  date: str) -> None:
    data = po(locale)
    assert data["locale"] == (locale or "en-US")
    text = shown(render_card("purchase-order-confirmed", data, catalog=catalog).card)
    assert amount in text and date in text


def test_digest_takes_the_locale_its_rows_share(catalog: Catalog) -> None:
    rows = [summarize(po("de-DE")), summarize(po("de-DE"))]
    data = digest_card_data(rows)
    assert data["locale"] == "de-DE"
    assert "1.234.567,89" in shown(render_card("digest", data, catalog=catalog).card)
    assert digest_card_data([summarize(po("de-DE")), summarize(po("fr-FR"))])["locale"] == "en-US"


def test_unknown_or_missing_locale_in_card_data_renders_en_us(catalog: Catalog) -> None:
    for locale in ("xx-YY", 42, None):
        data = dict(po(None), locale=locale)
        assert "1,234,567.89 EUR" in shown(render_card("purchase-order-confirmed", data, catalog=catalog).card)


def test_configured_locales_are_checked_and_normalised() -> None:
    env = EnvironmentSettings(name="contoso-de", base_url="https://contoso.example", locale="de_de")
    assert env.locale == "de-DE"
    assert EnvironmentSettings(name="e", base_url="https://x.example").locale is None
    with pytest.raises(ValidationError, match="unknown locale 'German'"):
        EnvironmentSettings(name="e", base_url="https://x.example", locale="German")
    [route] = routes_from_config([{**ROUTE, "locale": "sv-se"}])
    assert route.locale == "sv-SE"
    assert routes_from_config([ROUTE])[0].locale is None
    with pytest.raises(ConfigError, match=r"routes\[0\]\.locale: unknown locale 'xx-YY'.*de-DE"):
        routes_from_config([{**ROUTE, "locale": "xx-YY"}])

