"""C2PA credentials on export, read back through c2pa's own Reader, and audit reading them first."""

from __future__ import annotations

import struct
import zlib

import c2pa
import datasets
import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version, samples_to_table
from flows.cli import app
from flows.credentials import (
    ASSERTION, SOURCE_TYPE, CredentialsError, generate_chain, local_identity, read_credentials, signing_identity,
)
from flows.export import export_hf, export_pngs
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
