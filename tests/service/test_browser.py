"""The page end to end in headless Chromium (Playwright driving Debian's ``chromium``).

Skips only when no Chromium executable is found (CI installs the ``chromium`` package); set
``ZOOLENS_SCREENSHOT=path.png`` to also save a screenshot of the neighbours table (the
README's ``docs/serve.png`` is made that way, see ``benchmarks/serve_screenshot.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM = next(
    (
        p
        for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium")
        if p and os.path.exists(p)
    ),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium executable (apt-get install chromium)"
)


@pytest.fixture
def page(live_server: str) -> Any:
    with browse(live_server) as tab:
        yield tab


@contextlib.contextmanager
def browse(live_server: str) -> Iterator[Any]:
    """A headless Chromium tab on the page; fails on any page error."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        tab = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        sync_api.expect.set_options(timeout=60_000)  # a shared 2-core machine is slow
        tab.goto(live_server + "/")
        yield tab
        browser.close()
        assert not errors, errors


def test_upload_map_and_model_page(page: Any, checkpoints: dict) -> None:
    expect = sync_api.expect
    expect(page.locator("#status")).to_contain_text("12 models")
    page.set_input_files("#file", str(checkpoints["zip"]))
    rows = page.locator("#results tbody tr.hit")
    expect(rows).to_have_count(10)
    expect(rows.first.locator("td").nth(1)).to_have_text("m5")
    expect(page.locator("#results thead")).to_contain_text("predicted accuracy")
    expect(page.locator("#query")).to_contain_text("zip.zip (Net, input [4], 2 outputs)")

    if os.environ.get("ZOOLENS_SCREENSHOT"):
        page.screenshot(path=os.environ["ZOOLENS_SCREENSHOT"], full_page=True)

    # a filter narrows the next search
    page.fill("#where", "task=fashion")
    page.set_input_files("#file", str(checkpoints["new"]))
    expect(rows).to_have_count(N_FASHION)
    expect(page.locator("#results tbody")).not_to_contain_text("task=digits")
    expect(rows.first.locator("td.meta")).to_contain_text("task=fashion")

    page.click("#nav-map")
    expect(page.locator("#map")).to_have_attribute("data-ready", "true")
    expect(page.locator("#legend li")).to_have_count(2)
    point = page.evaluate("window.zoolens.map.points.find((p) => p.id === 'm2')")
    box = page.locator("#map").bounding_box()
    scale = box["width"] / page.evaluate("document.querySelector('#map').width")
    x, y = box["x"] + point["px"] * scale, box["y"] + point["py"] * scale
    page.mouse.move(x, y)
    expect(page.locator("#tooltip")).to_be_visible()
    page.mouse.click(x, y)

    expect(page).to_have_url(re.compile(r"#/models/m2$"))
    expect(page.locator("#model-title")).to_have_text("m2")
    expect(page.locator("#model-lineage")).to_contain_text("parent: m0")
    expect(page.locator("#model-nearest tbody tr")).to_have_count(10)
    page.locator("#model-lineage a").first.click()
    expect(page.locator("#model-title")).to_have_text("m0")
    expect(page.locator("#model-lineage")).to_contain_text("m1")


def test_a_bad_file_shows_the_reason(page: Any, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    page.set_input_files("#file", str(bad))
    sync_api.expect(page.locator("#error")).to_contain_text("broken.onnx")
    sync_api.expect(page.locator("#results")).to_be_hidden()


N_FASHION = 6


def test_lineage_from_weights_on_hits_and_model_pages(tmp_path: Path) -> None:
    from .conftest import serve
    from .test_lineage import build_lineage_index

    expect = sync_api.expect
    with serve(build_lineage_index(tmp_path), None) as url, browse(url) as tab:
        tab.goto(url + "/#/models/p")
        lineage = tab.locator("#model-lineage")
        expect(lineage).to_contain_text("from weights, children: c1 (recorded 0.")
        expect(lineage).to_contain_text("c2 (weights 0.")
        nearest = tab.locator("#model-nearest tbody")
        expect(nearest).to_contain_text("fine-tune of p (weights)")
        tab.goto(url + "/#/models/u")
        expect(tab.locator("#model-lineage")).to_contain_text("near-duplicates: u-copy")
        expect(tab.locator("#model-nearest tbody")).to_contain_text("near-duplicate of u")


def test_a_slow_map_says_so_then_appears(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoolens.service import map as zoo_map

    from .conftest import serve

    slow = lambda n, method="auto": "tsne" if method == "auto" else method  # noqa: E731
    monkeypatch.setattr(zoo_map, "choose_method", slow)  # t-SNE is laid out in the background
    monkeypatch.setattr("zoolens.service.api.MAP_RETRY_S", 1)
    expect = sync_api.expect
    with serve(index_dir, None) as url, browse(url) as page:
        page.click("#nav-map")
        expect(page.locator("#map-info")).to_contain_text("laying out the map of 12 models")
        expect(page.locator("#map")).to_have_attribute("data-ready", "true")
        expect(page.locator("#map-info")).to_have_text("12 models, tsne")
