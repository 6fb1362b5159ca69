"""The Dockerfile's invariants, read as text (no Docker daemon here): who it runs as, what it installs, where it
listens, how it is health-checked, and that its environment leaves the configuration file in charge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.config import load_settings
from imagekit import REPO, Instruction, env_pairs, is_user_setup, load, parse, stages

FINAL = stages(load())[-1][1]


def ops(op: str, body: list[Instruction] = FINAL) -> list[Instruction]:
    return [i for i in body if i.op == op]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in ops("ENV"):
        env.update(env_pairs(ins))
    return env


def run_commands(body: list[Instruction] = FINAL) -> list[str]:
    return [i.args for i in ops("RUN", body)]


def test_parser_reads_continuations_flags_and_forms() -> None:
    parsed = parse("# syntax=docker/dockerfile:1\nFROM x AS b\n# c\nRUN --mount=type=cache,target=/c \\\n"
                   "    # inside\n    a \\\n    && b\nCMD [\"serve\"]\n")
    assert [(i.op, i.args, i.flags) for i in parsed] == [
        ("FROM", "x AS b", {}), ("RUN", "a && b", {"mount": "type=cache,target=/c"}), ("CMD", '["serve"]', {})]
    assert parsed[2].exec_form() == ["serve"]


def test_runs_as_the_documented_non_root_uid() -> None:
    users = ops("USER")
    assert users, "no USER: the container would run as root"
    uid = users[-1].args.split(":")[0]
    assert uid == "10001", f"USER {users[-1].args}: README documents uid 10001 (numeric, so runAsNonRoot can check)"
    setup = [c for c in run_commands() if is_user_setup(c)]
    assert setup and re.search(r"useradd\b.*--uid 10001\b", setup[0]), setup
    assert "chown 10001:10001 /data" in setup[0], "the data volume must belong to the service's uid"


def test_no_environment_variable_overrides_configuration_keys() -> None:
    """ML_<SECTION>__<KEY> beats the configuration file, so an image default there would silently win over it."""
    keys = [k for k in image_env() if k.startswith("ML_") and "__" in k]
    assert keys == [], f"ENV {keys} would override the configuration file (use docker/ml-connector.toml)"


def test_a_configured_mongodb_store_wins_over_the_image(tmp_path: Path) -> None:
    """What a deployment of several instances relies on: its file's store.url is the one used."""
    config = tmp_path / "ml-connector.toml"
    config.write_text('[store]\nurl = "mongodb://db1,db2/ml_connector?replicaSet=rs0"\n')
    env = {k: v for k, v in image_env().items() if k != "ML_CONFIG"}
    assert load_settings(config, environ=env).store.url == "mongodb://db1,db2/ml_connector?replicaSet=rs0"


def test_default_configuration_listens_where_expose_says() -> None:
    (exposed,) = [int(p.split("/")[0]) for i in ops("EXPOSE") for p in i.args.split()]
    config_path = image_env()["ML_CONFIG"]
    (copy,) = [i for i in ops("COPY") if i.words()[-1] == config_path]
    source = REPO / copy.words()[0]
    settings = load_settings(source, environ={})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", exposed)
    volumes = [v for i in ops("VOLUME") for v in (i.exec_form() or i.args.split())]
    assert settings.store.url.startswith("sqlite:////data/") and "/data" in volumes


def test_healthcheck_uses_python_and_the_service_configuration() -> None:
    (check,) = ops("HEALTHCHECK")
    assert check.args.startswith("CMD ")
    command = Instruction("CMD", check.args[4:]).words()
    assert command[:3] == ["python", "-m", "connector.healthcheck"]
    assert "timeout" in check.flags and "interval" in check.flags


def test_installs_the_wheel_from_the_runtime_lock_without_test_extras() -> None:
    build_commands = " ".join(run_commands(stages(load())[0][1]))
    assert re.search(r"\bpip wheel --no-deps\b", build_commands)
    install = " ".join(run_commands())
    assert re.search(r"pip install --require-hashes -r \S*requirements\.lock\b", install), install
    assert re.search(r"pip install --no-deps \S+\.whl", install), install
    everything = install + " " + build_commands
    assert " -e " not in everything and "--editable" not in everything, "the image must not install in place"
    assert "[test]" not in everything and "requirements-test" not in everything
    copied = [i.words()[0] for i in ops("COPY")]
    assert "requirements.lock" in copied
    lock = (REPO / "requirements.lock").read_text()
    assert not re.search(r"^(pytest|hypothesis|mongomock|ruff|mypy)\b", lock, re.M), "test tools in the runtime lock"


@pytest.mark.parametrize("line", ["ENTRYPOINT", "CMD"])
def test_starts_the_service(line: str) -> None:
    words = {"ENTRYPOINT": ["ml-connector"], "CMD": ["serve"]}[line]
    assert ops(line)[-1].exec_form() == words


def test_compose_runs_two_instances_on_one_mongodb_replica_set(tmp_path: Path) -> None:
    compose = (REPO / "compose.yaml").read_text()
    config_path = image_env()["ML_CONFIG"]
    assert f"./docker/compose.toml:{config_path}:ro" in compose, "compose must mount its config over the image's"
    assert '"--replSet", "rs0"' in compose and "image: mongo:" in compose
    assert re.findall(r'ports: \["(\d+):(\d+)"\]', compose) == [("8443", "8443"), ("8444", "8443")]
    assert "ML_MASTER_KEY_FILE: /run/secrets/ml-master-key" in compose
    pem = tmp_path / "tls.pem"
    pem.write_text("placeholder")  # the files are mounted in the container; here only their presence is checked
    settings = load_settings(REPO / "docker" / "compose.toml",
                             environ={"ML_SERVER__TLS_CERT": str(pem), "ML_SERVER__TLS_KEY": str(pem)})
    assert settings.store.url.startswith("mongodb://mongo:27017/") and "replicaSet=rs0" in settings.store.url
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8443)
    raw = (REPO / "docker" / "compose.toml").read_text()
    assert 'tls_cert = "/etc/ml-connector/tls/tls.pem"' in raw and "./docker/tls:/etc/ml-connector/tls:ro" in compose
