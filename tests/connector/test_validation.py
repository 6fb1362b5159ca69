"""`config check` and `serve` (create_app) give the same verdict: one validation, every problem named by its key."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.app import create_app
from connector.cli import main
from connector.config import ConfigError, load_settings
from connector.validation import tenant_problem, url_problem, validate_settings
from sandbox.tls import make_ca

README = Path(__file__).resolve().parents[2] / "README.md"

BASE = """
[server]
public_url = "https://connector.contoso.com"
[store]
url = "sqlite:///{db}"
[identity]
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_id = "11111111-2222-3333-4444-555555555555"
[[environments]]
name = "contoso-prod"
base_url = "https://contoso.operations.dynamics.com"
"""

BOT = """
[bot]
app_id = "22222222-2222-2222-2222-222222222222"
"""

ROUTE = """
[[routes]]
name = "po"
events = ["PurchaseOrderConfirmedBusinessEvent"]
team = "Procurement"
"""

# Every invalid configuration the suite knows: (id, TOML added to BASE, environment, a key the verdict must name).
# From tests/connector/test_config.py, test_routes.py, the approvals section, and the "ready for a real tenant" issue.
INVALID = [
    ("cloud-name", '[cloud]\nname = "mars"\n', {}, "cloud.name"),
    ("unknown-pipeline-key", "[pipeline]\nworkerz = 3\n", {}, "pipeline.workerz: unknown key"),
    ("port-not-a-number", "", {"ML_SERVER__PORT": "not-a-port"}, "server.port"),
    ("tls-half-pair", "", {"ML_SERVER__TLS_CERT": "{tmp}/c.pem"}, "tls_cert and tls_key"),
    ("custom-cloud-incomplete", "", {"ML_CLOUD__NAME": "custom"}, "custom"),
    ("duplicate-environments", "",
     {"ML_ENVIRONMENTS": '[{"name": "a", "base_url": "https://a.example"}, {"name": "A", "base_url": "https://b.example"}]'},
     "duplicate"),
    ("environments-not-json", "", {"ML_ENVIRONMENTS": "[oops"}, "not valid JSON"),
    ("concurrency-lots", "", {"ML_PIPELINE__CONCURRENCY": "lots"}, "pipeline.concurrency"),
    ("route-no-events", BOT + '[[routes]]\nname = "x"\nevents = []\nteam = "T"\n', {}, "routes[0].events"),
    ("route-sideways", BOT + ROUTE + 'threading = "sideways"\n', {}, "routes[0].threading"),
    ("route-op", BOT + ROUTE + 'when = [{ field = "event.A", op = "~=", value = 1 }]\n', {}, "routes[0].when[0].op"),
    ("route-no-team", BOT + '[[routes]]\nname = "x"\nevents = ["E"]\n', {}, "routes[0].team"),
    ("route-empty-team", BOT + '[[routes]]\nname = "x"\nevents = ["E"]\nteam = " "\n', {}, "routes[0].team"),
    ("route-mention-ceo", BOT + ROUTE + 'mention = ["ceo"]\n', {}, "routes[0].mention[0]"),
    ("route-unknown-key", BOT + ROUTE + 'chanel = "Approvals"\n', {}, "routes[0].chanel: unknown key"),
    ("route-unknown-template", BOT + ROUTE + 'template = "no-such-card"\n', {}, "routes[0].template"),
    ("route-unknown-environment", BOT + ROUTE + 'environments = ["contoso-test"]\n', {}, "routes[0].environments"),
    ("route-duplicate-name", BOT + ROUTE + ROUTE, {}, "duplicate name 'po'"),
    ("approvals-unknown-key", "[approvals]\nreconcile_evry = 5\n", {}, "approvals.reconcile_evry: unknown key"),
    ("approvals-negative-reminders", "[approvals.reminders]\nmax_count = -1\n", {}, "approvals.reminders.max_count"),
    ("bot-app-id-not-guid", '[bot]\napp_id = "my-bot"\n', {}, "bot.app_id"),
    ("bot-unknown-key", BOT + 'app_idd = "x"\n', {}, "bot.app_idd: unknown key"),
    ("bot-single-tenant-without-tenant", BOT, {"ML_IDENTITY__TENANT_ID": ""}, "bot.tenant_id"),
    ("bot-tenant-alias", BOT + 'tenant_id = "common"\n', {}, "bot.tenant_id"),
    ("bot-certificate-without-thumbprint", BOT + 'credential_type = "certificate"\n', {}, "bot.certificate_thumbprint"),
    ("tenant-not-guid", "", {"ML_IDENTITY__TENANT_ID": "contoso"}, "identity.tenant_id"),
    ("tenant-common", "", {"ML_IDENTITY__TENANT_ID": "common"}, "identity.tenant_id"),
    ("client-id-not-guid", "", {"ML_IDENTITY__CLIENT_ID": "my-app"}, "identity.client_id"),
    ("environment-without-client", "", {"ML_IDENTITY__CLIENT_ID": ""}, "environments[0].client_id"),
    ("thumbprint-not-sha1", "", {"ML_IDENTITY__CERTIFICATE_THUMBPRINT": "abc"}, "identity.certificate_thumbprint"),
    ("metadata-base-url", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "http://169.254.169.254"}]'},
     "environments[0].base_url"),
    ("metadata-base-url-https", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "https://169.254.169.254"}]'},
     "environments[0].base_url"),
    ("aws-ipv6-metadata", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "https://[fd00:ec2::254]"}]'},
     "environments[0].base_url"),
    ("http-base-url", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "http://contoso.operations.dynamics.com"}]'},
     "environments[0].base_url"),
    ("base-url-with-data", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "https://contoso.operations.dynamics.com/data"}]'},
     "environments[0].base_url"),
    ("base-url-with-query", "", {"ML_ENVIRONMENTS": '[{"name": "x", "base_url": "https://contoso.operations.dynamics.com?cmp=usmf"}]'},
     "environments[0].base_url"),
    ("public-url-http", "", {"ML_SERVER__PUBLIC_URL": "http://connector.contoso.com"}, "server.public_url"),
    ("cloud-url-http", "", {"ML_CLOUD__GRAPH_URL": "http://graph.microsoft.com"}, "cloud.graph_url"),
    ("enrichment-readme-typo",
     '[[enrichment]]\nname = "vendor-invoice-posted"\n[[enrichment.fetches]]\nname = "invoice"\n'
     'entity = "X"\nkey = { InvoiceNumber = "{event.InvoiceId}" }\n', {}, "vendor_invoice_posted"),
    ("enrichment-twice",
     '[[enrichment]]\nname = "workflow_work_item"\n[[enrichment]]\nname = "workflow_work_item"\n', {},
     "enrichment[1].name"),
    ("template-dir-gone", "", {"ML_CARDS__TEMPLATE_DIR": "{tmp}/gone"}, "cards.template_dir"),
    ("sqlite-folder-missing", "", {"ML_STORE__URL": "sqlite:///{tmp}/missing/ml.db"}, "store.url"),
    ("tls-key-mismatch", "", {"ML_SERVER__TLS_CERT": "{ca1}/server.pem", "ML_SERVER__TLS_KEY": "{ca2}/server-key.pem"},
     "server.tls_key"),
    ("typo-inside-a-section", "", {"ML_SERVER__PROT": "1"}, "server.prot: unknown key"),
]


@pytest.fixture
def world(tmp_path: Path):
    """Writes a configuration (BASE + extra) and fills {tmp}, {ca1}, {ca2} in environment values."""
    ca1, ca2 = make_ca(tmp_path / "ca1"), make_ca(tmp_path / "ca2")
    subs = {"tmp": str(tmp_path), "ca1": str(ca1.server_cert_path.parent), "ca2": str(ca2.server_key_path.parent)}
    cfg = tmp_path / "ml-connector.toml"

    def make(extra: str, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
        cfg.write_text(BASE.format(db=tmp_path / "ml.db") + extra)
        def fill(value: str) -> str:
            for name, path in subs.items():
                value = value.replace("{" + name + "}", path)
            return value

        return cfg, {k: fill(v) for k, v in env.items()}

    make.paths = (ca1, ca2)  # type: ignore[attr-defined]
    return make


def serve_verdict(cfg: Path, env: dict[str, str]) -> ConfigError | None:
    """What `serve` decides before opening anything: load_settings, then create_app."""
    try:
        create_app(load_settings(cfg, environ=env))
    except ConfigError as exc:
        return exc
    return None


@pytest.mark.parametrize("extra,env,key", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_config_check_and_serve_reject_the_same(world, extra: str, env: dict[str, str], key: str) -> None:
    cfg, env = world(extra, env)
    refused = serve_verdict(cfg, env)
    assert refused is not None, "create_app accepted it"
    assert key in str(refused)
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "check"], env=env)
    assert result.exit_code == 2, result.output
    assert "configuration ok" not in result.output
    for problem in refused.problems:  # the same verdict, word for word
        assert problem in result.output


def test_the_issue_configuration_lists_every_problem_at_once(world) -> None:
    extra = ('[bot]\napp_id = "my-bot"\n[[routes]]\nname = "r"\nevents = ["X"]\nmention = ["ceo"]\n'
             'threading = "sideways"\nwhen = [{ field = "event.A", op = "~=", value = 1 }]\n')
    cfg, env = world(extra,
                     {"ML_ENVIRONMENTS": '[{"name": "contoso-prod", "base_url": "http://169.254.169.254"}]'})
    refused = serve_verdict(cfg, env)
    assert refused is not None
    keys = [p.split(":")[0] for p in refused.problems]
    assert keys == ["environments[0].base_url", "bot.app_id", "routes[0].when[0].op", "routes[0].team",
                    "routes[0].mention[0]", "routes[0].threading"]


def test_a_good_configuration_passes_both_with_its_warnings(world, tmp_path: Path) -> None:
    cfg, env = world(BOT + ROUTE + '[[enrichment]]\nname = "my-plan"\nevents = ["SomethingElseBusinessEvent"]\n', {})
    assert serve_verdict(cfg, env) is None
    result = CliRunner().invoke(main, ["--config", str(cfg), "config", "check"], env={"ML_DEBUG": "1", **env})
    assert result.exit_code == 0, result.output
    assert "configuration ok: 1 environment(s)" in result.output
    # a new plan no route posts and no built-in plan covers is read for nothing: said, not refused
    assert ("warning: enrichment[0]: plan 'my-plan' is not a built-in plan and no route posts its events"
            in result.output)
    assert "note: ignored environment variables (no such configuration section): ML_DEBUG" in result.output


def test_public_url_missing_is_a_warning(world) -> None:
    cfg, env = world("", {})
    cfg.write_text(cfg.read_text().replace('public_url = "https://connector.contoso.com"', ""))
    validated = validate_settings(load_settings(cfg, environ=env))
    assert any(w.startswith("server.public_url is not set") for w in validated.warnings)


def test_tls_pair_that_matches_is_accepted(world) -> None:
    ca1, _ = world.paths
    cfg, env = world("", {"ML_SERVER__TLS_CERT": str(ca1.server_cert_path),
                          "ML_SERVER__TLS_KEY": str(ca1.server_key_path)})
    assert serve_verdict(cfg, env) is None


@pytest.mark.parametrize("url,ok", [
    ("https://contoso.operations.dynamics.com", True),
    ("https://127.0.0.1:8443", True),
    ("http://127.0.0.1:8443", True),
    ("http://localhost:8080", True),
    ("http://[::1]:8080", True),
    ("http://contoso.example", False),
    ("https://169.254.169.254", False),
    ("https://[::ffff:169.254.169.254]", False),
    ("https://[fe80::1]", False),
    ("https://0.0.0.0", False),
    ("https://user:pw@contoso.example", False),
    ("https://contoso.example:99999", False),
    ("ftp://contoso.example", False),
])
def test_url_rule(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) == ok


@pytest.mark.parametrize("tenant,ok", [
    ("72f988bf-86f1-41af-91ab-2d7cd011db47", True),
    ("contoso.onmicrosoft.com", True),
    ("contoso.com", True),
    ("contoso", False),
    ("organizations", False),
    ("72f988bf86f141af91ab2d7cd011db47", False),
])
def test_tenant_is_a_guid_or_a_domain(tenant: str, ok: bool) -> None:
    assert (tenant_problem(tenant) is None) == ok


def readme_toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_toml_examples() -> None:
    assert len(readme_toml_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(readme_toml_blocks())))
def test_every_readme_toml_example_loads_and_validates(index: int, tmp_path: Path) -> None:
    text = readme_toml_blocks()[index]
    ca = make_ca(tmp_path / "ca")
    # The examples name production paths; put real files there so the example itself is what is checked.
    text = text.replace("/etc/ml-connector/tls.pem", str(ca.server_cert_path))
    text = text.replace("/etc/ml-connector/tls-key.pem", str(ca.server_key_path))
    text = text.replace("sqlite:///var/lib/ml-connector/ml.db", f"sqlite:///{tmp_path / 'ml.db'}")
    cfg = tmp_path / "example.toml"
    cfg.write_text(text)
    settings = load_settings(cfg, environ={})
    validated = validate_settings(settings)
    assert not [w for w in validated.warnings if w.startswith("enrichment")], validated.warnings
