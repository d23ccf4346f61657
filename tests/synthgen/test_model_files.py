"""Model folders at a URL: copied once into the model cache, checked by their weights hash on every use."""

from __future__ import annotations

import pytest

from synthgen.embedder import load_embedder
from synthgen.model_check import ModelCheckError, locate
from synthgen.model_files import EMBEDDED, HASH_FILE, fetch_model, resolve_model_path, weights_sha256
from synthgen.spec import EmbedderSpec
from tests.s3_server import moto_s3


@pytest.fixture(scope="module")
def clip_url():
    """The embedded CLIP folder, uploaded to a bucket on moto's S3 server."""
    with moto_s3() as s3:
        bucket = s3.bucket("models")
        client = s3.client()
        folder = EMBEDDED["embedded:digits-clip"]
        for path in (p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), bucket, f"clip/v1/{path.relative_to(folder).as_posix()}")
        yield f"s3://{bucket}/clip/v1"


def test_a_folder_at_a_url_is_fetched_once_and_hashed(clip_url, tmp_path):
    copy = fetch_model(clip_url, tmp_path)
    assert weights_sha256(copy) == weights_sha256(EMBEDDED["embedded:digits-clip"])
    assert (copy / HASH_FILE).read_text().strip() == weights_sha256(copy)
    assert fetch_model(clip_url + "/", tmp_path) == copy  # the same folder, not fetched again
    assert [p.name for p in tmp_path.iterdir()] == [copy.name]  # no temporary folder left


def test_a_changed_copy_is_fetched_again(clip_url, tmp_path):
    copy = fetch_model(clip_url, tmp_path)
    (copy / "config.json").write_text("{}")  # damaged (or edited) since it arrived
    again = fetch_model(clip_url, tmp_path)
    assert again == copy and weights_sha256(again) == weights_sha256(EMBEDDED["embedded:digits-clip"])


def test_the_embedder_loads_from_a_url_and_records_its_hash(clip_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_MODEL_CACHE", str(tmp_path))
    local = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
    remote = load_embedder(EmbedderSpec(model=clip_url))
    assert remote.name == f"{clip_url}@{local.name.rsplit('@', 1)[1]}"  # same weights, same hash
    assert resolve_model_path(clip_url) == str(fetch_model(clip_url, tmp_path))
    assert locate(clip_url, "embedder.model") == fetch_model(clip_url, tmp_path)


def test_a_missing_folder_is_a_clear_error(clip_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHGEN_MODEL_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no model folder there"):
        fetch_model(clip_url + "-missing", tmp_path)
    with pytest.raises(ModelCheckError, match="embedder.model: .*-missing: cannot fetch the model folder"):
        locate(clip_url + "-missing", "embedder.model")
