"""Gallery paging by key: every row once, in the chosen order, forwards and back, filters kept across pages."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from catalog import open_version
from flows.ui.app import create_app
from flows.ui.config import UiConfig


@pytest.fixture(scope="module")
def client(ui_world, tmp_path_factory):
    app = create_app(UiConfig(catalog=ui_world["catalog"].root, cache=tmp_path_factory.mktemp("ui-cache"),
                              page_size=5, warm_indexes=False))
    with TestClient(app) as c:
        yield c


def _page(client, url: str) -> tuple[list[str], str | None, str | None]:
    r = client.get(url)
    assert r.status_code == 200, r.text[:500]
    ids = re.findall(r'data-sample="([^"]+)"', r.text)
    links = {k: html.unescape(v) for v, k in re.findall(r'<a id="(?:prev|next)" href="([^"]+)">[^<]*(previous|next)', r.text)}
    return ids, links.get("next"), links.get("previous")


def _walk(client, url: str) -> tuple[list[list[str]], list[list[str]]]:
    """The pages following the next links from ``url``, then the previous links back from the last."""
    forward, back = [], []
    ids, nxt, prev = _page(client, url)
    forward.append(ids)
    while nxt:
        ids, nxt, prev = _page(client, nxt)
        forward.append(ids)
    while prev:
        ids, _, prev = _page(client, prev)
        back.append(ids)
    return forward, back


@pytest.mark.parametrize("query, column, status", [
    ("", "plan_index", None),
    ("?sort=nn", "nn_similarity", None),
    ("?sort=real&status=kept", "real_nn_similarity", "kept"),
])
def test_pages_cover_every_row_once_in_order_and_lead_back(ui_world, client, query, column, status):
    rows = open_version(ui_world["catalog"], "digits-ui").table(["sample_id", "status", column], status="all").to_pylist()
    rows = [r for r in rows if status is None or r["status"] == status]
    descending = column != "plan_index"
    want = [r["sample_id"] for r in sorted(rows, key=lambda r: -r[column] if descending else r[column])]
    forward, back = _walk(client, "/d/digits-ui/1" + query)
    assert [len(p) for p in forward] == [5] * (len(want) // 5) + ([len(want) % 5] if len(want) % 5 else [])
    assert sum(forward, []) == want
    assert back == forward[-2::-1]  # previous from the last page gives each earlier page again


def test_ranges_and_groups_filter_every_page(ui_world, client):
    rows = open_version(ui_world["catalog"], "digits-ui").table(
        ["sample_id", "status", "label_name", "nn_similarity", "clip_score"], status="all").to_pylist()
    want = [r["sample_id"] for r in rows if r["label_name"] == "seven" and 0.7 <= r["nn_similarity"] <= 0.99
            and r["clip_score"] is not None and r["clip_score"] >= 0]
    assert 0 < len(want) < len(rows)
    forward, _ = _walk(client, "/d/digits-ui/1?group=seven&min_nn_similarity=0.7&max_nn_similarity=0.99"
                               "&min_clip_score=0&sort=nn")
    assert sorted(sum(forward, [])) == sorted(want)
