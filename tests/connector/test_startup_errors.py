"""`ml-connector serve` that cannot start says so in one line on stderr, exit code 2: no traceback, no noise.

Each case runs the real command in a subprocess (what an admin sees), with a configuration that is otherwise fine.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.secrets import generate_master_key
from sandbox.tls import make_ca

CONFIG = """
[server]
port = {port}
public_url = "https://connector.contoso.com"
[store]
url = "sqlite:///{tmp}/ml.db"
[identity]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "11111111-2222-3333-4444-555555555555"
[[environments]]
name = "contoso-prod"
base_url = "https://contoso.operations.dynamics.com"
"""
COMMAND = [sys.executable, "-c", "from connector.cli import main; main()"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_")}
    env.update(ML_MASTER_KEY=generate_master_key(), ML_CONFIG=str(tmp_path / "ml-connector.toml"))
    env.update(overrides)
    return env


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ml-connector.toml"
    path.write_text(CONFIG.format(port=closed_port(), tmp=tmp_path))
    return path


def read_only_folder(tmp_path: Path) -> str:
    if os.geteuid() == 0:  # root writes anywhere chmod allows nothing: /proc refuses new files even to root
        return "/proc"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return str(folder)


def cases(tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    ca1, ca2 = make_ca(tmp_path / "ca1"), make_ca(tmp_path / "ca2")
    key_file = tmp_path / "master.key"
    key_file.write_text(generate_master_key())
    key_file.chmod(0o644)  # readable by others: refused
    return {
        "no-master-key": ({"ML_MASTER_KEY": ""}, "ML_MASTER_KEY"),
        "master-key-file-missing": ({"ML_MASTER_KEY": "", "ML_MASTER_KEY_FILE": str(tmp_path / "nope.key")},
                                    "nope.key"),
        "master-key-file-too-open": ({"ML_MASTER_KEY": "", "ML_MASTER_KEY_FILE": str(key_file)}, "chmod 600"),
        "mongodb-closed-port": ({"ML_STORE__URL": f"mongodb://127.0.0.1:{closed_port()}/ml"}, "store is unavailable"),
        "sqlite-folder-missing": ({"ML_STORE__URL": f"sqlite:///{tmp_path}/missing/ml.db"}, "does not exist"),
        "sqlite-folder-read-only": ({"ML_STORE__URL": f"sqlite:///{read_only_folder(tmp_path)}/ml.db"}, "store"),
        "certificate-path-wrong": ({"ML_SERVER__TLS_CERT": str(tmp_path / "tls.pem"),
                                    "ML_SERVER__TLS_KEY": str(ca1.server_key_path)}, "server.tls_cert"),
        "certificate-and-key-differ": ({"ML_SERVER__TLS_CERT": str(ca1.server_cert_path),
                                        "ML_SERVER__TLS_KEY": str(ca2.server_key_path)}, "server.tls_key"),
        "template-dir-gone": ({"ML_CARDS__TEMPLATE_DIR": str(tmp_path / "templates")}, "cards.template_dir"),
        "credential-not-stored": ({}, "ml-connector secrets set entra-client-secret"),
    }


CASES = ["no-master-key", "master-key-file-missing", "master-key-file-too-open", "mongodb-closed-port",
         "sqlite-folder-missing", "sqlite-folder-read-only", "certificate-path-wrong", "certificate-and-key-differ",
         "template-dir-gone", "credential-not-stored"]


@pytest.mark.parametrize("case", CASES)
def test_start_up_error_is_one_line(case: str, cfg: Path, tmp_path: Path) -> None:
    overrides, says = cases(tmp_path)[case]
    done = subprocess.run([*COMMAND, "serve"], env=serve_env(tmp_path, **overrides), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and says in lines[0]
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr


def wait_for_line(proc: subprocess.Popen[str], text: str, deadline: float) -> list[str]:
    """stderr lines up to the first containing `text` (or the process's end / the deadline).

    Reads the raw descriptor, not the text wrapper: its buffer may already hold the wanted line while select()
    reports nothing more to read (which made this wait for the whole deadline when lines came in one burst)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen: list[str] = []
    pending = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace") + "\n"
            seen.append(line)
            if text in line:
                return seen
    return seen


def test_unrelated_ml_variables_do_not_stop_the_service(cfg: Path, tmp_path: Path) -> None:
    cfg.write_text(cfg.read_text().split("[[environments]]")[0])  # nothing to authenticate: just start and listen
    env = serve_env(tmp_path, ML_DEBUG="1", ML_FOO__BAR="x", ML_LOGGING__LEVEL="DEBUG")
    proc = subprocess.Popen([*COMMAND, "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        seen = wait_for_line(proc, "listening on", time.monotonic() + 60)
        assert any("listening on" in line for line in seen), "".join(seen)
        assert any("ignored environment variables" in line and "ML_DEBUG, ML_FOO__BAR" in line for line in seen)
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "Traceback" not in rest and "Unclosed" not in rest


def test_a_busy_port_is_one_line(cfg: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg.write_text(CONFIG.format(port=port, tmp=tmp_path).split("[[environments]]")[0])
        done = subprocess.run([*COMMAND, "serve"], env=serve_env(tmp_path, ML_SERVER__HOST="127.0.0.1"),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "WARNING" not in line]  # "no [bot]" is a warning log
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot listen on 127.0.0.1:{port}"), done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr
