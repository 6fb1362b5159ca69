"""Pure pieces of bot/: Retry-After parsing, backoff, settings, activity translation, and the package's shape."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bot
from bot import BotSettings
from bot.activities import card_execute, card_message, card_submit, channel_event, incoming_message, install_event
from bot.retry import RetryBudget, RetryPolicy, parse_retry_after

BOT_DIR = Path(bot.__file__).parent
SDK_PACKAGES = {"botbuilder", "botframework", "msrest"}


@pytest.mark.parametrize("value,expected", [
    ("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), ("-4", 0.0),
    ("Fri, 15 Jan 2027 08:00:10 GMT", 10.0), ("Fri, 15 Jan 2027 07:59:00 GMT", 0.0),
    (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=1_800_000_000.0) == expected


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = RetryPolicy(base_delay=1, max_delay=10)
    assert [policy.backoff(n, lambda: 0.0) for n in range(5)] == [0.5, 1, 2, 4, 5]
    assert [policy.backoff(n, lambda: 0.999999) for n in range(5)] == pytest.approx([1, 2, 4, 8, 10], rel=1e-5)


async def test_budget_stops_at_attempts_or_inline_wait():
    now = [0.0]

    async def sleep(s):
        now[0] += s

    budget = RetryBudget(RetryPolicy(max_attempts=3, max_inline_wait=100), sleep=sleep, clock=lambda: now[0])
    assert [await budget.wait(1), await budget.wait(1), await budget.wait(1)] == [True, True, False]
    budget = RetryBudget(RetryPolicy(max_attempts=9, max_inline_wait=5), sleep=sleep, clock=lambda: now[0])
    assert [await budget.wait(3), await budget.wait(3)] == [True, False]


def test_settings_defaults_and_validation():
    settings = BotSettings(app_id="app", tenant_id="t")
    assert settings.app_type == "SingleTenant" and settings.bot_id == "28:app"
    assert settings.to_bot_from_channel_openid_metadata_url == \
        "https://login.botframework.com/v1/.well-known/openidconfiguration"
    assert settings.to_channel_from_bot_oauth_scope == "https://api.botframework.com"
    with pytest.raises(ValueError, match="tenant_id"):
        BotSettings(app_id="app")
    with pytest.raises(ValueError, match="app_type"):
        BotSettings(app_id="app", app_type="Whatever", tenant_id="t")
    assert BotSettings(app_id="app", app_type="MultiTenant").tenant_id is None
    gov = BotSettings.us_gov("app", "t")
    assert gov.to_bot_from_channel_token_issuer == "https://api.botframework.us"


def test_card_message_carries_the_card_as_is():
    card = {"type": "AdaptiveCard", "msteams": {"entities": [
        {"type": "mention", "text": "<at>A</at>", "mentioned": {"id": "1", "name": "A"}},
        {"type": "mention", "text": "<at>B</at>", "mentioned": {"id": "2", "name": "B"}}]}}
    assert card_message(card) == {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}
    with_text = card_message(card, "hey <at>B</at>")
    assert with_text["entities"] == [card["msteams"]["entities"][1]]
    assert card_message(None, "plain") == {"type": "message", "text": "plain"}


def test_translation_tolerates_odd_shapes():
    assert install_event({"type": "installationUpdate", "action": "weird"}) is None
    assert install_event({"type": "conversationUpdate", "membersAdded": [{"id": "29:someone"}],
                          "recipient": {"id": "28:bot"}}) is None
    assert channel_event({"type": "conversationUpdate", "channelData": {"eventType": "teamMemberAdded"}}) is None
    assert card_submit({"type": "message", "value": "string data"}) is None  # Teams drops non-object data
    assert incoming_message({"type": "message", "value": {"a": 1}}) is None
    with pytest.raises(ValueError):
        card_execute({"type": "invoke", "value": {"action": {"type": "Action.Submit"}}})
    event = install_event({"type": "installationUpdate", "action": "add", "channelData": None, "conversation": 5,
                           "recipient": {"id": "28:bot"}})
    assert event is not None and event.scope == "personal" and event.tenant_id == ""


def test_group_chat_install_and_tenant_spellings():
    event = install_event({"type": "installationUpdate", "action": "add", "serviceUrl": "https://s/",
                           "conversation": {"conversationType": "groupChat", "id": "19:chat@thread.v2",
                                            "tenantID": "t-9"},
                           "recipient": {"id": "28:bot"}, "from": {"id": "29:u", "aadObjectId": "oid"}})
    assert (event.scope, event.tenant_id, event.conversation_id) == ("groupChat", "t-9", "19:chat@thread.v2")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_bot_sdk_import_lives_in_sdk_py():
    offenders = sorted(p.name for p in BOT_DIR.glob("*.py") if p.name != "sdk.py" and _imports(p) & SDK_PACKAGES)
    assert offenders == []
    assert _imports(BOT_DIR / "sdk.py") & SDK_PACKAGES  # the check can fail


def test_public_surface_has_no_foreign_types():
    for name in bot.__all__:
        obj = getattr(bot, name)
        module = getattr(obj, "__module__", "bot")
        assert module.startswith("bot"), (name, module)
