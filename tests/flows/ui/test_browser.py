"""``synthgen ui`` in a real browser (headless Chromium, Debian's package, driven by Playwright).

Set SYNTHGEN_SCREENSHOT=1 to save the gallery's screenshot to docs/ui-gallery.png (the README's).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from synthgen.imaging import png_text, read_image_file
from tests.conftest import REPO
from tests.flows.cli_process import synthgen

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="no browser: /usr/bin/chromium is missing (apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def _loaded(page, selector: str) -> int:
    """How many images under ``selector`` decoded (naturalWidth > 0), once the page has settled."""
    page.wait_for_load_state("networkidle")
    return page.eval_on_selector_all(selector, "els => els.filter(e => e.complete && e.naturalWidth > 0).length")


def test_front_page_then_a_versions_gallery(ui_server, page):
    page.goto(ui_server.url + "/")
    assert page.locator("h2#ds-digits-ui").is_visible()
    assert page.locator("h2#ds-digits-secret").inner_text().endswith("(real, restricted)")
    page.click("a.version-link:text('digits-ui@1')")
    page.wait_for_url(re.compile(r"/d/digits-ui/1$"))
    tiles = page.locator("#gallery a.tile")
    assert tiles.count() == 24
    assert _loaded(page, "#gallery img") == 24
    assert page.locator("#card").is_visible() and "digits-ui@1" in page.locator("#card").inner_text()
    if os.environ.get("SYNTHGEN_SCREENSHOT"):
        page.screenshot(path=str(REPO / "docs" / "ui-gallery.png"), full_page=False)


def test_filter_to_blocked_rows_open_one_and_see_its_real_match(ui_server, page):
    page.goto(ui_server.url + "/d/digits-ui/1")
    page.select_option("select[name=status]", "blocked_real_copy")
    page.select_option("select[name=sort]", "real")
    page.click("#apply")
    page.wait_for_url(re.compile(r"status=blocked_real_copy"))
    statuses = page.eval_on_selector_all("#gallery a.tile", "els => els.map(e => e.dataset.status)")
    assert statuses and set(statuses) == {"blocked_real_copy"}
    page.locator("#gallery a.tile").first.click()
    page.wait_for_url(re.compile(r"/sample/"))
    assert page.locator("#status").inner_text() == "blocked_real_copy"
    decided = page.locator(".evidence.decided").first
    assert "closest real image" in decided.inner_text() and "decided the status" in decided.inner_text()
    similarity = decided.locator(".similarity").inner_text()
    value, threshold = map(float, re.findall(r"\d+\.\d+", similarity))
    assert "digits-real" in decided.inner_text() and (value >= threshold or "pixel distance" in similarity)
    assert _loaded(page, "#evidence img") >= 3  # the sample and its real matches, side by side
    links = page.eval_on_selector_all("a.external", "els => els.map(e => e.href)")
    assert any(h.startswith("http://mlflow.invalid:5000/#/runs/digits-ui-mlflow-run") for h in links)
    assert any(h.startswith("http://prefect.invalid:4200/runs/flow-run/digits-ui-flow-run") for h in links)


def test_search_by_text(ui_server, page):
    page.goto(ui_server.url + "/search")
    page.select_option("select[name=ref]", "digits-ui@1")
    page.fill("input[name=q]", "a handwritten seven")
    page.click("#go")
    page.wait_for_url(re.compile(r"q=a\+handwritten\+seven"))
    results = page.locator("#results a.tile")
    assert results.count() > 0 and "cosine" in results.first.inner_text()
    assert _loaded(page, "#results img") == results.count()


def test_upload_an_exported_png_and_land_on_its_sample(ui_world, ui_server, page, tmp_path):
    r = synthgen(ui_world["data"], "export", "digits-ui@1", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    exported = sorted((tmp_path / "out").rglob("*.png"))[3]
    copy = tmp_path / "some-file.png"  # the name says nothing: the file's content is traced
    shutil.copy(exported, copy)
    want = png_text(read_image_file(copy)[1])["sample_id"]
    page.goto(ui_server.url + "/audit")
    page.set_input_files("input[name=file]", str(copy))
    page.click("#trace")
    page.wait_for_url(re.compile(r"/sample/"))
    assert page.locator("#sample-id").inner_text() == want, page.locator("#how").inner_text()
    assert "some-file.png" in page.locator("#how").inner_text()


def test_unknown_names_are_a_404_page(ui_server, page):
    for path in ("/d/nope/1", "/d/digits-ui/99", "/sample/nope", "/image/digits-ui/nope", "/nowhere"):
        response = page.goto(ui_server.url + path)
        assert response.status == 404, path
        assert page.locator("h1").inner_text() == "Not found" and "Traceback" not in page.content()
