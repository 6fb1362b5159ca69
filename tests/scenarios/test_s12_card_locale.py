"""Cards in the reader's locale: a German environment's purchase order reads "50.657,50", and a route's own locale
wins over its environment's (the same event, two routes, two channels, two number formats: the decimal separator
differs whatever the amount)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from connector.config import Settings
from scenariokit import LeakRegistry, Sandbox, inproc_connector, raise_events, teams_bot_messages, wait_finished


def _locales(s: Settings) -> Settings:
    env = s.environments[0].model_copy(update={"locale": "de-DE"})
    routes = [dict(r) for r in s.routes if r["name"] == "purchase-orders"]
    routes.append({**routes[0], "name": "purchase-orders-en", "channel": "Invoices", "locale": "en-US",
                   "threading": "event"})
    return s.model_copy(update={"environments": [env], "routes": routes})


def _amount_text(card: dict[str, Any]) -> str:
    """The "Order total" figure as the card shows it."""
    texts = re.findall(r'"text": "([^"]*)"', json.dumps(card, ensure_ascii=False))
    after = texts[texts.index("Order total") + 1]
    return after


async def test_environment_and_route_locales_format_the_card(sandbox: Sandbox, workdir: Path,
                                                             leak_registry: LeakRegistry) -> None:
    async with inproc_connector(sandbox, workdir, leak_registry, _locales) as (conn, admin):
        [payload] = await raise_events(admin, sandbox, "confirm_po", 1)
        await wait_finished(conn.services.store, [payload], 60)
        amount = payload["TransactionCurrencyAmount"]
        by_channel = {m["channel"]: m for m in await teams_bot_messages(admin, sandbox) if m["cards"]}
        german = _amount_text(by_channel["Purchase orders"]["cards"][0])
        english = _amount_text(by_channel["Invoices"]["cards"][0])
        print(f"\norder total {amount}: de-DE (environment) {german!r}, en-US (route) {english!r}")
        us = f"{amount:,.2f}"
        assert german.startswith(us.replace(",", "_").replace(".", ",").replace("_", ".") + " "), german
        assert english.startswith(us + " "), english
