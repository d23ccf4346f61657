import pytest

from catalog import Catalog, IngestError, ingest_folder, open_version
from synthgen.imaging import decode, pixel_sha256


def test_ingest_class_folders(tmp_path, real_digits_dir):
    cat = Catalog(tmp_path / "cat")
    m = ingest_folder(cat, "digits-real", real_digits_dir)
    assert m.origin == "real" and m.rows == 200 and m.version == 1
    t = open_version(cat, "digits-real").table()
    assert set(t["origin"].to_pylist()) == {"real"}
    row = t.slice(0, 1).to_pylist()[0]
    # classes.txt order gives ids: zero=0 ... nine=9
    by_name = dict(zip(t["label_name"].to_pylist(), t["label"].to_pylist()))
    assert by_name["zero"] == 0 and by_name["seven"] == 7
    original = (real_digits_dir / row["source_path"]).read_bytes()
    assert row["image"]["bytes"] == original  # stored byte for byte
    assert row["image_sha256"] == pixel_sha256(decode(original))


def test_ingest_rejects_bad_folders(tmp_path):
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(IngestError, match="not a folder"):
        ingest_folder(cat, "x", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no class sub-folders"):
        ingest_folder(cat, "x", tmp_path / "empty")
    (tmp_path / "empty" / "cats").mkdir()
    with pytest.raises(IngestError, match="no images"):
        ingest_folder(cat, "x", tmp_path / "empty")
    assert cat.names() == []  # nothing written


def test_ingest_decodes_every_file_before_writing(tmp_path, real_digits_dir):
    import shutil

    cat = Catalog(tmp_path / "cat")
    folder = tmp_path / "in"
    shutil.copytree(real_digits_dir / "three", folder / "three")
    first = sorted((folder / "three").glob("*.png"))[0]
    (folder / "three" / "truncated.png").write_bytes(first.read_bytes()[:30])
    (folder / "three" / "notes.txt").write_text("a note\n")
    (folder / "three" / ".DS_Store").write_bytes(b"\0\1")  # hidden files are not data
    with pytest.raises(IngestError) as refused:
        ingest_folder(cat, "x", folder)
    assert "three/truncated.png" in str(refused.value) and "three/notes.txt" in str(refused.value)
    assert ".DS_Store" not in str(refused.value) and "--skip-bad" in str(refused.value)
    assert cat.names() == []  # nothing written
    m = ingest_folder(cat, "x", folder, skip_bad=True)
    assert m.rows == 20 and sorted(s["file"] for s in m.prov["skipped"]) == ["three/notes.txt", "three/truncated.png"]
