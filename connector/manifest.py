"""The Teams app package: manifest.json (from teams_app/manifest.template.json) + color.png + outline.png, zipped.

    ml-connector manifest build --out teams-app.zip [--app-version 1.2.0] [--manifest-version 1.22|1.10]

`build_package()` fills the template, validates it against Microsoft's published manifest schema (draft-04, copied
into teams_app/schema/) plus the rules the schema cannot express (manifestVersion, semver, GUID bot id, icon pixel
sizes, an outline icon that is white on transparent), and writes a reproducible zip with the three files at its
root. Every problem is collected and raised together in one `ManifestError`, each as "JSON path: message".
`validate_package()` runs the same checks on any package zip.

Ids: the manifest `id` is the *Teams app* id (stable across versions, so uploads replace the earlier version; by
default derived from the bot id with uuid5); `bots[0].botId` and `webApplicationInfo.id` are the bot's *Entra app*
(client) id. `webApplicationInfo` is what lets the connector install the app for a user through Graph
(`TeamsAppInstallation.ReadWriteSelfForUser.All`) before it opens a 1:1 chat, and what Teams single sign-on mints
the approver's token for (`[approvals] act_as = "approver"`): its `resource` must be the Application ID URI exposed
on that Entra app, `api://botid-<bot id>` for a standalone bot (sso-obo.md §3), or `[approvals] sso_app_id_uri`.

GCC High and DoD accept manifests up to v1.10: `manifest_version="1.10"` rewrites the version fields and drops
whatever the 1.10 schema does not know (each dropped field is reported as a warning).

PNG decoding here is deliberately small (zlib + struct): 8-bit, non-interlaced, colour types 0/2/3/4/6 and every
filter type (0-4), which is what icon editors write.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import os
import re
import struct
import sys
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn
from urllib.parse import urlsplit

import click

log = logging.getLogger(__name__)

# Package data (pyproject.toml [tool.setuptools.package-data]), so an installed wheel builds the package too.
MANIFEST_DIR = Path(__file__).resolve().parent / "teams_app"
TEMPLATE = MANIFEST_DIR / "manifest.template.json"
SCHEMA_DIR = MANIFEST_DIR / "schema"
SCHEMA_FILES = {"1.22": "teams-manifest-1.22.schema.json", "1.10": "teams-manifest-1.10.schema.json"}
MANIFEST_VERSIONS = tuple(SCHEMA_FILES)  # newest first
GOV_CLOUDS = {"gcch": "GCC High", "dod": "DoD"}  # clouds whose Teams accepts at most manifest v1.10

DEFAULT_NAME_SHORT = "F&O Approvals"
DEFAULT_NAME_FULL = "Dynamics 365 Finance & Operations Approvals"
ACCENT_COLOR = "#0F6CBD"
COLOR_SIZE = 192
OUTLINE_SIZE = 32

# Placeholder developer details: fine for a test tenant, but a real package should name its publisher.
PLACEHOLDER_DEVELOPER = {
    "developer_name": "ml-connector",
    "website_url": "https://www.example.com/",
    "privacy_url": "https://www.example.com/privacy",
    "terms_url": "https://www.example.com/terms",
}
# The configuration keys ([bot] table) that override them, and the manifest field each fills.
DEVELOPER_FIELDS = {
    "developer_name": "developer.name",
    "website_url": "developer.websiteUrl",
    "privacy_url": "developer.privacyUrl",
    "terms_url": "developer.termsOfUseUrl",
}

# uuid5 namespace for the default Teams app id: the same bot id always gives the same app id.
APP_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ml-connector:teams-app")

PACKAGE_FILES = ("manifest.json", "color.png", "outline.png")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same inputs give a byte-identical zip

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_PLACEHOLDER = re.compile(r"\$\{\{([A-Z0-9_]+)\}\}")


class ManifestError(Exception):
    """The package is not valid; `problems` lists each one as "path: message"."""

    def __init__(self, problems: Iterable[str], heading: str = "the Teams app package is not valid") -> None:
        self.problems = list(problems)
        super().__init__(heading + ":\n" + "\n".join(f"  {p}" for p in self.problems))


# --- PNG ----------------------------------------------------------------------------------------------------
class PngError(ValueError):
    """Not a PNG this module can read."""


@dataclass(frozen=True)
class PngImage:
    width: int
    height: int
    rgba: bytes  # width*height*4, row by row

    def pixel(self, x: int, y: int) -> tuple[int, int, int, int]:
        i = (y * self.width + x) * 4
        return self.rgba[i], self.rgba[i + 1], self.rgba[i + 2], self.rgba[i + 3]


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rgba: bytes) -> bytes:
    """An 8-bit RGBA PNG (colour type 6, filter 0 on every row)."""
    if len(rgba) != width * height * 4:
        raise ValueError(f"expected {width * height * 4} bytes of RGBA, got {len(rgba)}")
    stride = width * 4
    raw = b"".join(b"\x00" + rgba[y * stride:(y + 1) * stride] for y in range(height))
    return (_PNG_SIG + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


def _chunks(data: bytes) -> Iterable[tuple[bytes, bytes]]:
    if not data.startswith(_PNG_SIG):
        raise PngError("not a PNG file (bad signature)")
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise PngError(f"truncated {kind.decode('latin-1')} chunk")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise PngError(f"corrupt {kind.decode('latin-1')} chunk (CRC mismatch)")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise PngError("truncated PNG (no IEND chunk)")


def png_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk."""
    for kind, body in _chunks(data):
        if kind != b"IHDR" or len(body) != 13:
            raise PngError("the first chunk is not a valid IHDR")
        w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
        return w, h, depth, ctype, interlace
    raise PngError("no IHDR chunk")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytearray:
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise PngError("image data is shorter than the image")
    out = bytearray(height * stride)
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += stride + 1
        if ftype == 0:
            pass
        elif ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        else:
            raise PngError(f"unknown filter type {ftype} on row {y}")
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return out


def decode_png(data: bytes) -> PngImage:
    """Decode an 8-bit, non-interlaced PNG of any colour type to RGBA."""
    header = None
    idat = bytearray()
    palette = b""
    trns = b""
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat += body
    if header is None:
        raise PngError("no IHDR chunk")
    width, height, depth, ctype, _comp, _filt, interlace = header
    if ctype not in _CHANNELS:
        raise PngError(f"invalid colour type {ctype}")
    if depth != 8:
        raise PngError(f"bit depth {depth} is not supported here (save the icon as 8-bit RGBA)")
    if interlace:
        raise PngError("interlaced PNGs are not supported here (save the icon without interlacing)")
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise PngError(f"image data does not decompress: {exc}") from None
    ch = _CHANNELS[ctype]
    px = _unfilter(raw, width, height, ch)
    n = width * height
    if ctype == 6:
        return PngImage(width, height, bytes(px))
    rgba = bytearray(n * 4)
    if ctype == 4:
        rgba[0::4] = rgba[1::4] = rgba[2::4] = px[0::2]
        rgba[3::4] = px[1::2]
    elif ctype == 0:
        rgba[0::4] = rgba[1::4] = rgba[2::4] = px
        key = struct.unpack(">H", trns[:2])[0] if len(trns) >= 2 else None
        rgba[3::4] = bytes(0 if v == key else 255 for v in px)
    elif ctype == 2:
        rgba[0::4], rgba[1::4], rgba[2::4] = px[0::3], px[1::3], px[2::3]
        key = struct.unpack(">HHH", trns[:6]) if len(trns) >= 6 else None
        rgba[3::4] = bytes(0 if (px[i], px[i + 1], px[i + 2]) == key else 255 for i in range(0, len(px), 3))
    else:  # palette
        if not palette:
            raise PngError("palette image without a PLTE chunk")
        for i, idx in enumerate(px):
            if idx * 3 + 2 >= len(palette):
                raise PngError(f"palette index {idx} out of range")
            rgba[i * 4:i * 4 + 3] = palette[idx * 3:idx * 3 + 3]
            rgba[i * 4 + 3] = trns[idx] if idx < len(trns) else 255
    return PngImage(width, height, bytes(rgba))


def check_icons(color: bytes | None, outline: bytes | None, *, color_name: str = "color.png",
                outline_name: str = "outline.png") -> list[str]:
    """Problems with the two icons: sizes, and an outline that is white on a transparent background."""
    problems: list[str] = []
    for data, name, size in ((color, color_name, COLOR_SIZE), (outline, outline_name, OUTLINE_SIZE)):
        if data is None:
            problems.append(f"{name}: missing")
            continue
        try:
            w, h, *_ = png_header(data)
        except PngError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if (w, h) != (size, size):
            problems.append(f"{name}: is {w}x{h} pixels; Teams requires {size}x{size}")
    if outline is None or any(p.startswith(f"{outline_name}:") for p in problems):
        return problems
    try:
        img = decode_png(outline)
    except PngError as exc:
        return problems + [f"{outline_name}: {exc}"]
    alphas = img.rgba[3::4]
    transparent = alphas.count(0)
    if transparent == 0:
        problems.append(f"{outline_name}: has no transparent pixels; the background must be transparent")
    if transparent == len(alphas):
        problems.append(f"{outline_name}: is fully transparent; draw the glyph in white")
    coloured = [(i % img.width, i // img.width) for i in range(img.width * img.height)
                if img.rgba[i * 4 + 3] and img.rgba[i * 4:i * 4 + 3] != b"\xff\xff\xff"]
    if coloured:
        x, y = coloured[0]
        problems.append(f"{outline_name}: {len(coloured)} visible pixel(s) are not white (first at x={x}, y={y}: "
                        f"rgba{img.pixel(x, y)}); the outline icon may use only white and transparency")
    return problems


# --- manifest -----------------------------------------------------------------------------------------------
def default_app_id(bot_id: str) -> str:
    """The Teams app id used when none is configured: uuid5 of the bot's Entra app id (stable across builds)."""
    return str(uuid.uuid5(APP_ID_NAMESPACE, bot_id.strip().lower()))


@lru_cache(maxsize=None)
def load_schema(manifest_version: str) -> dict[str, Any]:
    try:
        name = SCHEMA_FILES[manifest_version]
    except KeyError:
        raise ValueError(f"manifest version {manifest_version!r} is not supported "
                         f"(choose {' or '.join(MANIFEST_VERSIONS)})") from None
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def prune_to_schema(instance: Any, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    """Drop object keys the schema does not allow (additionalProperties: false) and enum values it does not know
    from string lists; return the pruned copy and the JSON paths of what was dropped."""
    dropped: list[str] = []

    def walk(value: Any, node: dict[str, Any], path: list[Any]) -> Any:
        node = _resolve(node, schema)
        if isinstance(value, dict) and isinstance(node, dict):
            props = node.get("properties", {})
            out = {}
            for key, child in value.items():
                if key not in props and node.get("additionalProperties") is False and "properties" in node:
                    dropped.append(json_path(path + [key]))
                    continue
                out[key] = walk(child, props[key], path + [key]) if key in props else child
            return out
        if isinstance(value, list) and isinstance(node, dict) and isinstance(node.get("items"), dict):
            items = _resolve(node["items"], schema)
            if "enum" in items and all(isinstance(v, str) for v in value):
                kept = [v for v in value if v in items["enum"]]
                dropped.extend(f"{json_path(path)} value {v!r}" for v in value if v not in items["enum"])
                return kept
            return [walk(v, items, path + [i]) for i, v in enumerate(value)]
        return value

    return walk(instance, schema, []), dropped


def validate_manifest(manifest: dict[str, Any], manifest_version: str | None = None) -> list[str]:
    """Problems with a manifest: the official schema plus what draft-04 cannot say. Empty list = valid."""
    from jsonschema import Draft4Validator

    if not isinstance(manifest, dict):
        return ["$: the manifest must be a JSON object"]
    version = manifest_version or manifest.get("manifestVersion")
    if version not in SCHEMA_FILES:
        return [f"$.manifestVersion: {version!r} cannot be checked here (supported: {', '.join(MANIFEST_VERSIONS)})"]
    problems: list[str] = []
    errors = sorted(Draft4Validator(load_schema(version)).iter_errors(manifest),
                    key=lambda e: [str(p) for p in e.absolute_path])
    for err in errors:
        message = err.message if len(err.message) <= 300 else err.message[:297] + "..."
        problems.append(f"{json_path(err.absolute_path)}: {message}")
    # The schemas say `"const"` for manifestVersion, which draft-04 validators ignore.
    if manifest.get("manifestVersion") != version:
        problems.append(f"$.manifestVersion: must be {version!r}, got {manifest.get('manifestVersion')!r}")
    app_version = manifest.get("version")
    if isinstance(app_version, str) and not _SEMVER.match(app_version):
        problems.append(f"$.version: {app_version!r} is not a version like 1.0.0 (MAJOR.MINOR.PATCH)")
    for i, bot in enumerate(manifest.get("bots") or []):
        bot_id = bot.get("botId") if isinstance(bot, dict) else None
        if isinstance(bot_id, str) and not _GUID.match(bot_id) and version == "1.10":  # 1.22's schema checks it
            problems.append(f"$.bots[{i}].botId: {bot_id!r} is not a GUID (the bot's Entra app id)")
    for i, domain in enumerate(manifest.get("validDomains") or []):
        if isinstance(domain, str) and ("://" in domain or "/" in domain):
            problems.append(f"$.validDomains[{i}]: {domain!r} must be a host name only (no scheme or path)")
    name = manifest.get("name")
    if isinstance(name, dict) and isinstance(name.get("short"), str) and not name["short"].strip():
        problems.append("$.name.short: must not be empty")
    leftover = sorted(set(_PLACEHOLDER.findall(json.dumps(manifest))))
    if leftover:
        problems.append(f"$: unfilled template placeholder(s): {', '.join(leftover)}")
    return problems


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def public_host(public_url: str) -> str:
    """The host of the public URL (no port), for validDomains; ValueError when it has none."""
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{public_url!r} is not an http(s) URL such as https://connector.contoso.com")
    return parts.hostname.lower()


def render_manifest(*, bot_id: str, public_url: str, app_id: str | None = None,
                    name_short: str = DEFAULT_NAME_SHORT, name_full: str | None = None, version: str = "1.0.0",
                    developer_name: str | None = None, website_url: str | None = None,
                    privacy_url: str | None = None, terms_url: str | None = None,
                    accent_color: str = ACCENT_COLOR, manifest_version: str = "1.22",
                    template: Path | None = None,
                    sso_resource: str | None = None) -> tuple[dict[str, Any], list[str], list[str]]:
    """Fill the template: (manifest, problems, warnings). Problems here are about the inputs themselves."""
    problems: list[str] = []
    warnings: list[str] = []
    if manifest_version not in SCHEMA_FILES:
        problems.append(f"manifest_version: {manifest_version!r} is not supported (choose "
                        f"{' or '.join(MANIFEST_VERSIONS)})")
        manifest_version = MANIFEST_VERSIONS[0]
    bot_id = (bot_id or "").strip()
    if not _GUID.match(bot_id):
        problems.append(f"bot_id: {bot_id!r} is not a GUID; use the Application (client) ID of the bot's Entra "
                        "app registration")
    app_id = (app_id or "").strip() or (default_app_id(bot_id) if bot_id else "")
    host = ""
    try:
        host = public_host(public_url)
    except ValueError as exc:
        problems.append(f"public_url: {exc}")
    else:
        if urlsplit(public_url).scheme != "https":
            warnings.append(f"public_url {public_url} is not https: Teams reaches bots over https only")
        if host == "localhost" or _is_ip(host):
            warnings.append(f"validDomains gets {host!r}, which Teams cannot reach; set [server] public_url to "
                            "the public https address")
    developer = {"developer_name": developer_name, "website_url": website_url, "privacy_url": privacy_url,
                 "terms_url": terms_url}
    unset = [k for k, v in developer.items() if not v]
    if unset:
        warnings.append("placeholder developer details in the manifest (fine for a test tenant, not for "
                        f"production): set {', '.join(f'[bot] {k}' for k in unset)} in the configuration")
    filled = {k: (v or PLACEHOLDER_DEVELOPER[k]) for k, v in developer.items()}
    values = {
        "MANIFEST_VERSION": manifest_version, "APP_VERSION": version, "TEAMS_APP_ID": app_id, "BOT_ID": bot_id,
        "NAME_SHORT": name_short, "NAME_FULL": name_full or DEFAULT_NAME_FULL, "ACCENT_COLOR": accent_color,
        "PUBLIC_HOST": host, "DEVELOPER_NAME": filled["developer_name"], "WEBSITE_URL": filled["website_url"],
        "PRIVACY_URL": filled["privacy_url"], "TERMS_URL": filled["terms_url"],
        "SSO_RESOURCE": (sso_resource or "").strip() or f"api://botid-{bot_id}",
    }
    raw = json.loads((template or TEMPLATE).read_text(encoding="utf-8"))
    manifest = _fill(raw, values)
    if manifest_version != MANIFEST_VERSIONS[0]:
        # before v1.12 resource-specific consent was `webApplicationInfo.applicationPermissions` (names only)
        rsc = [p.get("name") for p in ((manifest.get("authorization") or {}).get("permissions") or {})
               .get("resourceSpecific") or [] if isinstance(p, dict) and p.get("type") == "Application"]
        if rsc and isinstance(manifest.get("webApplicationInfo"), dict):
            manifest["webApplicationInfo"]["applicationPermissions"] = rsc
            manifest.pop("authorization", None)
        manifest, dropped = prune_to_schema(manifest, load_schema(manifest_version))
        warnings.extend(f"dropped {d}: manifest v{manifest_version} does not know it" for d in dropped)
    return manifest, problems, warnings


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- package ------------------------------------------------------------------------------------------------
def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def validate_package(zip_path: Path | str) -> list[str]:
    """Problems with a Teams app package zip (manifest schema, icons, layout). Empty list = valid."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"{zip_path}: not a readable zip file ({exc})"]
    with zf:
        names = zf.namelist()
        if "manifest.json" not in names:
            nested = [n for n in names if n.endswith("/manifest.json")]
            hint = f" (found {nested[0]}: zip the files themselves, not their folder)" if nested else ""
            return [f"manifest.json: not at the root of the package{hint}"]
        try:
            manifest = json.loads(zf.read("manifest.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return [f"manifest.json: not valid UTF-8 JSON ({exc})"]
        problems = validate_manifest(manifest)
        icons = manifest.get("icons") if isinstance(manifest, dict) else None
        if not isinstance(icons, dict):
            return problems
        data: dict[str, bytes | None] = {}
        reported: set[str] = set()
        for key in ("color", "outline"):
            path = icons.get(key)
            data[key] = zf.read(path) if isinstance(path, str) and path in names else None
            if isinstance(path, str) and path not in names:
                problems.append(f"$.icons.{key}: {path!r} is not in the package")
            if data[key] is None:
                reported.add(f"{path}: missing")  # said above, or by the schema (icons.{key} required)
        problems += [p for p in check_icons(data["color"], data["outline"], color_name=str(icons.get("color")),
                                            outline_name=str(icons.get("outline"))) if p not in reported]
    return problems


def build_package(*, bot_id: str, public_url: str, out: Path | str, app_id: str | None = None,
                  name_short: str = DEFAULT_NAME_SHORT, name_full: str | None = None, version: str = "1.0.0",
                  developer_name: str | None = None, website_url: str | None = None,
                  privacy_url: str | None = None, terms_url: str | None = None,
                  accent_color: str = ACCENT_COLOR, manifest_version: str = "1.22",
                  color_icon: Path | None = None, outline_icon: Path | None = None, template: Path | None = None,
                  on_warning: Callable[[str], None] | None = None, sso_resource: str | None = None) -> Path:
    """Fill, validate and zip the Teams app package; return the zip's path.

    Args:
        bot_id: the bot's Entra app (client) id: `bots[0].botId` and `webApplicationInfo.id`.
        public_url: the connector's public URL; its host goes into `validDomains` and the webApplicationInfo resource.
        out: the zip to write, or an existing directory to write `teams-app-<version>.zip` into.
        app_id: the Teams app id (manifest `id`); default `default_app_id(bot_id)`.
        version: the package version (MAJOR.MINOR.PATCH); raise it for every upload that replaces an earlier one.
        developer_*/..._url: publisher details; placeholders (with a warning) when not given.
        manifest_version: "1.22", or "1.10" for GCC High / DoD.
        sso_resource: `webApplicationInfo.resource`, the Application ID URI (default api://botid-<bot_id>).
        color_icon, outline_icon, template: replacements for the files in teams_app/.
        on_warning: called with each warning (default: logged).
    Raises:
        ManifestError: listing every problem found (inputs, schema, icons); nothing is written then.
    """
    warn = on_warning or log.warning
    manifest, problems, warnings = render_manifest(
        bot_id=bot_id, public_url=public_url, app_id=app_id, name_short=name_short, name_full=name_full,
        version=version, developer_name=developer_name, website_url=website_url, privacy_url=privacy_url,
        terms_url=terms_url, accent_color=accent_color, manifest_version=manifest_version, template=template,
        sso_resource=sso_resource)
    problems += validate_manifest(manifest, manifest_version if manifest_version in SCHEMA_FILES else None)
    icons: dict[str, bytes | None] = {}
    for key, given in (("color", color_icon), ("outline", outline_icon)):
        path = Path(given) if given else MANIFEST_DIR / f"{key}.png"
        try:
            icons[key] = path.read_bytes()
        except OSError as exc:
            icons[key] = None
            problems.append(f"{key} icon: cannot read {path} ({exc.strerror or exc})")
    problems += [p for p in check_icons(icons["color"], icons["outline"]) if not p.endswith(": missing")]
    if problems:
        raise ManifestError(problems)
    for w in warnings:
        warn(w)
    files = {"manifest.json": (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
             "color.png": icons["color"] or b"", "outline.png": icons["outline"] or b""}
    target = Path(out)
    if target.is_dir():
        target = target / f"teams-app-{version}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".teams-app-", suffix=".zip", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_zip_bytes(files))
        again = validate_package(tmp)
        if again:
            raise ManifestError(again, "the written package does not validate")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- CLI ----------------------------------------------------------------------------------------------------
def _default_app_version() -> str:
    try:
        from importlib.metadata import version

        v = version("ml-connector")
    except Exception:  # not installed (running from a checkout)
        return "1.0.0"
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)", v)
    return ".".join(m.groups()) if m else "1.0.0"


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command("build")
@click.option("--out", type=click.Path(path_type=Path), default=Path("teams-app.zip"), show_default=True,
              help="the zip to write (or an existing directory)")
@click.option("--app-version", help="package version MAJOR.MINOR.PATCH; raise it for every upload that replaces an "
                                    "earlier one  [default: the connector's version]")
@click.option("--manifest-version", type=click.Choice(list(MANIFEST_VERSIONS)),
              help="manifest schema: 1.22, or 1.10 for GCC High / DoD  [default: 1.10 when [cloud] name is gcch or "
                   "dod, else 1.22]")
@click.option("--name", "name_short",
              help=f"the app's short name, at most 30 characters  [default: {DEFAULT_NAME_SHORT}]")
@click.pass_context
def manifest_build(ctx: click.Context, out: Path, app_version: str | None, manifest_version: str | None,
                   name_short: str | None) -> None:
    """Build the Teams app package (manifest.json + icons) to upload in Teams."""
    from connector.config import ConfigError, load_settings

    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    settings = obj.get("settings")
    if settings is None:
        try:
            settings = load_settings(obj.get("config"))
        except ConfigError as exc:
            _fail(str(exc))
        if isinstance(ctx.obj, dict):
            ctx.obj["settings"] = settings
    bot = settings.bot or {}
    missing = []
    if not str(bot.get("app_id") or "").strip():
        missing.append("the bot's Entra app (client) id: set app_id in the [bot] table (or ML_BOT__APP_ID)")
    if not (settings.server.public_url or "").strip():
        missing.append("the connector's public https URL: set public_url in the [server] table "
                       "(or ML_SERVER__PUBLIC_URL)")
    if missing:
        _fail("cannot build the Teams app package without\n" + "\n".join(f"  {m}" for m in missing))
    cloud = settings.cloud.name
    if manifest_version is None:
        manifest_version = "1.10" if cloud in GOV_CLOUDS else MANIFEST_VERSIONS[0]
    elif cloud in GOV_CLOUDS and manifest_version != "1.10":
        click.echo(f"warning: Teams in {GOV_CLOUDS[cloud]} accepts manifests up to v1.10; "
                   f"this package is v{manifest_version}", err=True)

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    try:
        path = build_package(
            bot_id=str(bot["app_id"]), public_url=settings.server.public_url or "", out=out,
            app_id=bot.get("teams_app_id") or None, name_short=name_short or DEFAULT_NAME_SHORT,
            version=app_version or _default_app_version(), developer_name=bot.get("developer_name"),
            website_url=bot.get("website_url"), privacy_url=bot.get("privacy_url"), terms_url=bot.get("terms_url"),
            manifest_version=manifest_version, on_warning=warn,
            sso_resource=settings.approvals.sso_app_id_uri)
    except ManifestError as exc:
        _fail(str(exc))
        return
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    click.echo(f"wrote {path}")
    click.echo(f"  Teams app id {manifest['id']}  bot {manifest['bots'][0]['botId']}  version {manifest['version']}  "
               f"manifest v{manifest['manifestVersion']}")
    click.echo("  upload it in the Teams admin center (Teams apps > Manage apps > Upload new app); "
               f"see {MANIFEST_DIR / 'README.md'}")


manifest_group = click.Group("manifest", help="The Teams app package.")
manifest_group.add_command(manifest_build)
