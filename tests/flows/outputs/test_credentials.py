"""C2PA credentials on export, read back through c2pa's own Reader, and audit reading them first."""

from __future__ import annotations

import io
import json
import struct
import zlib

import c2pa
import datasets
import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version, samples_to_table
from flows.cli.app import app
from flows.outputs.credentials import (
    ASSERTION, SOURCE_TYPE, CredentialsError, generate_chain, local_identity, read_credentials, signing_identity,
)
from flows.outputs.export import ImageEncoding, export_hf, export_images, export_parquet, export_pngs
from synthgen.imaging import decode, pixel_sha256
from tests.conftest import make_samples

runner = CliRunner()


def _catalog(data, name="mix"):
    cat = Catalog(data / "catalog")
    cat.create(name, "mixed")
    with cat.lock(name):
        cat.commit(name, [cat.write_shard(name, samples_to_table(make_samples(4, "synthetic") +
                                                                 make_samples(2, "real", start=100)))])
    return cat


def _retext(png: bytes, key: bytes, new: bytes) -> bytes:
    """``png`` with the tEXt chunk ``key`` holding ``new`` (CRC fixed, so only the C2PA hash can tell)."""
    out, i = bytearray(png[:8]), 8
    while i < len(png):
        n, kind = struct.unpack(">I4s", png[i:i + 8])
        body = png[i + 8:i + 8 + n]
        if kind == b"tEXt" and body.startswith(key + b"\0"):
            body = key + b"\0" + new
        out += struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))
        i += 12 + n
    return bytes(out)


def _flip_scan_byte(jpeg: bytes) -> bytes:
    """``jpeg`` with one byte of its entropy-coded data changed: it still decodes, but is not what was signed."""
    bad = bytearray(jpeg)
    bad[-10] ^= 0x55  # just before the EOI marker: inside the last scan, after the C2PA (APP11) segments
    return bytes(bad)


def _labels(data: bytes, mime: str) -> dict:
    """Assertion label -> data of the active manifest, read with c2pa's own Reader (state must be Valid)."""
    with c2pa.Reader.try_create(mime, io.BytesIO(data)) as reader:
        assert reader.get_validation_state() == "Valid"  # signed, untrusted root: Valid, not Trusted
        return {a["label"]: a["data"] for a in reader.get_active_manifest()["assertions"]}


@pytest.fixture
def identity(tmp_path):
    chain, key = generate_chain("synthgen test signer")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    return signing_identity(tmp_path, tmp_path / "chain.pem", tmp_path / "key.pem")


def test_exported_synthetic_pngs_carry_a_valid_created_claim_and_real_ones_none(tmp_path, identity):
    cat = _catalog(tmp_path)
    assert export_pngs(open_version(cat, "mix"), tmp_path / "out", identity=identity) == 6
    files = {p.stem: p.read_bytes() for p in (tmp_path / "out").rglob("*.png")}
    assert not list((tmp_path / "out").rglob("*.tmp"))
    rows = {r["sample_id"]: r for r in open_version(cat, "mix").table(["sample_id", "image_sha256"]).to_pylist()}
    for sid, data in files.items():
        reader = c2pa.Reader.try_create("image/png", __import__("io").BytesIO(data))
        if sid.startswith("r"):
            assert reader is None  # a real image gets no claim at all
            continue
        with reader:
            assert reader.get_validation_state() == "Valid"  # signed, untrusted root: Valid, not Trusted
            manifest = reader.get_active_manifest()
        labels = {a["label"]: a["data"] for a in manifest["assertions"]}
        created = labels["c2pa.actions.v2" if "c2pa.actions.v2" in labels else "c2pa.actions"]["actions"][0]
        assert created["action"] == "c2pa.created" and created["digitalSourceType"] == SOURCE_TYPE
        claim = labels[ASSERTION]
        assert claim["sample_id"] == sid and claim["image_sha256"] == rows[sid]["image_sha256"]
        assert claim["dataset"] == "mix@1" and claim["manifest_sha256"] == cat.manifest_sha256("mix", 1)
    assert len(files) == 6


def test_a_tampered_export_fails_validation(tmp_path, identity):
    cat = _catalog(tmp_path)
    export_pngs(open_version(cat, "mix"), tmp_path / "out", identity=identity)
    data = next((tmp_path / "out").rglob("s00000.png")).read_bytes()
    assert read_credentials(data, "image/png").valid
    bad = read_credentials(_retext(data, b"synthgen:sample_id", b"s00003"), "image/png")
    assert not bad.valid and "assertion.dataHash.mismatch" in bad.failures


def test_hf_export_signs_synthetic_image_bytes_and_still_loads(tmp_path, identity):
    cat = _catalog(tmp_path)
    assert export_hf(open_version(cat, "mix"), tmp_path / "hf", identity=identity) == 6
    assert "signed by `O=synthgen,CN=synthgen test signer` (configured)" in (tmp_path / "hf" / "README.md").read_text()
    ds = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "hf-cache")).cast_column("image", datasets.Image(decode=False))
    for row in ds:
        cred = read_credentials(row["image"]["bytes"], "image/png")
        if row["origin"] == "real":
            assert cred is None
        else:
            assert cred.valid and cred.synthetic and cred.claim["sample_id"] == row["sample_id"]


