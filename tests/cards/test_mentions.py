"""Mentions: `<at>` text goes in before expansion, entities come out only for text the card really shows."""

from __future__ import annotations

import pytest

from card_variants import sample
from cards.mentions import Mention, attach_mentions, is_entra_id, prepare_mentions
from cards.render import render
from cards.validate import validate_card

GUID = "8f3a2c1e-5b7d-4e9a-a1c2-3d4e5f607182"


@pytest.mark.parametrize("value,ok", [
    (GUID, True), ("{C600136F-6814-41D9-8642-40CA0EC4EDD4}", True), ("alex@contoso.com", True),
    ("alex_fabrikam.com#EXT#@contoso.onmicrosoft.com", True), ("29:1abc", False), ("alex", False),
    ("alex@", False), ("", False), (None, False), ("8f3a2c1e-5b7d-4e9a-a1c2", False),
])
def test_id_must_be_entra_object_id_or_upn(value: object, ok: bool) -> None:
    assert is_entra_id(value) is ok


def test_mention_normalises_fo_guid_and_name() -> None:
    m = Mention(id="{C600136F-6814-41D9-8642-40CA0EC4EDD4}", name="  Alex <b>Wilber</b> ")
    assert m.id == "c600136f-6814-41d9-8642-40ca0ec4edd4"
    assert m.text == "<at>Alex bWilber/b</at>"
    assert m.entity() == {"type": "mention", "text": m.text, "mentioned": {"id": m.id, "name": "Alex bWilber/b"}}
    with pytest.raises(ValueError):
        Mention(id="not-an-id", name="x")


def test_prepare_adds_text_and_drops_bad_ids() -> None:
    data = {"mentions": {"initiator": {"id": GUID, "name": "Alex Wilber"}, "approver": {"id": "megan", "name": "M"},
                        "broken": "x"}}
    prepared, mentions = prepare_mentions(data)
    assert prepared["mentions"] == {"initiator": {"id": GUID, "name": "Alex Wilber", "text": "<at>Alex Wilber</at>"}}
    assert mentions == [Mention(GUID, "Alex Wilber")]
    assert "text" not in data["mentions"]["initiator"]  # the caller's data is not touched


def test_entities_only_for_mentions_the_card_shows() -> None:
    card = {"type": "AdaptiveCard", "version": "1.5",
            "body": [{"type": "FactSet", "facts": [{"title": "By", "value": "<at>Alex Wilber</at>"}]}],
            "actions": [{"type": "Action.Submit", "title": "<at>Megan Bowen</at>"}]}  # actions are not card text
    attach_mentions(card, [Mention(GUID, "Alex Wilber"), Mention("megan@contoso.com", "Megan Bowen")])
    assert card["msteams"]["entities"] == [
        {"type": "mention", "text": "<at>Alex Wilber</at>", "mentioned": {"id": GUID, "name": "Alex Wilber"}}]


def test_no_entities_key_when_nobody_is_shown() -> None:
    card = {"type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"}, "body": []}
    assert attach_mentions(card, [Mention(GUID, "Alex")]) == {
        "type": "AdaptiveCard", "version": "1.5", "msteams": {"width": "Full"}, "body": []}


@pytest.mark.parametrize("name", ["purchase-order-confirmed", "workflow-approval", "vendor-payment-posted"])
def test_rendered_entities_match_card_text(name: str) -> None:
    card = render(name, sample(name)).card
    entities = card["msteams"]["entities"]
    assert entities, "the sample mentions someone the card shows"
    body = repr(card["body"])
    for entity in entities:
        assert entity["text"] in body
        assert entity["text"] == f"<at>{entity['mentioned']['name']}</at>"
    assert validate_card(card) == []


def test_approval_mentions_both_people() -> None:
    card = render("workflow-approval", sample("workflow-approval")).card
    assert {e["mentioned"]["name"] for e in card["msteams"]["entities"]} == {"Alex Wilber", "Megan Bowen"}


def test_unresolvable_mention_falls_back_to_plain_text() -> None:
    data = sample("workflow-approval")
    data["mentions"]["approver"]["id"] = "megan"  # an F&O user id, not an Entra id
    card = render("workflow-approval", data).card
    assert [e["mentioned"]["name"] for e in card["msteams"]["entities"]] == ["Alex Wilber"]
    assert {"title": "Assigned to", "value": "Megan Bowen"} in card["body"][1]["facts"]


def test_validate_flags_entity_text_missing_from_card() -> None:
    card = render("purchase-order-confirmed", sample("purchase-order-confirmed")).card
    card["msteams"]["entities"][0]["text"] = "<at>Someone Else</at>"
    card["msteams"]["entities"][0]["mentioned"]["id"] = "29:xyz"
    problems = validate_card(card)
    assert any("does not occur in the card text" in p for p in problems)
    assert any("mentioned.id" in p for p in problems)
