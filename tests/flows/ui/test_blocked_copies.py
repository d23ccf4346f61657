"""Blocked copies of restricted real images in an open dataset are withheld without --allow-restricted.

``digits-copies`` (open) holds rows the memorisation guard blocked as copies
of ``digits-secret`` (restricted). An app started without the flag serves
none of them, not even from a gallery index or thumbnails that an app with
the flag left in the same cache, and still shows the dataset's other rows.
"""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from catalog import open_version
from flows.ui.app import create_app
from flows.ui.config import UiConfig

GALLERIES = ["", "?status=blocked_real_copy", "?sort=real", "?sort=nn&status=kept"]


def _client(ui_world, cache, allow: bool) -> TestClient:
    return TestClient(create_app(UiConfig(catalog=ui_world["catalog"].root, cache=cache, allow_restricted=allow,
                                          warm_indexes=False)))


def _tiles(html: str) -> list[str]:
    return re.findall(r'data-sample="([^"]+)"', html)


@pytest.fixture(scope="module")
def copies(ui_world) -> dict:
    """digits-copies's withheld rows (id -> image bytes, read as the owner may) and the ids of the others."""
    cat = ui_world["catalog"]
    every = open_version(cat, "digits-copies", allow_restricted=True).table(["sample_id", "image"], status="all")
    shown = set(open_version(cat, "digits-copies").table(["sample_id"], status="all")["sample_id"].to_pylist())
    withheld = {r["sample_id"]: r["image"]["bytes"] for r in every.to_pylist() if r["sample_id"] not in shown}
    assert withheld and shown
    return {"withheld": withheld, "shown": shown}


@pytest.fixture(scope="module")
def filled_cache(ui_world, copies, tmp_path_factory):
    """A UI cache where an app started with --allow-restricted built the gallery index and the copies' thumbnails."""
    cache = tmp_path_factory.mktemp("ui-cache-allowed")
    with _client(ui_world, cache, True) as c:
        assert set(copies["withheld"]) <= set(_tiles(c.get("/d/digits-copies/1").text))
        for sid, image in copies["withheld"].items():  # with the flag they are served
            assert c.get(f"/image/digits-copies/{sid}").content == image
            assert c.get(f"/thumb/digits-copies/{sid}").headers["content-type"] == "image/png"
            page = c.get(f"/sample/{sid}")
            assert page.status_code == 200 and f"/image/digits-copies/{sid}" in page.text
    assert list((cache / "thumbs" / "digits-copies").rglob("*.png"))
    return cache


@pytest.fixture(scope="module", params=["fresh cache", "cache filled with the flag"])
def client(request, ui_world, tmp_path_factory):
    """The app without the flag: over an empty cache, and over the one an app with the flag filled."""
    cache = (tmp_path_factory.mktemp("ui-cache-fresh") if request.param == "fresh cache"
             else request.getfixturevalue("filled_cache"))
    with _client(ui_world, cache, False) as c:
        yield c


def test_no_byte_route_or_page_serves_a_blocked_copy(client, copies):
    unknown = [client.get(f"/{kind}/digits-copies/no-such-id") for kind in ("image", "thumb")]
    for sid, image in copies["withheld"].items():
        for url, like in [(f"/image/digits-copies/{sid}", unknown[0]), (f"/thumb/digits-copies/{sid}", unknown[1]),
                          (f"/sample/{sid}", client.get("/sample/no-such-id"))]:
            r = client.get(url)
            # answered as an id the catalog lacks (as `synthgen audit ID` answers it): no bytes, no oracle
            assert r.status_code == like.status_code == 404, (url, r.status_code)
            assert r.headers["content-type"].startswith("text/html") and image not in r.content, url
            assert f"/image/digits-copies/{sid}" not in r.text and f"/thumb/digits-copies/{sid}" not in r.text


@pytest.mark.parametrize("query", GALLERIES)
def test_the_gallery_shows_the_other_rows_and_says_how_many_are_withheld(client, copies, query):
    r = client.get("/d/digits-copies/1" + query)
    assert r.status_code == 200, r.text[:500]
    tiles = _tiles(r.text)
    assert not set(tiles) & set(copies["withheld"])
    assert not any(f"/digits-copies/{sid}" in r.text for sid in copies["withheld"])
    if query == "":
        assert set(tiles) == copies["shown"]
    note = re.search(r'<p class="restricted" id="withheld">(.*?)</p>', r.text, re.S)
    assert note and f"{len(copies['withheld'])} rows" in note.group(1) and "--allow-restricted" in note.group(1)


def test_rows_that_copy_nothing_restricted_are_served(client, copies):
    sid = sorted(copies["shown"])[0]
    assert client.get(f"/image/digits-copies/{sid}").headers["content-type"] == "image/png"
    assert client.get(f"/thumb/digits-copies/{sid}").headers["content-type"] == "image/png"
    assert client.get(f"/sample/{sid}").status_code == 200
    assert 'id="withheld"' not in client.get("/d/digits-ui/1").text  # its copies are of an open set: all shown
