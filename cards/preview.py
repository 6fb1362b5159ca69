"""See cards the way Teams draws them: HTML pages rendered by Microsoft's own renderer, and PNGs via Chromium.

For each card `write_preview` writes `<name>.html` (the card JSON, the Teams light host config and relative links to
the vendored `adaptivecards.min.js`, `markdown-it.min.js` and the designer's Teams CSS in `_vendor/`), and
`index.html`, which renders every card on one page so one browser launch checks them all. Each page records the
renderer's parse and validation warnings in
`<pre id="warnings">` (one `<pre class="warnings" data-card=NAME>` per card on the index page) and says
`<div id="status">rendered</div>` once done. With Chromium available, each card also gets `<name>.png`.

The renderer and host config are Microsoft's (see `cards/vendor/README.md`); nothing here talks to the network.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cards.catalog import Catalog
from cards.render import render
from cards.validate import validate_card

VENDOR_DIR = Path(__file__).parent / "vendor"
_VENDOR_FILES = {
    "adaptivecards.min.js": VENDOR_DIR / "adaptivecards" / "adaptivecards.min.js",
    "markdown-it.min.js": VENDOR_DIR / "markdown-it" / "markdown-it.min.js",
    "adaptivecards.css": VENDOR_DIR / "adaptivecards" / "adaptivecards.css",
    "teams-container-light.css": VENDOR_DIR / "adaptivecards-designer" / "teams-container-light.css",
}
HOST_CONFIG = VENDOR_DIR / "adaptivecards-designer" / "microsoft-teams-light.json"
CARD_WIDTH = 640  # about the width of a full-width card in a Teams channel on a laptop
_TIMEOUT = 60.0


@dataclass
class PreviewResult:
    """One card's preview. `warnings` come from Microsoft's renderer (empty = clean); `problems` from our schema
    check."""

    name: str
    html: Path
    png: Path | None = None
    rendered: bool = False
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    bytes: int = 0


# The script below is the same for one card and for many: it renders every <script type=application/json
# class=card> it finds and writes the warnings next to it.
_RENDER_JS = r"""
(function () {
  var md = window.markdownit();
  AdaptiveCards.AdaptiveCard.onProcessMarkdown = function (text, result) {
    // Teams draws <at>Name</at> as a highlighted name; markdown-it would show the tags, so preview them as such.
    var marked = text.replace(/<at>([^<]*)<\/at>/g, "\u0001$1\u0002");
    result.outputHtml = md.render(marked)
      .replace(/\u0001/g, '<span class="mention">').replace(/\u0002/g, "</span>");
    result.didProcess = true;
  };
  var hostConfig = new AdaptiveCards.HostConfig(JSON.parse(document.getElementById("host-config").textContent));
  var all = document.querySelectorAll("script.card");
  var failures = 0;
  for (var i = 0; i < all.length; i++) {
    var node = all[i], name = node.getAttribute("data-card"), lines = [];
    var slot = document.querySelector('[data-slot="' + name + '"]');
    try {
      var json = JSON.parse(node.textContent);
      var card = new AdaptiveCards.AdaptiveCard();
      card.hostConfig = hostConfig;
      var context = new AdaptiveCards.SerializationContext();
      card.parse(json, context);
      for (var e = 0; e < context.eventCount; e++) {
        var ev = context.getEventAt(e);
        lines.push("parse: " + AdaptiveCards.ValidationEvent[ev.event] + ": " + ev.message);
      }
      var results = card.validateProperties();
      for (var v = 0; v < results.validationEvents.length; v++) {
        var ve = results.validationEvents[v];
        lines.push("validate: " + AdaptiveCards.ValidationEvent[ve.event] + ": " + ve.message);
      }
      var element = card.render();
      if (!element) { lines.push("render: nothing rendered"); } else { slot.appendChild(element); }
    } catch (err) {
      lines.push("error: " + err);
    }
    if (lines.length) { failures++; }
    var out = document.querySelector('pre.warnings[data-card="' + name + '"]');
    out.textContent = lines.join("\n");
    slot.setAttribute("data-height", String(Math.ceil(slot.getBoundingClientRect().height)));
  }
  var status = document.getElementById("status");
  status.textContent = "rendered";
  status.setAttribute("data-failures", String(failures));
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
  body {{ margin: 0; padding: 16px; background: #f5f5f5;
          font-family: 'Segoe UI', Tahoma, Geneva, Verdana, sans-serif; }}
  .card {{ width: {width}px; background: #fff; border-radius: 4px; box-shadow: 0 1px 3px rgba(0,0,0,.15);
           margin-bottom: 24px; overflow: hidden; }}
  h2 {{ font-size: 13px; color: #616161; margin: 0 0 6px; font-weight: 600; }}
  pre.warnings:empty, {single_hide} {{ display: none; }}
  pre.warnings {{ color: #c4314b; white-space: pre-wrap; }}
  #status {{ display: none; }}
  .mention {{ color: #6264a7; font-weight: 600; }}
</style>
<link rel="stylesheet" href="_vendor/adaptivecards.css">
<link rel="stylesheet" href="_vendor/teams-container-light.css">
<script src="_vendor/markdown-it.min.js"></script>
<script src="_vendor/adaptivecards.min.js"></script>
<script type="application/json" id="host-config">{host_config}</script>
</head><body>
{sections}
<div id="status">pending</div>
<script>{render_js}</script>
</body></html>
"""


def _json_for_script(value: Any) -> str:
    # Inside <script> only "</" can end the element early; escaping "<" keeps the JSON identical once parsed.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def _section(name: str, card: dict[str, Any], *, single: bool) -> str:
    heading = "" if single else f"<h2>{html.escape(name)}</h2>\n"
    pre_id = ' id="warnings"' if single else ""
    return (
        f'<section>{heading}<div class="card teams-card" data-slot="{html.escape(name)}"></div>\n'
        f'<pre class="warnings"{pre_id} data-card="{html.escape(name)}"></pre>\n'
        f'<script type="application/json" class="card" data-card="{html.escape(name)}">'
        f'{_json_for_script(card)}</script>'
        "</section>"
    )


def page_html(cards: dict[str, dict[str, Any]], *, title: str = "Card preview") -> str:
    """An HTML page that renders `cards` (name -> card JSON) with the vendored renderer from `_vendor/`."""
    single = len(cards) == 1
    return _PAGE.format(
        title=html.escape(title),
        width=CARD_WIDTH,
        single_hide="h2" if single else "section:empty",
        host_config=_json_for_script(json.loads(HOST_CONFIG.read_text(encoding="utf-8"))),
        sections="\n".join(_section(n, c, single=single) for n, c in cards.items()),
        render_js=_RENDER_JS,
    )


def copy_vendor(out_dir: Path) -> None:
    vendor = out_dir / "_vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    for target, source in _VENDOR_FILES.items():
        shutil.copyfile(source, vendor / target)


def chromium_args(chromium: str, user_data_dir: str, *extra: str) -> list[str]:
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}", *extra,
    ]


def dump_dom(chromium: str, page: Path, *, timeout: float = _TIMEOUT) -> str:
    """The page's DOM after its scripts ran, as Chromium serialises it."""
    with tempfile.TemporaryDirectory(prefix="ml-cards-chromium-") as profile:
        proc = subprocess.run(
            chromium_args(chromium, profile, "--dump-dom", page.resolve().as_uri()),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    if proc.returncode != 0 or "<body" not in proc.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-800:]}")
    return proc.stdout


def screenshot(chromium: str, page: Path, png: Path, *, width: int, height: int, timeout: float = _TIMEOUT) -> bool:
    with tempfile.TemporaryDirectory(prefix="ml-cards-chromium-") as profile:
        proc = subprocess.run(
            chromium_args(chromium, profile, f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
                          page.resolve().as_uri()),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    return proc.returncode == 0 and png.is_file()


def read_report(dom: str) -> tuple[bool, dict[str, list[str]], dict[str, int]]:
    """From a dumped DOM: whether rendering finished, warnings per card, rendered height per card."""
    rendered = re.search(r'<div id="status"[^>]*>rendered</div>', dom) is not None
    warnings: dict[str, list[str]] = {}
    for match in re.finditer(r'<pre class="warnings"(?: id="warnings")? data-card="([^"]*)">(.*?)</pre>', dom, re.S):
        text = html.unescape(match.group(2)).strip()
        warnings[html.unescape(match.group(1))] = text.splitlines() if text else []
    heights = {
        html.unescape(m.group(1)): int(m.group(2))
        for m in re.finditer(r'<div class="card teams-card" data-slot="([^"]*)" data-height="(\d+)"', dom)
    }
    return rendered, warnings, heights


def write_preview(
    out_dir: Path,
    catalog: Catalog,
    *,
    names: Sequence[str] | None = None,
    data_file: Path | None = None,
    chromium: str | None = shutil.which("chromium"),
) -> list[PreviewResult]:
    """Render cards to HTML pages (and PNGs when `chromium` is given) in `out_dir`.

    Args:
        out_dir: created if needed; gets `<name>.html`, `<name>.png`, `index.html` and `_vendor/`.
        catalog: where templates and their sample data come from.
        names: templates to preview (default: all in the catalog).
        data_file: card data (JSON object) to use instead of each template's sample.
        chromium: path to a Chromium binary; None writes the HTML only (no warnings read, no PNG).
    Returns:
        One `PreviewResult` per card, in `names` order. `warnings` is filled only when Chromium ran.
    Raises:
        KeyError: a name not in the catalog. ValueError: `data_file` is not a JSON object.
        cards.errors.TemplateError: a template does not expand with the given data.
        RuntimeError: Chromium was given but could not render the pages.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_vendor(out_dir)
    data_override = None
    if data_file is not None:
        data_override = json.loads(Path(data_file).read_text(encoding="utf-8"))
        if not isinstance(data_override, dict):
            raise ValueError(f"{data_file}: card data must be a JSON object")

    selected = list(names) if names else catalog.names()
    cards: dict[str, dict[str, Any]] = {}
    results: list[PreviewResult] = []
    for name in selected:
        data = data_override if data_override is not None else catalog.sample(name)
        rendered = render(name, data, catalog=catalog)
        cards[name] = rendered.card
        page = out_dir / f"{name}.html"
        page.write_text(page_html({name: rendered.card}, title=name), encoding="utf-8")
        results.append(PreviewResult(name=name, html=page, problems=validate_card(rendered.card),
                                     bytes=rendered.bytes))
    index = out_dir / "index.html"
    index.write_text(page_html(cards, title="ml-connector cards"), encoding="utf-8")

    if chromium:
        # One launch checks every card; then one launch per screenshot, sized to the card's rendered height.
        done, warnings, heights = read_report(dump_dom(chromium, index))
        for result in results:
            result.rendered = done and result.name in heights
            result.warnings = warnings.get(result.name, ["no report from the renderer"])
            png = out_dir / f"{result.name}.png"
            height = heights.get(result.name, 800) + 32 + (40 if result.warnings else 0)  # padding (+ warnings)
            if screenshot(chromium, result.html, png, width=CARD_WIDTH + 32, height=height):
                result.png = png
    return results
