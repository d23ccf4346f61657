"""``synthgen ui`` over HTTP: read-only, loopback by default, data escaped, errors as pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import psutil

from catalog import open_version
from catalog.publish import push

from tests.conftest import REPO
from tests.flows.cli_process import assert_clean_error, synthgen
from tests.flows.ui.conftest import MARKUP, Server
from tests.s3_server import moto_s3
from tests.tree_hash import tree_hash


def _post_file(server, data: bytes, name: str = "f.png") -> tuple[int, str]:
    boundary = "----synthgen-test"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(server.url + "/audit", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_listens_on_loopback_only_by_default(ui_server):
    addresses = {c.laddr.ip for c in psutil.Process(ui_server.proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert addresses == {"127.0.0.1"}


def test_data_that_looks_like_html_is_escaped_everywhere(ui_server):
    pages = ["/", "/d/markup/1", "/d/markup/1?group=" + urllib.parse.quote(MARKUP)]
    status, gallery, _ = ui_server.get(pages[1])
    pages += [f"/sample/{sid}" for sid in re.findall(r'data-sample="([^"]+)"', gallery.decode())]
    assert len(pages) == 6
    for path in pages:
        status, body, _ = ui_server.get(path)
        text = body.decode()
        assert status == 200 and "<script>alert" not in text and "<img src=x" not in text, path
        assert "&lt;script&gt;alert(" in text, path
    # the group filter matched the class name exactly, markup and all
    assert len(re.findall(r'class="tile"', ui_server.get(pages[2])[1].decode())) == 3


def test_bad_input_is_a_page_not_a_traceback(ui_server):
    for path, code in [("/d/digits-ui/1?min_nn_similarity=abc&after=x&sort=nope", 200),
                       ("/figure/digits-ui/1/..%2F..%2Fdataset.json", 404), ("/figure/digits-ui/1/card.md", 404),
                       ("/d/digits-ui/0", 404), ("/d/BAD%20NAME/1", 404), ("/search?q=seven&ref=nope", 404),
                       ("/search?q=seven&ref=digits-ui@1&status=nope", 400)]:
        status, body, _ = ui_server.get(path)
        assert status == code and b"Traceback" not in body, (path, status, body[:300])
    status, text = _post_file(ui_server, b"not an image at all", "notes.txt")
    assert status == 400 and "notes.txt" in text and "not an image" in text and "Traceback" not in text
    status, text = _post_file(ui_server, b"")
    assert status == 400 and "no file" in text


def test_no_request_changes_the_catalog(ui_world, ui_server):
    gallery = ui_server.get("/d/digits-ui/1?status=blocked_real_copy")[1].decode()
    sid = re.findall(r'data-sample="([^"]+)"', gallery)[0]
    for path in ["/", "/d/digits-ui", "/d/digits-ui/1?sort=nn", f"/sample/{sid}", f"/thumb/digits-ui/{sid}",
                 f"/image/digits-ui/{sid}", "/d/digits-ui/1/diff", "/search?q=a+zero&ref=digits-ui@1"]:
        assert ui_server.get(path)[0] == 200, path
    png = ui_server.get(f"/image/digits-ui/{sid}")[1]
    assert _post_file(ui_server, png)[0] == 200  # followed to the sample's page
    assert tree_hash(ui_world["catalog"].root) == ui_world["catalog_hash"]


def test_the_app_over_a_catalog_at_a_url_serves_what_it_serves_from_a_folder(ui_world, ui_server, tmp_path):
    with moto_s3() as s3:
        url = f"s3://{s3.bucket()}/catalog"
        for name in ("digits-ui", "digits-secret", "digits-copies"):
            push(ui_world["catalog"], name, url, allow_restricted=True)
        objects = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=url.split("/")[2])["Contents"])
        remote = Server(tmp_path / "data", catalog=url)  # its own, empty data folder: caches only
        try:
            ids = []
            for path in ["/d/digits-ui/1", "/d/digits-ui/1?status=blocked_real_copy", "/d/digits-ui/1?sort=nn"]:
                status, page, _ = remote.get(path)
                # The same page up to the card and its figures, which `card --write` made on the folder's machine.
                here, there = (p.split(b'<details open id="card">')[0].split(b"<p>No card written")[0]
                               for p in (page, ui_server.get(path)[1]))
                assert status == 200 and here == there, path
                ids += re.findall(r'data-sample="([^"]+)"', page.decode())
            assert len(set(ids)) == 24
            for path in [f"/image/digits-ui/{ids[0]}", f"/thumb/digits-ui/{ids[-1]}"]:
                assert remote.get(path)[:2] == ui_server.get(path)[:2], path
            assert remote.get(f"/sample/{ids[0]}")[0] == 200
            listing = remote.get("/")[1].decode()
            assert "digits-ui" in listing and "digits-secret" in listing
            secret = open_version(ui_world["catalog"], "digits-secret", allow_restricted=True)
            sid = secret.table(["sample_id"]).column("sample_id")[0].as_py()
            assert remote.get(f"/image/digits-secret/{sid}")[0] == 403  # restricted at a URL as in a folder
            every, shown = (set(open_version(ui_world["catalog"], "digits-copies", allow_restricted=allow)
                                .table(["sample_id"], status="all")["sample_id"].to_pylist()) for allow in (True, False))
            copy = sorted(every - shown)[0]
            for path in [f"/image/digits-copies/{copy}", f"/thumb/digits-copies/{copy}", f"/sample/{copy}"]:
                assert remote.get(path)[0] == 404, path  # a blocked copy of a restricted image: withheld alike
            assert copy not in remote.get("/d/digits-copies/1")[1].decode()
        finally:
            remote.close()
        # Read only: the bucket holds what the pushes put there, and the data folder no Parquet file.
        assert sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=url.split("/")[2])["Contents"]) == objects
        assert not (tmp_path / "data" / "catalog").exists()


def test_a_missing_data_folder_is_a_clear_error(tmp_path):
    proc = synthgen(tmp_path / "nowhere", "ui", "--port", "0")
    assert_clean_error(proc, ["nowhere", "does not exist"])
    assert not (tmp_path / "nowhere").exists()


def test_the_app_imports_neither_prefect_nor_mlflow():
    code = ("import sys, flows.ui.app, flows.cli.ui; "
            "print(sorted(m for m in ('prefect', 'mlflow', 'dvc') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
