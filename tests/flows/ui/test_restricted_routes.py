"""Restricted real rows never reach the browser without --allow-restricted: every byte route, bytes compared."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from catalog import open_version
from flows.ui.thumbs import make_thumbnail
from synthgen.imaging import pixel_sha256
from tests.flows.ui.conftest import Server

THUMB_SIDES = (16, 32, 64, 128, 256, 512)  # every side the app could be configured with


@pytest.fixture(scope="module")
def secret(ui_world) -> dict:
    """The restricted rows (read here as their owner may), and every byte form they could leave in."""
    v = open_version(ui_world["catalog"], "digits-secret", allow_restricted=True)
    rows = v.table(["sample_id", "image"]).to_pylist()
    images = [r["image"]["bytes"] for r in rows]
    forms = images + [make_thumbnail(b, side) for b in images for side in THUMB_SIDES]
    pixels = {pixel_sha256(Image.open(io.BytesIO(b))) for b in images}
    return {"ids": [r["sample_id"] for r in rows], "forms": forms, "pixels": pixels, "version": v.version}


def _routes(server: Server, ui_world, secret) -> list[str]:
    """Every URL that could carry a restricted row's bytes: its own routes, its version's, and every
    image on the pages of the synthetic rows that were blocked as copies of it."""
    ids, v = secret["ids"], secret["version"]
    urls = [f"/{kind}/digits-secret/{sid}" for sid in ids for kind in ("image", "thumb")]
    urls += [f"/sample/{sid}" for sid in ids]
    urls += [f"/d/digits-secret/{v}", f"/d/digits-secret/{v}?status=kept", f"/d/digits-secret/{v}?sort=nn",
             f"/d/digits-secret/{v}/diff", f"/search?ref=digits-secret@{v}&q=a+seven&status=all"]
    folder = ui_world["catalog"].version_dir("digits-secret", v)
    urls += [f"/figure/digits-secret/{v}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.png")]
    urls += [f"/figure/digits-secret/{v}/grid.png", f"/figure/digits-secret/{v}/quality.png"]
    guarded = open_version(ui_world["catalog"], "digits-guarded").table(["sample_id"], status="all").to_pylist()
    for row in guarded:
        urls.append(f"/sample/{row['sample_id']}")
        _, page, _ = server.get(f"/sample/{row['sample_id']}")
        urls += re.findall(r'src="([^"]+)"', page.decode())
        urls += [u for u in re.findall(r'href="(/image/[^"]+)"', page.decode())]
    gallery = server.get("/d/digits-guarded/1?status=blocked_real_copy")[1].decode()
    urls += re.findall(r'src="([^"]+)"', gallery)
    return sorted(set(urls))


def _leaks(body: bytes, secret) -> list[str]:
    found = [f"{len(f)} bytes of a restricted image or its thumbnail" for f in secret["forms"] if f in body]
    try:
        if pixel_sha256(Image.open(io.BytesIO(body))) in secret["pixels"]:
            found.append("an image with a restricted row's pixels")
    except (OSError, ValueError, SyntaxError):
        pass  # not an image
    return found


def test_no_route_serves_restricted_bytes_without_the_flag(ui_world, ui_server, secret):
    assert open_version(ui_world["catalog"], "digits-guarded").manifest.rows_by_status.get("blocked_real_copy")
    urls = _routes(ui_server, ui_world, secret)
    assert len([u for u in urls if u.startswith(("/image/digits-secret", "/thumb/digits-secret"))]) == 2 * len(secret["ids"])
    leaks = {}
    for url in urls:
        status, body, ctype = ui_server.get(url)
        assert status < 500, (url, body[:500])
        if _leaks(body, secret):
            leaks[url] = _leaks(body, secret)
        if url.startswith(("/image/digits-secret", "/thumb/digits-secret", "/figure/digits-secret")) \
                and any(sid in url for sid in secret["ids"]) or url.startswith("/figure/digits-secret"):
            assert status == 403 and "restricted" in body.decode().lower(), (url, status)
        if url.startswith("/sample/") and any(sid in url for sid in secret["ids"]):  # as an unknown id: no oracle
            assert status == 404 and "restricted datasets are not searched" in body.decode(), (url, status)
    assert not leaks
    # and no thumbnail of them was made, to be served later
    thumbs = ui_world["data"] / "ui" / "thumbs" / "digits-secret"
    assert not thumbs.exists() or not any(p.is_file() for p in thumbs.rglob("*"))


def test_restricted_pages_say_so(ui_server, secret):
    # A sample page answers an id only restricted datasets hold exactly as an id nobody holds (as `audit ID`
    # does): which ids a restricted dataset holds is its data too.
    sid = secret["ids"][0]
    status, body, _ = ui_server.get(f"/sample/{sid}")
    unknown_status, unknown, _ = ui_server.get("/sample/s-no-such-sample")
    assert status == unknown_status == 404 and b"/image/digits-secret" not in body
    assert body.replace(sid.encode(), b"ID") == unknown.replace(b"s-no-such-sample", b"ID")
    status, body, _ = ui_server.get(f"/d/digits-secret/{secret['version']}")
    assert status == 200 and b'id="restricted"' in body and b"/thumb/digits-secret" not in body


def test_with_the_flag_the_same_routes_serve_them(ui_world, secret):
    server = Server(ui_world["data"], "--allow-restricted")
    try:
        sid = secret["ids"][0]
        status, body, ctype = server.get(f"/image/digits-secret/{sid}")
        assert status == 200 and ctype == "image/png" and body in secret["forms"]
        status, body, _ = server.get(f"/thumb/digits-secret/{sid}")
        assert status == 200 and body in secret["forms"]
        status, body, _ = server.get(f"/sample/{sid}")
        assert status == 200 and f"/image/digits-secret/{sid}".encode() in body
    finally:
        server.close()
