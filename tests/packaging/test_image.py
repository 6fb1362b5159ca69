"""The image, built without Docker: the Dockerfile's own RUN/COPY/ENV replayed into a fresh virtual environment
(imagekit.replay), then its ENTRYPOINT+CMD started as documented (config mounted over the image's file, master key
file of mode 0400, TLS files, data volume) and its HEALTHCHECK run against it. The same installation is what a
wheel user gets, so the wheel's own checks (--version, manifest build, no test tools) run on it too."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagekit import REPO, Image, replay

pytestmark = pytest.mark.slow

TEST_TOOLS = {"pytest", "hypothesis", "mongomock", "mongomock-motor", "ruff", "mypy", "uv", "pytest-asyncio"}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return replay(tmp_path_factory.mktemp("image"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for connector.contoso.com (not for 127.0.0.1: the health check must not need that)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connector.contoso.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("connector.contoso.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.pem", directory / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o400)
    return cert_path, key_path


def run(image: Image, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env or image.env, cwd=cwd or image.workdir, timeout=timeout,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def service_env(image: Image) -> dict[str, str]:
    """`docker run` as README.md shows it, mapped: config over the image's file, key and TLS files mounted."""
    port = free_port()
    cert, key = self_signed(image.path("/etc/ml-connector/tls"))
    config = Path(image.env["ML_CONFIG"])
    config.write_text(  # the image's file, with a loopback port for the test (the image itself: 0.0.0.0:8443)
        f'[server]\nhost = "127.0.0.1"\nport = {port}\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[store]\nurl = "sqlite:///{image.path("/data/ml-connector.db")}"\n')
    secret = image.path("/run/secrets/ml-master-key")
    secret.parent.mkdir(parents=True)
    made = run(image, image.exe("ml-connector"), "secrets", "generate-key")
    assert made.returncode == 0, made.stderr
    secret.write_text(made.stdout.strip() + "\n")
    secret.chmod(0o400)
    return {**image.env, "ML_MASTER_KEY_FILE": str(secret)}


@pytest.fixture(scope="module")
def served(image: Image, service_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    argv = [image.exe(image.entrypoint[0]), *image.entrypoint[1:], *image.cmd]
    log = image.path("/serve.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=service_env, cwd=image.workdir, stdout=out, stderr=subprocess.STDOUT,
                                text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def healthcheck(image: Image, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run(image, image.exe(image.healthcheck[0]), *image.healthcheck[1:], env=env, timeout=30)


def test_the_package_comes_from_the_wheel_not_the_checkout(image: Image) -> None:
    done = run(image, image.exe("python"), "-c", "import connector, cards; print(connector.__file__, cards.__file__)")
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert Path(path).is_relative_to(image.venv) and "site-packages" in path, path
    direct_url = list((image.venv / "lib").glob("python3*/site-packages/ml_connector-*.dist-info/direct_url.json"))
    assert direct_url and '"editable": true' not in direct_url[0].read_text()


def test_no_test_or_lint_tools_are_installed(image: Image) -> None:
    done = run(image, image.exe("python"), "-m", "pip", "list", "--format=json")
    installed = {p["name"].lower() for p in json.loads(done.stdout)}
    assert installed & TEST_TOOLS == set()
    assert {"ml-connector", "aiohttp", "botbuilder-core", "pydantic"} <= installed


def test_version_comes_from_the_installed_metadata(image: Image) -> None:
    import tomllib

    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = run(image, image.exe("ml-connector"), "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ml-connector, version {expected}"


def test_manifest_build_works_from_the_installed_package(image: Image, tmp_path: Path) -> None:
    config = tmp_path / "ml-connector.toml"
    config.write_text('[server]\npublic_url = "https://connector.contoso.com"\n'
                      '[bot]\napp_id = "22222222-2222-2222-2222-222222222222"\n')
    env = {k: v for k, v in image.env.items() if k != "ML_CONFIG"}
    done = run(image, image.exe("ml-connector"), "--config", str(config), "manifest", "build", "--out",
               str(tmp_path / "teams-app.zip"), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "teams-app.zip") as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["bots"][0]["botId"] == "22222222-2222-2222-2222-222222222222"
    assert "connector.contoso.com" in manifest["validDomains"]
    assert "README.md" in done.stdout and Path(done.stdout.split("see ")[-1].strip()).is_file()


def test_healthcheck_fails_while_nothing_listens(image: Image, service_env: dict[str, str]) -> None:
    done = healthcheck(image, service_env)
    assert done.returncode == 1 and "unhealthy" in done.stderr, done


def test_serve_starts_and_the_healthcheck_passes_over_tls(image: Image, service_env: dict[str, str],
                                                          served: subprocess.Popen[str]) -> None:
    port = int(next(line.split("=")[1] for line in Path(service_env["ML_CONFIG"]).read_text().splitlines()
                    if line.startswith("port")))
    cert = str(image.path("/etc/ml-connector/tls/tls.pem"))
    deadline = time.monotonic() + 45
    last: object = None
    while time.monotonic() < deadline:
        assert served.poll() is None, f"serve exited: {image.path('/serve.log').read_text()[-3000:]}"
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False  # the certificate names connector.contoso.com; we dial 127.0.0.1
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=5) as r:
                last = (r.status, json.loads(r.read()))
                break
        except OSError as exc:
            last = exc
            time.sleep(0.2)  # polling interval while waiting for the port, bounded by the deadline
    assert isinstance(last, tuple) and last[0] == 200 and last[1]["status"] == "ok", last
    done = healthcheck(image, service_env)
    assert done.returncode == 0, done.stderr
    assert f"https://127.0.0.1:{port}/healthz: ok" in done.stdout
    # the store is the configured file in the data volume, not an image default
    assert image.path("/data/ml-connector.db").exists()
    assert os.stat(service_env["ML_MASTER_KEY_FILE"]).st_mode & 0o777 == 0o400
