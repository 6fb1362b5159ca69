"""InstallRecorder: installs, uninstalls and channel events from a tenant the bot does not serve are not recorded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot import ChannelEvent, InstallEvent
from connector.config import ConfigError, Settings
from connector.installs import InstallRecorder
from connector.store.factory import open_store
from connector.teams_config import bot_settings_values, served_tenants, teams_settings

OURS = "aaaaaaaa-0000-0000-0000-000000000001"
PARTNER = "cccccccc-0000-0000-0000-000000000003"
THEIRS = "bbbbbbbb-0000-0000-0000-000000000002"


@pytest.fixture
async def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'i.db'}")
    await s.open()
    yield s
    await s.close()


def _install(tenant: str, team: str = "19:t@thread.tacv2", action: str = "add") -> InstallEvent:
    return InstallEvent(action=action, scope="team", source="installationUpdate", tenant_id=tenant,
                        service_url="https://smba/", bot_id="28:b", team_id=team, team_name="Procurement")


async def test_foreign_tenant_is_not_recorded(store, caplog) -> None:
    caplog.set_level(logging.WARNING)
    recorder = InstallRecorder(store, lambda: 1.0, tenants={OURS.upper(), PARTNER})
    await recorder.on_install(_install(THEIRS))
    assert await store.list_installs() == []
    assert f"tenant {THEIRS}" in caplog.text
    await recorder.on_install(_install(OURS, "19:ours@thread.tacv2"))
    await recorder.on_install(_install(PARTNER, "19:partner@thread.tacv2"))
    assert sorted(i.tenant_id for i in await store.list_installs()) == sorted([OURS, PARTNER])
    # a foreign tenant cannot uninstall or rename our team either
    await recorder.on_uninstall(_install(THEIRS, "19:ours@thread.tacv2", action="remove"))
    await recorder.on_channel_event(ChannelEvent(kind="teamRenamed", tenant_id=THEIRS, service_url="https://x/",
                                                 team_id="19:ours@thread.tacv2", team_name="Pwned"))
    ours = await store.get_install("team:19:ours@thread.tacv2")
    assert ours.active and ours.team_name == "Procurement"


def _settings(**bot) -> Settings:
    return Settings(identity={"tenant_id": OURS, "client_id": "c"}, bot={"app_id": "b", **bot})


def test_served_tenants_from_config() -> None:
    s = _settings(allowed_tenants=[PARTNER.upper()])
    teams = teams_settings(s)
    assert served_tenants(s, teams) == {OURS, PARTNER}
    assert bot_settings_values(s, teams)["allowed_tenants"] == (PARTNER,)
    s = _settings(tenant_id=THEIRS)
    assert served_tenants(s, teams_settings(s)) == {THEIRS}  # [bot] tenant_id replaces identity's
    with pytest.raises(ConfigError, match="bot.allowed_tenants: .*tenant ids are GUIDs"):
        teams_settings(_settings(allowed_tenants=["contoso.onmicrosoft.com"]))