def test_local_identity_is_made_once_per_data_folder_and_untrusted(tmp_path):
    first, again = local_identity(tmp_path), local_identity(tmp_path)
    assert first.untrusted and first.source == "local (untrusted)"
    assert (tmp_path / "credentials" / "chain.pem").read_bytes() and first.name == again.name
    with pytest.raises(CredentialsError, match="needs its certificate chain"):
        signing_identity(tmp_path, key=tmp_path / "credentials" / "key.pem")
    with pytest.raises(CredentialsError, match="no such file"):
        signing_identity(tmp_path, tmp_path / "missing.pem", tmp_path / "credentials" / "key.pem")


def test_local_signing_key_is_private_from_its_first_byte_whatever_the_umask(tmp_path):
    """The key is never readable by others, not even as a temp file; its folder is the owner's alone."""
    import os
    import stat

    old = os.umask(0)  # the widest umask: nothing may rely on it
    try:
        local_identity(tmp_path)
    finally:
        os.umask(old)
    folder = tmp_path / "credentials"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "key.pem").stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["chain.pem", "key.pem"]  # no temp file left
    folder.chmod(0o755)  # a folder left by an older synthgen is tightened on next use
    local_identity(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_callback_identity_signs_with_an_external_key(tmp_path, monkeypatch):
    """A KMS/HSM user hands a function that signs bytes; here it wraps a key that c2pa never sees."""
    import sys
    import types

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    chain, key_pem = generate_chain("hsm signer")
    (tmp_path / "chain.pem").write_bytes(chain)
    key = serialization.load_pem_private_key(key_pem, None)
    mod = types.ModuleType("fake_hsm")
    mod.sign = lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))
    monkeypatch.setitem(sys.modules, "fake_hsm", mod)
    ident = signing_identity(tmp_path, tmp_path / "chain.pem", callback="fake_hsm:sign")
    assert ident.source == "callback"
    cat = _catalog(tmp_path)
    export_pngs(open_version(cat, "mix"), tmp_path / "out", identity=ident)
    cred = read_credentials(next((tmp_path / "out").rglob("s00001.png")).read_bytes(), "image/png")
    assert cred.valid and cred.signer == "hsm signer"


def test_cli_export_with_credentials_then_audit_reads_them_and_names_a_tampered_file(tmp_path):
    _catalog(tmp_path / "data")
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "export", "mix", str(tmp_path / "out"),
                              "--credentials"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "local (untrusted)" in res.output and "real rows carry no claim" in res.output
    png = next((tmp_path / "out").rglob("s00002.png"))
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "audit", str(png)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "content credentials valid (untrusted signer" in text and "claims sample s00002 of mix@1" in text
    assert "matches the catalog row" in text
    bad = tmp_path / "bad.png"
    bad.write_bytes(_retext(png.read_bytes(), b"synthgen:sample_id", b"s00009"))
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "audit", str(bad)], catch_exceptions=False)
    text = " ".join(res.output.split())
    assert "FAILED validation (assertion.dataHash.mismatch" in text
    assert "exact pixel match (sha256) -> s00002" in text  # falls back to today's traces
    real = next((tmp_path / "out").rglob("r00100.png"))
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "audit", str(real)], catch_exceptions=False)
    assert "no content credentials" in " ".join(res.output.split())


