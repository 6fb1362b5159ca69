"""Preview pages, and Microsoft's renderer in headless Chromium as the judge of every card we make.

Chromium is slow to start on a shared machine, so every template × variant card goes on one page and one launch
reads every card's warnings. Skipped without Chromium, unless ML_REQUIRE_ORACLES=1 makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from card_variants import all_cases, case
from cards.catalog import Catalog
from cards.preview import copy_vendor, dump_dom, page_html, read_report, write_preview
from cards.render import render

BROKEN = {
    "broken:unknown-element": {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Carousel3D"}]},
    "broken:bad-enum": {"type": "AdaptiveCard", "version": "1.5",
                        "body": [{"type": "TextBlock", "text": "x", "size": "Huge"}]},
}


def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("ML_REQUIRE_ORACLES") == "1":
        pytest.fail("Chromium is required (ML_REQUIRE_ORACLES=1) but not installed: apt-get install -y chromium")
    pytest.skip("Chromium not installed")


def test_pages_without_chromium(tmp_path: Path) -> None:
    catalog = Catalog.builtin()
    results = write_preview(tmp_path, catalog, chromium=None)
    assert [r.name for r in results] == catalog.names()
    for vendored in ("adaptivecards.min.js", "markdown-it.min.js", "adaptivecards.css", "teams-container-light.css"):
        assert (tmp_path / "_vendor" / vendored).stat().st_size > 1000
    for result in results:
        page = result.html.read_text(encoding="utf-8")
        embedded = re.search(r'<script type="application/json" class="card" data-card="[^"]+">(.*?)</script>', page,
                             re.S)
        expected = render(result.name, catalog.sample(result.name), catalog=catalog).card
        assert json.loads(embedded.group(1)) == expected
        assert '<pre class="warnings" id="warnings"' in page and '<div id="status">' in page
        assert result.png is None and result.problems == [] and not result.rendered
    assert (tmp_path / "index.html").is_file()


def test_data_file_replaces_the_sample(tmp_path: Path) -> None:
    data = case("purchase-order-confirmed", "non-ascii")
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    [result] = write_preview(tmp_path / "out", Catalog.builtin(), names=["purchase-order-confirmed"],
                             data_file=data_file, chromium=None)
    assert "深圳市华强电子有限公司" in result.html.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def renderer_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[bool, dict[str, list[str]], dict[str, int]]:
    browser = chromium()
    out = tmp_path_factory.mktemp("render-all")
    catalog = Catalog.builtin()
    cards = {f"{name}:{label}": render(name, case(name, label), catalog=catalog).card for name, label in all_cases()}
    cards.update(BROKEN)
    copy_vendor(out)
    page = out / "all.html"
    page.write_text(page_html(cards), encoding="utf-8")
    return read_report(dump_dom(browser, page))


@pytest.mark.chromium
def test_microsoft_renderer_finds_no_warnings_in_any_card(renderer_report) -> None:
    rendered, warnings, heights = renderer_report
    assert rendered
    ours = {name: w for name, w in warnings.items() if not name.startswith("broken:")}
    assert len(ours) == len(all_cases())
    assert {name: w for name, w in ours.items() if w} == {}
    assert all(heights[name] > 100 for name in ours)  # something was drawn


@pytest.mark.chromium
def test_renderer_check_can_fail(renderer_report) -> None:
    _, warnings, _ = renderer_report
    assert all(warnings[name] for name in BROKEN), {name: warnings[name] for name in BROKEN}


@pytest.mark.chromium
def test_write_preview_takes_screenshots(tmp_path: Path) -> None:
    [result] = write_preview(tmp_path, Catalog.builtin(), names=["workflow-approval"], chromium=chromium())
    assert result.rendered and result.warnings == []
    assert result.png is not None and result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
