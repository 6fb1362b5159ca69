"""The Teams app package: schema-valid manifests (1.22 and 1.10), icon rules, zip layout, the CLI command."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft4Validator

from connector.manifest import (
    DEFAULT_NAME_SHORT,
    MANIFEST_DIR,
    ManifestError,
    PngError,
    build_package,
    check_icons,
    decode_png,
    default_app_id,
    encode_png,
    load_schema,
    manifest_build,
    manifest_group,
    png_header,
    prune_to_schema,
    validate_manifest,
    validate_package,
)

BOT_ID = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
PUBLIC_URL = "https://connector.contoso.com:8443/"
ROOT = Path(__file__).resolve().parents[2]


def build(tmp_path: Path, **kw) -> Path:
    args = dict(bot_id=BOT_ID, public_url=PUBLIC_URL, out=tmp_path / "app.zip", version="1.2.3",
                developer_name="Contoso IT", website_url="https://contoso.com",
                privacy_url="https://contoso.com/privacy", terms_url="https://contoso.com/terms")
    args.update(kw)
    return build_package(**args)


def manifest_of(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.read("manifest.json"))


def solid_png(size: int, rgba: tuple[int, int, int, int]) -> bytes:
    return encode_png(size, size, bytes(rgba) * size * size)


# --- the package --------------------------------------------------------------------------------------------
def test_default_package_validates_against_the_official_1_22_schema(tmp_path: Path) -> None:
    path = build(tmp_path)
    m = manifest_of(path)
    assert sorted(Draft4Validator(load_schema("1.22")).iter_errors(m), key=str) == []
    assert m["manifestVersion"] == "1.22"
    assert m["$schema"].endswith("/teams/v1.22/MicrosoftTeams.schema.json")
    assert m["version"] == "1.2.3"
    assert m["name"]["short"] == DEFAULT_NAME_SHORT and len(m["name"]["short"]) <= 30
    assert len(m["description"]["short"]) <= 80
    bot = m["bots"][0]
    commands = bot.pop("commandLists")
    assert bot == {"botId": BOT_ID, "scopes": ["team", "personal"], "supportsFiles": False,
                   "isNotificationOnly": False}
    # the 1:1 command menu: "my approvals" and "help", words the bot recognises (connector/approvals/my)
    assert [(c["scopes"], [x["title"] for x in c["commands"]]) for c in commands] == [
        (["personal"], ["my approvals", "help"])]
    # the manifest id is the Teams app id (derived, stable), not the bot's Entra app id
    assert m["id"] == default_app_id(BOT_ID) != BOT_ID
    assert default_app_id(BOT_ID.upper()) == m["id"]
    # Teams SSO mints the approver's token for this resource: the standalone bot's Application ID URI
    assert m["webApplicationInfo"] == {"id": BOT_ID, "resource": f"api://botid-{BOT_ID}"}
    assert m["validDomains"] == ["connector.contoso.com"]
    assert m["developer"]["name"] == "Contoso IT"
    assert "permissions" not in m and "devicePermissions" not in m
    assert validate_package(path) == []


def test_zip_holds_exactly_the_three_files_at_its_root_and_is_reproducible(tmp_path: Path) -> None:
    a = build(tmp_path, out=tmp_path / "a.zip")
    b = build(tmp_path, out=tmp_path / "b.zip")
    with zipfile.ZipFile(a) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert zf.read("color.png") == (MANIFEST_DIR / "color.png").read_bytes()
        assert zf.read("outline.png") == (MANIFEST_DIR / "outline.png").read_bytes()
    assert a.read_bytes() == b.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_out_may_be_a_directory(tmp_path: Path) -> None:
    assert build(tmp_path, out=tmp_path) == tmp_path / "teams-app-1.2.3.zip"


def test_configured_teams_app_id_and_name_are_used(tmp_path: Path) -> None:
    m = manifest_of(build(tmp_path, app_id="AAAAAAAA-1111-2222-3333-444444444444", name_short="PO Approvals",
                          name_full="Contoso purchase approvals"))
    assert m["id"] == "AAAAAAAA-1111-2222-3333-444444444444"
    assert m["name"] == {"short": "PO Approvals", "full": "Contoso purchase approvals"}
    assert m["bots"][0]["botId"] == BOT_ID


def test_manifest_1_10_for_gcc_high_validates_against_the_1_10_schema(tmp_path: Path) -> None:
    m = manifest_of(build(tmp_path, manifest_version="1.10"))
    assert m["manifestVersion"] == "1.10"
    assert m["$schema"].endswith("/teams/v1.10/MicrosoftTeams.schema.json")
    assert list(Draft4Validator(load_schema("1.10")).iter_errors(m)) == []
    assert m["bots"][0]["scopes"] == ["team", "personal"]


def test_fields_1_10_does_not_know_are_dropped_with_a_warning(tmp_path: Path) -> None:
    template = json.loads((MANIFEST_DIR / "manifest.template.json").read_text())
    template["defaultBlockUntilAdminAction"] = False  # 1.22 only
    template["bots"][0]["scopes"].append("copilot")  # not a 1.10 scope
    (tmp_path / "t.json").write_text(json.dumps(template))
    warnings: list[str] = []
    m = manifest_of(build(tmp_path, manifest_version="1.10", template=tmp_path / "t.json",
                          on_warning=warnings.append))
    assert "defaultBlockUntilAdminAction" not in m and "copilot" not in m["bots"][0]["scopes"]
    assert any("$.defaultBlockUntilAdminAction" in w for w in warnings)
    assert any("$.bots[0].scopes value 'copilot'" in w for w in warnings)
    # the same template is fine for 1.22
    m22 = manifest_of(build(tmp_path, template=tmp_path / "t.json", out=tmp_path / "b.zip"))
    assert m22["defaultBlockUntilAdminAction"] is False and "copilot" in m22["bots"][0]["scopes"]


def test_prune_keeps_what_the_schema_allows() -> None:
    m = {"manifestVersion": "1.10", "bots": [{"botId": BOT_ID, "scopes": ["team"], "configuration": {}}],
         "authorization": {}}
    pruned, dropped = prune_to_schema(m, load_schema("1.10"))
    assert pruned == {"manifestVersion": "1.10", "bots": [{"botId": BOT_ID, "scopes": ["team"]}]}
    assert dropped == ["$.bots[0].configuration", "$.authorization"]


def test_placeholder_developer_details_warn_but_build(tmp_path: Path) -> None:
    warnings: list[str] = []
    path = build_package(bot_id=BOT_ID, public_url=PUBLIC_URL, out=tmp_path / "x.zip", on_warning=warnings.append)
    assert validate_package(path) == []
    assert any("[bot] privacy_url" in w and "[bot] developer_name" in w for w in warnings)


def test_http_or_loopback_public_url_warns(tmp_path: Path) -> None:
    warnings: list[str] = []
    build(tmp_path, public_url="http://127.0.0.1:8080", on_warning=warnings.append)
    assert any("not https" in w for w in warnings) and any("'127.0.0.1'" in w for w in warnings)


# --- problems are reported with their JSON path ---------------------------------------------------------------
@pytest.mark.parametrize("kw,expected", [
    ({"name_short": "F&O Approvals for Contoso Corp.!"},
     "$.name.short: 'F&O Approvals for Contoso Corp.!' is too long"),
    ({"accent_color": "blue"}, "$.accentColor: 'blue' does not match"),
    ({"accent_color": "#12345"}, "$.accentColor: '#12345' does not match"),
    ({"version": "1.0"}, "$.version: '1.0' is not a version like 1.0.0"),
    ({"bot_id": "not-a-guid"}, "$.bots[0].botId: 'not-a-guid' does not match"),
    ({"website_url": "contoso.com"}, "$.developer.websiteUrl: 'contoso.com' does not match"),
    ({"public_url": "connector.contoso.com"}, "public_url: 'connector.contoso.com' is not an http(s) URL"),
])
def test_a_broken_field_is_reported_with_its_path(tmp_path: Path, kw: dict, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        build(tmp_path, **kw)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems
    assert expected.split(":")[0] in str(info.value)
    assert not (tmp_path / "app.zip").exists()


def test_missing_bot_id_in_the_template_is_reported(tmp_path: Path) -> None:
    template = json.loads((MANIFEST_DIR / "manifest.template.json").read_text())
    del template["bots"][0]["botId"]
    (tmp_path / "t.json").write_text(json.dumps(template))
    with pytest.raises(ManifestError) as info:
        build(tmp_path, template=tmp_path / "t.json")
    assert "$.bots[0]: 'botId' is a required property" in info.value.problems


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        build(tmp_path, name_short="x" * 31, accent_color="red", version="one",
              color_icon=_write(tmp_path / "c.png", solid_png(100, (0, 0, 255, 255))))
    text = str(info.value)
    for path in ("$.name.short", "$.accentColor", "$.version", "color.png: is 100x100"):
        assert path in text


def test_manifest_version_const_is_checked_although_draft_04_ignores_const() -> None:
    m = manifest_of_dict()
    m["manifestVersion"] = "1.21"
    assert list(Draft4Validator(load_schema("1.22")).iter_errors(m)) == []  # the schema alone lets it through
    assert "$.manifestVersion: must be '1.22', got '1.21'" in validate_manifest(m, "1.22")


def test_unknown_manifest_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest_version: '1.5' is not supported"):
        build(tmp_path, manifest_version="1.5")


def manifest_of_dict() -> dict:
    from connector.manifest import render_manifest

    m, problems, _ = render_manifest(bot_id=BOT_ID, public_url=PUBLIC_URL)
    assert problems == []
    return m


# --- icons -----------------------------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_committed_icons_have_the_right_sizes_and_the_outline_is_white_on_transparent() -> None:
    color = (MANIFEST_DIR / "color.png").read_bytes()
    outline = (MANIFEST_DIR / "outline.png").read_bytes()
    assert png_header(color)[:2] == (192, 192)
    assert png_header(outline)[:2] == (32, 32)
    assert check_icons(color, outline) == []
    img = decode_png(outline)
    assert {img.rgba[i:i + 3] for i in range(0, len(img.rgba), 4) if img.rgba[i + 3]} == {b"\xff\xff\xff"}
    assert decode_png(color).pixel(96, 4)[3] == 255  # the coloured square is opaque


@pytest.mark.parametrize("which,png,expected", [
    ("color_icon", solid_png(96, (15, 108, 189, 255)), "color.png: is 96x96 pixels; Teams requires 192x192"),
    ("outline_icon", solid_png(64, (255, 255, 255, 0)), "outline.png: is 64x64 pixels; Teams requires 32x32"),
    ("outline_icon", solid_png(32, (255, 255, 255, 255)), "outline.png: has no transparent pixels"),
    ("outline_icon", solid_png(32, (255, 255, 255, 0)), "outline.png: is fully transparent"),
    ("color_icon", b"GIF89a not a png", "color.png: not a PNG file"),
])
def test_icon_problems(tmp_path: Path, which: str, png: bytes, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        build(tmp_path, **{which: _write(tmp_path / "icon.png", png)})
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_outline_with_coloured_pixels_is_refused() -> None:
    px = bytearray(bytes((255, 255, 255, 0)) * 32 * 32)
    px[(5 * 32 + 6) * 4:(5 * 32 + 6) * 4 + 4] = bytes((255, 255, 255, 255))  # white: fine
    px[(10 * 32 + 3) * 4:(10 * 32 + 3) * 4 + 4] = bytes((0, 0, 0, 255))  # black on transparent: not fine
    problems = check_icons((MANIFEST_DIR / "color.png").read_bytes(), encode_png(32, 32, bytes(px)))
    assert problems == ["outline.png: 1 visible pixel(s) are not white (first at x=3, y=10: rgba(0, 0, 0, 255)); "
                        "the outline icon may use only white and transparency"]


def _filtered_png(width: int, height: int, rgba: bytes, filters: list[int]) -> bytes:
    """Encode with the given filter type per row (as other encoders do), to exercise the decoder."""
    bpp, stride = 4, width * 4
    raw = bytearray()
    prev = bytes(stride)
    for y in range(height):
        line = rgba[y * stride:(y + 1) * stride]
        f = filters[y % len(filters)]
        out = bytearray()
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) >> 1
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out.append((line[i] - pred) & 0xFF)
        raw += bytes([f]) + out
        prev = line
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


def test_png_decoder_handles_every_filter_type() -> None:
    w, h = 7, 10
    rgba = bytes((x * 37 + y * 11 + c * 53) % 256 for y in range(h) for x in range(w) for c in range(4))
    data = _filtered_png(w, h, rgba, [0, 1, 2, 3, 4])
    img = decode_png(data)
    assert (img.width, img.height, img.rgba) == (w, h, rgba)


def test_png_decoder_palette_and_grey_alpha() -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    sig = b"\x89PNG\r\n\x1a\n"
    # 2x1 palette image: index 0 = transparent black, index 1 = opaque white
    pal = (sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 3, 0, 0, 0)) + chunk(b"PLTE", b"\0\0\0\xff\xff\xff")
           + chunk(b"tRNS", b"\x00") + chunk(b"IDAT", zlib.compress(b"\x00\x00\x01")) + chunk(b"IEND", b""))
    assert decode_png(pal).rgba == bytes((0, 0, 0, 0, 255, 255, 255, 255))
    ga = (sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 4, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(b"\x00\xff\x80\x10\x00")) + chunk(b"IEND", b""))
    assert decode_png(ga).rgba == bytes((255, 255, 255, 128, 16, 16, 16, 0))


def test_png_decoder_refuses_corrupt_and_unsupported_files() -> None:
    good = solid_png(4, (255, 255, 255, 0))
    bad_crc = bytearray(good)
    bad_crc[30] ^= 0xFF  # inside the IHDR body
    with pytest.raises(PngError, match="CRC"):
        decode_png(bytes(bad_crc))
    with pytest.raises(PngError, match="no IEND"):
        decode_png(good[:-12])
    sixteen = bytearray(good)
    sixteen[24] = 16  # bit depth
    sixteen[29:33] = struct.pack(">I", zlib.crc32(bytes(sixteen[12:29])))
    with pytest.raises(PngError, match="bit depth 16"):
        decode_png(bytes(sixteen))


# --- validate_package ------------------------------------------------------------------------------------------
def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_validate_package_finds_layout_and_icon_problems(tmp_path: Path) -> None:
    good = build(tmp_path)
    with zipfile.ZipFile(good) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    nested = _zip(tmp_path / "nested.zip", {f"app/{n}": d for n, d in files.items()})
    assert validate_package(nested) == ["manifest.json: not at the root of the package (found app/manifest.json: "
                                        "zip the files themselves, not their folder)"]
    no_outline = _zip(tmp_path / "no-outline.zip", {n: d for n, d in files.items() if n != "outline.png"})
    assert validate_package(no_outline) == ["$.icons.outline: 'outline.png' is not in the package"]
    opaque = _zip(tmp_path / "opaque.zip", {**files, "outline.png": solid_png(32, (255, 255, 255, 255))})
    assert validate_package(opaque) == ["outline.png: has no transparent pixels; the background must be transparent"]
    m = json.loads(files["manifest.json"])
    m["name"]["short"] = "x" * 40
    broken = _zip(tmp_path / "broken.zip", {**files, "manifest.json": json.dumps(m).encode()})
    assert validate_package(broken) == [f"$.name.short: '{'x' * 40}' is too long"]
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert "not a readable zip file" in validate_package(tmp_path / "junk.zip")[0]


# --- CLI -------------------------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ML_"):
            monkeypatch.delenv(name)


def _config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ml-connector.toml"
    p.write_text(text)
    return p


CONFIG = f"""
[server]
public_url = "https://connector.contoso.com"