def test_mlflow_runs_record_the_watermark_and_the_export_signer(demo_run, tmp_path):
    from mlflow import MlflowClient

    res = runner.invoke(app, ["--data-dir", str(demo_run["data"]), "export", "digits-small", str(tmp_path / "out"),
                              "--credentials"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    run_id = open_version(demo_run["catalog"], "digits-small").manifest.runs[0].mlflow_run_id
    tags = MlflowClient(demo_run["paths"].tracking_uri).get_run(run_id).data.tags
    assert tags["synthgen.watermark"] == "off"  # the demo's 16-px images are too small to mark
    assert tags["synthgen.credentials"] == "O=synthgen,CN=synthgen local signer (local (untrusted))"


def test_jpeg_export_is_signed_as_a_lossy_derivative_and_real_rows_get_no_claim(tmp_path, identity):
    cat = _catalog(tmp_path)
    assert export_images(open_version(cat, "mix"), tmp_path / "out", identity=identity,
                         encoding=ImageEncoding(format="jpeg", quality=75)) == 6
    files = {p.stem: p.read_bytes() for p in (tmp_path / "out").rglob("*.jpg")}
    assert len(files) == 6 and not list((tmp_path / "out").rglob("*.tmp"))
    assert not list((tmp_path / "out").rglob("*.png"))
    rows = {r["sample_id"]: r for r in open_version(cat, "mix").table(["sample_id", "image_sha256"]).to_pylist()}
    for sid, data in files.items():
        img = decode(data)
        assert img.format == "JPEG" and pixel_sha256(img) != rows[sid]["image_sha256"]  # lossy: not the row's pixels
        if sid.startswith("r"):
            assert c2pa.Reader.try_create("image/jpeg", io.BytesIO(data)) is None  # a real image gets no claim
            continue
        labels = _labels(data, "image/jpeg")
        actions = labels["c2pa.actions.v2" if "c2pa.actions.v2" in labels else "c2pa.actions"]["actions"]
        assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == SOURCE_TYPE
        assert actions[1]["action"] == "c2pa.transcoded"
        claim = labels[ASSERTION]
        assert claim["sample_id"] == sid and claim["image_sha256"] == rows[sid]["image_sha256"]  # the source row's
        assert (claim["encoding"], claim["quality"], claim["dataset"]) == ("jpeg", 75, "mix@1")
    bad = read_credentials(_flip_scan_byte(files["s00001"]), "image/jpeg")
    assert not bad.valid and "assertion.dataHash.mismatch" in bad.failures


def test_parquet_export_signs_synthetic_image_bytes_and_keeps_their_pixels(tmp_path, identity):
    cat = _catalog(tmp_path)
    assert export_parquet(open_version(cat, "mix"), tmp_path / "x.parquet", identity=identity) == 6
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "x.parquet")
    assert b"huggingface" in table.schema.metadata  # still the HF Image feature
    assert json.loads(table.schema.metadata[b"synthgen.credentials"]) == identity.describe()
    for row in table.select(["sample_id", "origin", "image", "image_sha256"]).to_pylist():
        data = row["image"]["bytes"]
        assert pixel_sha256(decode(data)) == row["image_sha256"]  # the manifest is added beside the pixels
        if row["origin"] == "real":
            assert c2pa.Reader.try_create("image/png", io.BytesIO(data)) is None
        else:
            claim = _labels(data, "image/png")[ASSERTION]
            assert claim["sample_id"] == row["sample_id"] and claim["encoding"] == "png"
    assert export_parquet(open_version(cat, "mix"), tmp_path / "bare.parquet") == 6  # unsigned: no manifest at all
    bare = pq.read_table(tmp_path / "bare.parquet")
    assert b"synthgen.credentials" not in bare.schema.metadata
    for data in bare["image"].combine_chunks().field("bytes").to_pylist():
        assert read_credentials(data, "image/png") is None


def test_cli_jpeg_export_with_credentials_then_audit_names_the_row_and_a_tampered_copy(tmp_path):
    _catalog(tmp_path / "data")
    data = ["--data-dir", str(tmp_path / "data")]
    res = runner.invoke(app, [*data, "export", "mix", str(tmp_path / "out"), "--format", "jpeg", "--quality", "80",
                              "--credentials"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "exported 6 rows of mix@1" in res.output and "as JPEG q80" in res.output
    jpg = next((tmp_path / "out").rglob("s00002.jpg"))
    res = runner.invoke(app, [*data, "audit", str(jpg)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "content credentials valid (untrusted signer" in text and "claims sample s00002 of mix@1" in text
    assert "a lossy derivative (JPEG q80)" in text
    assert "matches the catalog row (sample, pixel hash, re-encoded pixels)" in text
    assert "sample s00002 in mix" in text  # and then the row itself
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(_flip_scan_byte(jpg.read_bytes()))
    res = runner.invoke(app, [*data, "audit", str(bad)], catch_exceptions=False)
    assert "FAILED validation (assertion.dataHash.mismatch" in " ".join(res.output.split())
    real = next((tmp_path / "out").rglob("r00100.jpg"))
    res = runner.invoke(app, [*data, "audit", str(real)], catch_exceptions=False)
    assert "no content credentials" in " ".join(res.output.split())
    res = runner.invoke(app, [*data, "export", "mix", str(tmp_path / "q"), "--format", "jpeg", "--quality", "96"])
    assert res.exit_code == 2 and "between 1 and 95" in res.output and not (tmp_path / "q").exists()


def test_audit_names_a_signed_jpeg_whose_pixels_are_not_its_claimed_row(tmp_path, identity):
    """Signed and unaltered since signing, but the claim names another row: the re-encoding check says so."""
    from flows.outputs.credentials import manifest_definition, sign_bytes
    from flows.outputs.export import encode_jpeg

    cat = _catalog(tmp_path / "data")
    v = open_version(cat, "mix")
    rows = {r["sample_id"]: r for r in v.table(["sample_id", "image_sha256", "image"]).to_pylist()}
    dataset = {"dataset": "mix@1", "manifest_sha256": cat.manifest_sha256("mix", 1)}
    other = encode_jpeg(decode(rows["s00003"]["image"]["bytes"]), 90)
    forged = tmp_path / "forged.jpg"
    forged.write_bytes(sign_bytes(other, "image/jpeg", manifest_definition(
        rows["s00001"], dataset, encoding={"encoding": "jpeg", "quality": 90}), identity))
    res = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "audit", str(forged)], catch_exceptions=False)
    text = " ".join(res.output.split())
    assert "content credentials valid" in text and "claims sample s00001" in text
    assert "MISMATCH: the row re-encoded as JPEG q90 does not give the file's pixels" in text
