"""Configuration: TOML plus environment overrides, with errors that name the key."""

from pathlib import Path

import pytest

from connector.config import ConfigError, ignored_environment_variables, load_settings

GOOD = """
[server]
port = 8443
public_url = "https://connector.contoso.example"

[store]
url = "sqlite:///data/ml.db"

[cloud]
name = "gcch"

[identity]
tenant_id = "7d3c1e2a-5b64-4f0e-9a1d-2c7b8e4f6a10"
client_id = "11111111-2222-3333-4444-555555555555"

[[environments]]
name = "contoso-prod"
base_url = "https://contoso.operations.dynamics.com/"
legal_entities = ["USMF", "demf"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ml-connector.toml"
    p.write_text(text)
    return p


def test_file_then_environment_overrides(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD), environ={"ML_SERVER__PORT": "9000", "ML_CLOUD__GRAPH_URL": "https://g.example/"})
    assert s.server.port == 9000
    assert s.environments[0].base_url == "https://contoso.operations.dynamics.com"
    assert s.environments[0].event_secret_name == "env/contoso-prod/event-token"
    # sovereign defaults, and an override wins
    assert s.cloud.endpoint("authority_host") == "https://login.microsoftonline.us"
    assert s.cloud.endpoint("graph_url") == "https://g.example"


def test_errors_name_each_key(tmp_path: Path) -> None:
    text = GOOD.replace('name = "gcch"', 'name = "mars"') + '\n[pipeline]\nworkerz = 3\n'
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), environ={"ML_SERVER__PORT": "not-a-port"})
    msg = str(err.value)
    assert "cloud.name" in msg and "pipeline.workerz: unknown key" in msg and "server.port" in msg


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\nport=1"), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_tls_pair_and_custom_cloud(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        load_settings(environ={"ML_SERVER__TLS_CERT": str(tmp_path / "c.pem")})
    with pytest.raises(ConfigError, match="custom"):
        load_settings(environ={"ML_CLOUD__NAME": "custom"})


def test_environment_list_as_json_and_duplicates() -> None:
    env = {"ML_ENVIRONMENTS": '[{"name": "a", "base_url": "https://a"}, {"name": "A", "base_url": "https://b"}]'}
    with pytest.raises(ConfigError, match="duplicate"):
        load_settings(environ=env)
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(environ={"ML_ENVIRONMENTS": "[oops"})


def test_unrelated_ml_variables_are_ignored_but_typos_inside_a_section_are_not(tmp_path: Path) -> None:
    # ML_DEBUG / ML_FOO__BAR belong to someone else (or name no section): they must not stop the service
    s = load_settings(write(tmp_path, GOOD), environ={"ML_DEBUG": "1", "ML_FOO__BAR": "x", "ML_SERVER__PORT": "9000"})
    assert s.server.port == 9000
    assert ignored_environment_variables({"ML_DEBUG": "1", "ML_FOO__BAR": "x", "ML_SERVER__PORT": "1",
                                          "ML_MASTER_KEY": "k", "PATH": "/bin"}) == ["ML_DEBUG", "ML_FOO__BAR"]
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        load_settings(write(tmp_path, GOOD), environ={"ML_SERVER__PROT": "1"})


def test_an_empty_override_is_an_empty_value_not_json(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD), environ={"ML_IDENTITY__TENANT_ID": ""})
    assert s.identity.tenant_id == ""


def test_one_problem_is_one_line_and_list_keys_use_brackets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, GOOD), environ={"ML_ENVIRONMENTS": '[{"name": "a"}]'})
    assert str(err.value) == (f"invalid configuration ({tmp_path / 'ml-connector.toml'} and environment): "
                              "environments[0].base_url: required key is missing")