[bot]
app_id = "{BOT_ID}"
developer_name = "Contoso IT"
website_url = "https://contoso.com/"
privacy_url = "https://contoso.com/privacy"
terms_url = "https://contoso.com/terms"
"""


def test_cli_builds_the_package_from_the_configuration(tmp_path: Path, clean_env: None) -> None:
    cfg = _config(tmp_path, CONFIG)
    out = tmp_path / "pkg" / "teams.zip"
    result = CliRunner().invoke(manifest_group, ["build", "--out", str(out), "--app-version", "2.0.1",
                                                 "--name", "Contoso Approvals"], obj={"config": str(cfg)})
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    assert "warning" not in result.output
    m = manifest_of(out)
    assert (m["version"], m["name"]["short"], m["manifestVersion"]) == ("2.0.1", "Contoso Approvals", "1.22")
    assert m["id"] == default_app_id(BOT_ID) and m["id"] in result.stdout
    assert validate_package(out) == []


def test_cli_reads_teams_app_id_and_defaults_to_1_10_in_gcc_high(tmp_path: Path, clean_env: None) -> None:
    cfg = _config(tmp_path, CONFIG.replace("[bot]", '[cloud]\nname = "gcch"\n\n[bot]\nteams_app_id = '
                                                    '"12345678-1234-1234-1234-123456789abc"'))
    out = tmp_path / "teams.zip"
    result = CliRunner().invoke(manifest_build, ["--out", str(out)], obj={"config": str(cfg)})
    assert result.exit_code == 0, result.output
    m = manifest_of(out)
    assert m["manifestVersion"] == "1.10" and m["id"] == "12345678-1234-1234-1234-123456789abc"
    result = CliRunner().invoke(manifest_build, ["--out", str(out), "--manifest-version", "1.22"],
                                obj={"config": str(cfg)})
    assert result.exit_code == 0 and "accepts manifests up to v1.10" in result.output


def test_cli_warns_about_placeholder_developer_details(tmp_path: Path, clean_env: None) -> None:
    cfg = _config(tmp_path, f'[server]\npublic_url = "https://c.contoso.com"\n[bot]\napp_id = "{BOT_ID}"\n')
    result = CliRunner().invoke(manifest_build, ["--out", str(tmp_path / "t.zip")], obj={"config": str(cfg)})
    assert result.exit_code == 0, result.output
    assert "warning: placeholder developer details" in result.output and "[bot] terms_url" in result.output


def test_cli_without_app_id_or_public_url_says_which_keys_to_set(tmp_path: Path, clean_env: None) -> None:
    cfg = _config(tmp_path, "[server]\nport = 8080\n")
    result = CliRunner().invoke(manifest_build, ["--out", str(tmp_path / "t.zip")], obj={"config": str(cfg)})
    assert result.exit_code == 2
    assert "set app_id in the [bot] table" in result.output
    assert "set public_url in the [server] table" in result.output
    assert not (tmp_path / "t.zip").exists()


def test_cli_reports_manifest_problems_and_config_errors(tmp_path: Path, clean_env: None) -> None:
    cfg = _config(tmp_path, CONFIG)
    result = CliRunner().invoke(manifest_build, ["--out", str(tmp_path / "t.zip"), "--name", "y" * 31],
                                obj={"config": str(cfg)})
    assert result.exit_code == 2 and "$.name.short" in result.output
    bad = _config(tmp_path, "[server]\nnonsense = 1\n")
    result = CliRunner().invoke(manifest_build, ["--out", str(tmp_path / "t.zip")], obj={"config": str(bad)})
    assert result.exit_code == 2 and "server.nonsense" in result.output


# --- Microsoft's own validator (npm @microsoft/app-manifest), when installed ----------------------------------
NODE_CHECK = r"""
const path = require("path"), fs = require("fs");
const { AppManifestUtils } = require("@microsoft/app-manifest");
(async () => {
  const manifest = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const dir = path.dirname(require.resolve("@microsoft/app-manifest/package.json"));
  const schema = JSON.parse(fs.readFileSync(path.join(dir, "build/json-schemas/teams/v" + manifest.manifestVersion
                                                      + "/MicrosoftTeams.schema.json"), "utf8"));
  console.log(JSON.stringify(await AppManifestUtils.validateAgainstSchema(manifest, schema)));
})().catch(e => { console.error(e); process.exit(1); });
"""


def _node_modules() -> Path | None:
    for candidate in (os.environ.get("ML_TEST_NODE_MODULES"), str(ROOT / ".oracles" / "node_modules")):
        if candidate and (Path(candidate) / "@microsoft" / "app-manifest").is_dir():
            return Path(candidate)
    return None


@pytest.mark.node
@pytest.mark.parametrize("version", ["1.22", "1.10"])
def test_microsofts_validator_accepts_our_manifest_and_flags_a_broken_one(tmp_path: Path, version: str) -> None:
    modules = _node_modules()
    if modules is None or shutil.which("node") is None:
        pytest.skip("npm @microsoft/app-manifest not installed (.oracles/node_modules)")
    (tmp_path / "check.js").write_text(NODE_CHECK)
    m = manifest_of(build(tmp_path, manifest_version=version))

    def failures(manifest: dict) -> list[str]:
        (tmp_path / "m.json").write_text(json.dumps(manifest))
        run = subprocess.run(["node", str(tmp_path / "check.js"), str(tmp_path / "m.json")], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "NODE_PATH": str(modules)})
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout) or []

    assert failures(m) == []
    m["name"]["short"] = "x" * 31
    del m["bots"][0]["botId"]
    found = failures(m)
    assert any(f.startswith("/name/short") for f in found) and any("botId" in f for f in found)


def test_manifest_promises_only_what_the_app_does(tmp_path: Path) -> None:
    """No group chats are served (nothing routes to them) and the card cannot delegate: the store listing must
    not say otherwise."""
    m = manifest_of(build(tmp_path))
    assert "groupChat" not in m["bots"][0]["scopes"]
    text = (m["description"]["short"] + " " + m["description"]["full"]).lower()
    assert "delegate" not in text


def test_catalog_id_for_per_user_installs_defaults_to_the_manifest_id() -> None:
    """An admin who uploaded the package `manifest build` made sets nothing: the approvals' catalog look-up uses
    the same derived id the manifest carries; a configured id wins."""
    from connector.app import catalog_app_id
    from connector.teams_config import TeamsSettings

    derived = TeamsSettings(app_id=BOT_ID)
    assert catalog_app_id(derived) == default_app_id(BOT_ID)
    assert catalog_app_id(TeamsSettings(app_id=BOT_ID, teams_app_id="11111111-2222-3333-4444-555555555555")) \
        == "11111111-2222-3333-4444-555555555555"
    assert catalog_app_id(TeamsSettings(app_id=BOT_ID, teams_app_external_id="x-1")) == "x-1"


@pytest.mark.parametrize("version", ["1.22", "1.10"])
def test_command_menu_validates_in_both_schemas_and_matches_the_bots_words(tmp_path: Path, version: str) -> None:
    from connector.approvals.config import CommandWords
    from connector.approvals.my.commands import Command, parse

    m = manifest_of(build(tmp_path, manifest_version=version))
    assert validate_manifest(m, version) == []
    [menu] = m["bots"][0]["commandLists"]
    for command in menu["commands"]:
        assert len(command["title"]) <= 32 and len(command["description"]) <= 128  # 1.10's limits
    said = {c["title"]: parse(c["title"], CommandWords()).command for c in menu["commands"]}
    assert said == {"my approvals": Command.MY_LIST, "help": Command.HELP}


def test_the_bot_asks_for_resource_specific_consent_to_read_channel_replies(tmp_path: Path) -> None:
    """Typed approval replies without an @mention (teams.md §4.6): ChannelMessage.Read.Group, as each schema has it."""
    m = manifest_of(build(tmp_path))
    assert m["authorization"]["permissions"]["resourceSpecific"] == [
        {"name": "ChannelMessage.Read.Group", "type": "Application"}]
    assert "replies under its own approval cards" in m["description"]["full"]  # the store policy: say why it reads
    warnings: list[str] = []
    old = manifest_of(build(tmp_path, manifest_version="1.10", out=tmp_path / "old.zip", on_warning=warnings.append))
    assert old["webApplicationInfo"]["applicationPermissions"] == ["ChannelMessage.Read.Group"]
    assert "authorization" not in old and not any("authorization" in w for w in warnings)
