import io
import os

import numpy as np
import pytest
from PIL import Image

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


def _png(path, seed: int) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (16, 16)).astype("uint8")).save(path)


def test_a_classes_txt_that_leaves_out_a_class_folder_is_refused(tmp_path):
    cat = Catalog(tmp_path / "cat")
    for i, c in enumerate("abc"):
        _png(tmp_path / "in" / c / "0.png", i)
    (tmp_path / "in" / "classes.txt").write_text("a\n")
    with pytest.raises(IngestError, match=r"does not list the class folder\(s\) \['b', 'c'\]"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []


def test_a_dangling_symlink_is_named_and_skip_bad_leaves_it_out(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    (tmp_path / "in" / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(IngestError, match="a/gone.png: dangling symlink"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []
    m = ingest_folder(cat, "x", tmp_path / "in", skip_bad=True)
    assert m.rows == 1 and [s["file"] for s in m.prov["skipped"]] == ["a/gone.png"]
    assert "dangling symlink" in m.prov["skipped"][0]["reason"]


def test_symlinks_are_followed_and_sub_folders_belong_to_their_class(tmp_path):
    cat = Catalog(tmp_path / "cat")
    store = tmp_path / "store"  # a shared store outside the folder, linked into it
    _png(store / "s0.png", 1)
    _png(store / "more" / "s1.png", 2)
    _png(tmp_path / "in" / "a" / "0.png", 0)
    _png(tmp_path / "in" / "a" / "sub" / "deep.png", 3)
    (tmp_path / "in" / "a" / "linked.png").symlink_to(store / "s0.png")
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "b" / "shared").symlink_to(store / "more", target_is_directory=True)
    (tmp_path / "in" / "b" / "loop").symlink_to(tmp_path / "in" / "b", target_is_directory=True)  # walked once
    m = ingest_folder(cat, "x", tmp_path / "in")
    rows = open_version(cat, "x").table(["source_path", "label_name"]).to_pylist()
    assert m.rows == 4
    assert sorted((r["label_name"], r["source_path"]) for r in rows) == [
        ("a", "a/0.png"), ("a", "a/linked.png"), ("a", "a/sub/deep.png"), ("b", "b/shared/s1.png")]


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    (tmp_path / "in" / "b").mkdir()
    (tmp_path / "in" / "b" / ".DS_Store").write_bytes(b"\0")  # hidden files are not data
    with pytest.raises(IngestError, match=r"class folder\(s\) with no files: \['b'\]"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []


def test_the_guard_stored_from_the_ingest_thumbnails_is_the_one_built_from_the_rows(tmp_path, real_digits_dir):
    import json

    from catalog.guard import build_guard, guard_dir

    cat = Catalog(tmp_path / "cat")
    ingest_folder(cat, "real", real_digits_dir, shard_rows=64, workers=2)  # several shards, decoded on threads
    version = open_version(cat, "real")
    stored = json.loads((guard_dir(version) / "guard.json").read_text())
    build_guard(version)  # decodes every row again, as for datasets from before ingest stored it
    rebuilt = json.loads((guard_dir(version) / "guard.json").read_text())
    assert stored == rebuilt and stored["rows"] == 200


def test_a_folder_ingested_with_other_shard_sizes_or_threads_has_the_same_rows(tmp_path, real_digits_dir):
    cat = Catalog(tmp_path / "cat")
    a = ingest_folder(cat, "a", real_digits_dir, workers=1)
    b = ingest_folder(cat, "b", real_digits_dir, shard_rows=7, workers=3, batch=5)
    ta, tb = open_version(cat, "a").table(), open_version(cat, "b").table()
    assert len(b.shards) == 29 and ta.equals(tb)


def _garbled_im(path) -> None:
    """A PIL "IM" file whose header's mode has one byte changed: Pillow raises KeyError on it, not OSError."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (8, 8, 3)).astype("uint8")).save(buf, "IM")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue().replace(b"RGB image", b"RGB im\x12ge", 1))


def test_a_file_pillow_fails_on_with_any_exception_is_a_bad_file_not_a_crash(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "ok.png", 0)
    _garbled_im(tmp_path / "in" / "a" / "photo.jpg")
    with pytest.raises(IngestError, match=r"a/photo.jpg: damaged or unsupported image \(Pillow raised KeyError"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []
    m = ingest_folder(cat, "x", tmp_path / "in", skip_bad=True)
    assert m.rows == 1 and [s["file"] for s in m.prov["skipped"]] == ["a/photo.jpg"]


def test_16_bit_images_reach_the_embedder_scaled_to_8_bits_not_clipped_white(tmp_path):
    import numpy as np
    from PIL import Image

    cat = Catalog(tmp_path / "cat")
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0..63000: all but one pixel above 255
    for name, arr in (("up", ramp), ("down", ramp[::-1].copy())):
        (tmp_path / "in" / "a").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(tmp_path / "in" / "a" / f"{name}.png")
    seen = {}

    def embed(images):
        for img in images:
            seen[np.asarray(img).tobytes()] = np.asarray(img)
        return np.tile(np.eye(1, 4, dtype=np.float32), (len(images), 1))

    ingest_folder(cat, "x", tmp_path / "in", embed, "stub")
    got = sorted(seen.values(), key=lambda a: a[0, 0, 0])
    want = sorted((np.repeat((a >> 8).astype(np.uint8)[..., None], 3, axis=2) for a in (ramp, ramp[::-1])),
                  key=lambda a: a[0, 0, 0])
    assert len(got) == 2 and all(np.array_equal(g, w) for g, w in zip(got, want))


def test_a_link_in_a_class_folder_to_the_root_or_above_it_is_refused_naming_it(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "cat" / "0.png", 0)
    _png(tmp_path / "in" / "dog" / "0.png", 1)
    (tmp_path / "in" / "dog" / "sub").mkdir()
    for link, target in (("dog/up", ".."), ("dog/sub/top", "../.."), ("dog/sky", str(tmp_path))):
        (tmp_path / "in" / link).symlink_to(target, target_is_directory=True)
        with pytest.raises(IngestError, match=f"in/{link}: a link to .*: following it would file every class "
                                              "under 'dog'"):
            ingest_folder(cat, "x", tmp_path / "in")
        (tmp_path / "in" / link).unlink()
    (tmp_path / "in" / "all").symlink_to(".", target_is_directory=True)  # a class folder that is the root itself
    with pytest.raises(IngestError, match="in/all: a link to"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []


def test_a_symlink_loop_is_named_as_a_loop(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    (tmp_path / "in" / "a" / "loop.png").symlink_to("loop.png")
    with pytest.raises(IngestError, match=r"a/loop.png: symlink loop \(to loop.png\)"):
        ingest_folder(cat, "x", tmp_path / "in")


def test_a_folder_that_cannot_be_listed_is_refused_not_left_out(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    fd = os.open(tmp_path / "in" / "a", os.O_RDONLY)
    for _ in range(20):  # 20 x 250 bytes: beyond PATH_MAX, so the walk cannot open the deepest (ENAMETOOLONG)
        os.mkdir("d" * 250, dir_fd=fd)
        fd, parent = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    with pytest.raises(IngestError, match=r"ddd: cannot list the folder \(File name too long\)"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []


def test_an_existing_dataset_must_be_as_restricted_as_the_ingest_asks(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    ingest_folder(cat, "open", tmp_path / "in")
    ingest_folder(cat, "secret", tmp_path / "in", restricted=True)
    # Unchanged files too: the rerun must not pass as "already committed".
    with pytest.raises(IngestError, match="'open' exists and is not restricted.*under a new name"):
        ingest_folder(cat, "open", tmp_path / "in", restricted=True)
    with pytest.raises(IngestError, match="'secret' is restricted; pass --restricted"):
        ingest_folder(cat, "secret", tmp_path / "in")
    assert cat.head("open") == 1 and cat.head("secret") == 1
    assert ingest_folder(cat, "secret", tmp_path / "in", restricted=True).version == 1  # as asked: fine


@pytest.mark.parametrize("name", ["new\nline", "esc\x1b[31mred", "tab\there"])
def test_a_class_name_export_could_not_write_as_a_folder_is_refused(tmp_path, name):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "ok" / "0.png", 0)
    _png(tmp_path / "in" / name / "0.png", 1)
    with pytest.raises(IngestError, match="class name .* contains a control character"):
        ingest_folder(cat, "x", tmp_path / "in")
    (tmp_path / "in" / "classes.txt").write_text(f"ok\n{name}\n")  # splitlines: the newline's halves are unlisted
    with pytest.raises(IngestError, match="contains a control character|does not list"):
        ingest_folder(cat, "x", tmp_path / "in")
    assert cat.names() == []


def test_a_file_name_with_a_newline_cannot_forge_lines_of_the_bad_file_list(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "a" / "0.png", 0)
    (tmp_path / "in" / "a" / "x.png\n  - fake.png: ok\t\x1b[2J").write_bytes(b"not an image")
    with pytest.raises(IngestError) as refused:
        ingest_folder(cat, "x", tmp_path / "in")
    listed = [line for line in str(refused.value).splitlines() if line.startswith("  - ")]
    assert len(listed) == 1 and listed[0].endswith("a/x.png\\n  - fake.png: ok\\t\\x1b[2J: not an image PIL can decode")


def test_a_classes_txt_with_a_byte_order_mark_is_read(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _png(tmp_path / "in" / "cat" / "0.png", 0)
    _png(tmp_path / "in" / "dog" / "0.png", 1)
    (tmp_path / "in" / "classes.txt").write_bytes("\ufeffdog\r\ncat\r\n".encode())  # as Windows Notepad saves it
    ingest_folder(cat, "x", tmp_path / "in")
    rows = open_version(cat, "x").table(["label", "label_name"]).to_pylist()
    assert sorted((r["label_name"], r["label"]) for r in rows) == [("cat", 1), ("dog", 0)]


def test_a_photo_stored_sideways_with_an_exif_orientation_is_ingested_as_it_looks(tmp_path):
    """A phone's portrait photo: pixels stored turned, plus the tag that says so. Its embedding, guard
    thumbnail, pixel hash and size are those of the upright picture (what a generator learns to draw and
    what Hugging Face datasets show), and its bytes are kept as they are."""
    picture = np.zeros((24, 16, 3), np.uint8)
    picture[:8] = 255  # a bright top third: turned sideways it is a bright side
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {"upright": tmp_path / "in" / "a" / "upright.png", "sideways": tmp_path / "in" / "b" / "sideways.png"}
    for key, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        if key == "upright":
            Image.fromarray(picture).save(buf, "PNG")
        else:
            Image.fromarray(np.ascontiguousarray(np.rot90(picture, 1))).save(buf, "PNG", exif=exif.tobytes())
        path.write_bytes(buf.getvalue())
    seen = []

    def embed(images):
        seen.extend(np.asarray(img) for img in images)
        return np.tile(np.eye(1, 4, dtype=np.float32), (len(images), 1))

    cat = Catalog(tmp_path / "cat")
    ingest_folder(cat, "x", tmp_path / "in", embed, "stub")
    assert len(seen) == 2 and all(np.array_equal(a, picture) for a in seen)
    version = open_version(cat, "x")
    rows = {r["source_path"]: r for r in version.table().to_pylist()}
    up, side = rows["a/upright.png"], rows["b/sideways.png"]
    assert side["image"]["bytes"] == files["sideways"].read_bytes()  # stored byte for byte, tag and all
    assert side["image_sha256"] == up["image_sha256"]
    assert (side["width"], side["height"]) == (up["width"], up["height"]) == (16, 24)
    # The torch loader hands out the picture as it looks, as the rows' hash says.
    data = version.to_torch()
    tensors = {data[i][2]: data[i][0] for i in range(len(data))}
    assert all(tuple(t.shape) == (3, 24, 16) for t in tensors.values())
    assert np.array_equal(tensors[side["sample_id"]].numpy(), tensors[up["sample_id"]].numpy())
