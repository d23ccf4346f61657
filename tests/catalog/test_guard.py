"""The pixel guard's thumbnails and index: stored per version at ingest, loaded (not decoded) per job."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from catalog import Catalog, open_version
from catalog.guard import FILES, guard_dir, load_guard, pixel_guard
from catalog.ingest import ingest_folder
from synthgen.index import describe
from synthgen.memorisation import THUMB, PixelGuard, build_thumb_index, copy_distances, standardise


def blobs(n: int, seed: int = 0, size: int = 24) -> list[np.ndarray]:
    """Distinct smooth grey images (a few random Gaussian blobs each)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        img = np.zeros((size, size))
        for cy, cx, r in rng.uniform([0, 0, 2], [size, size, 6], (4, 3)):
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out.append((255 * img / img.max()).astype(np.uint8))
    return out


@pytest.fixture
def real(tmp_path):
    root = tmp_path / "digits"
    for i, arr in enumerate(blobs(40)):
        (root / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / str(i % 2) / f"{i:03d}.png")
    cat = Catalog(tmp_path / "catalog")
    ingest_folder(cat, "real", root)
    return cat, open_version(cat, "real")


def test_ingest_stores_the_guard_and_a_job_loads_it_with_the_same_answers(real):
    cat, v = real
    folder = guard_dir(v)
    assert all((folder / f).exists() for f in FILES)
    loaded = load_guard(v, check_all=True)
    assert isinstance(loaded.thumbs, np.memmap) or loaded.thumbs.base is not None  # mapped, not decoded
    images = {sid: Image.open(io.BytesIO(b)) for sid, b in v.images(loaded.ids[:5]).items()}
    fresh = PixelGuard(list(images), list(images.values()))
    shifted = [Image.fromarray(np.roll(np.asarray(im.convert("L")), 1, axis=1)) for im in images.values()]
    d_loaded, id_loaded = loaded.nearest(shifted)
    assert id_loaded == list(images)  # each shifted copy finds its source among all 40
    d_fresh, _ = fresh.nearest(shifted)
    np.testing.assert_allclose(d_loaded, d_fresh, atol=1e-5)


def test_a_dataset_without_a_stored_guard_gets_one_on_first_use(real):
    cat, v = real
    folder = guard_dir(v)
    for f in folder.iterdir():
        f.unlink()
    assert load_guard(v) is None
    guard = pixel_guard(v)
    assert len(guard.ids) == 40 and (folder / "guard.json").exists()
    assert load_guard(v) is not None


def test_a_corrupt_or_stale_store_is_rebuilt_not_trusted(real):
    cat, v = real
    folder = guard_dir(v)
    good = (folder / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(good[:-8] + b"\0" * 8)
    assert load_guard(v, check_all=True) is None  # same size, other bytes: only the full check sees it
    (folder / "index.faiss").write_bytes(good[:-8])
    assert load_guard(v) is None  # truncated
    pixel_guard(v)
    assert (folder / "index.faiss").read_bytes() == good
    (folder / "ids.json").write_text('["x"]')
    assert load_guard(v) is None


def test_an_ivf_candidate_index_finds_the_copies_an_exact_one_finds():
    arrays = blobs(3000, seed=1, size=THUMB)
    thumbs = np.stack([standardise(a) for a in arrays]).astype(np.float32)
    ids = [f"r{i}" for i in range(len(thumbs))]
    ivf = build_thumb_index(thumbs, kind="ivf")
    assert describe(ivf).kind == "ivf" and describe(ivf).nprobe < describe(ivf).nlist
    exact, approx = PixelGuard.from_thumbs(ids, thumbs), PixelGuard.from_thumbs(ids, thumbs, ivf)
    rng = np.random.default_rng(2)
    src = rng.choice(len(arrays), 200, replace=False)
    copies = [Image.fromarray(np.clip(np.roll(arrays[i], 1, axis=0) * 0.8 + rng.normal(0, 4, (THUMB, THUMB)), 0, 255)
                              .astype(np.uint8)) for i in src]
    d_exact, id_exact = exact.nearest(copies)
    d_approx, id_approx = approx.nearest(copies)
    assert np.mean([a == f"r{i}" for a, i in zip(id_exact, src)]) >= 0.99
    assert np.mean(np.isclose(d_approx, d_exact, atol=1e-6)) >= 0.99


def test_guard_verdicts_equal_a_brute_force_scan_of_every_real_image():
    """Copies, fresh images and the threshold: the indexed guard answers as scoring all real images would."""
    arrays = blobs(1000, seed=3, size=THUMB)
    thumbs = np.stack([standardise(a) for a in arrays]).astype(np.float32)
    ids = [f"r{i}" for i in range(len(thumbs))]
    guard = PixelGuard.from_thumbs(ids, thumbs, build_thumb_index(thumbs, kind="ivf"))
    rng = np.random.default_rng(4)
    src = rng.choice(len(arrays), 40, replace=False)
    shifts = rng.integers(-1, 2, (40, 2))
    copies = [np.clip(np.roll(arrays[i], tuple(s), axis=(0, 1)) * 0.8 + rng.normal(0, 4, (THUMB, THUMB)), 0, 255)
              for i, s in zip(src, shifts)]
    queries = [Image.fromarray(a.astype(np.uint8)) for a in copies + blobs(40, seed=11, size=THUMB)]
    dists, got = guard.nearest(queries)
    brute = np.stack([copy_distances(standardise(q), thumbs) for q in queries])
    for i, q in enumerate(queries):
        assert (dists[i] <= 0.24) == (brute[i].min() <= 0.24)  # the verdict at the spec's threshold
        if i < 40:  # a copy: its source, at the brute-force distance
            assert got[i] == f"r{src[i]}" and dists[i] == pytest.approx(brute[i].min(), abs=1e-6)
        else:  # a fresh image still gets its nearest candidate as evidence, never a block
            assert got[i] is not None and dists[i] >= brute[i].min() - 1e-6
    assert (brute[:40].min(axis=1) <= 0.24).all() and (brute[40:].min(axis=1) > 0.24).all()


def test_a_store_built_over_another_descriptor_is_rebuilt(real):
    cat, v = real
    meta_path = guard_dir(v) / "guard.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: x for k, x in meta.items() if k != "descriptor"}))  # as stored before
    assert load_guard(v) is None
    pixel_guard(v)
    assert json.loads(meta_path.read_text())["descriptor"] == meta["descriptor"] and load_guard(v) is not None


def test_a_guard_stored_part_by_part_has_the_files_of_one_written_whole(real, tmp_path):
    from catalog.guard import store_guard, write_guard_files

    _, v = real
    folder = guard_dir(v)
    stored = load_guard(v)
    ids, thumbs = list(stored.ids), np.array(stored.thumbs)
    cuts = [0, 7, 7, 30, len(ids)]  # uneven parts, one of them empty
    store_guard(v, len(ids), [(ids[a:b], thumbs[a:b]) for a, b in zip(cuts, cuts[1:])])
    by_parts = {f: (folder / f).read_bytes() for f in FILES}
    whole = tmp_path / "whole"
    write_guard_files(whole, ids, thumbs, build_thumb_index(thumbs), "unused")
    assert by_parts == {f: (whole / f).read_bytes() for f in FILES}
    with pytest.raises(ValueError, match="rows"):
        store_guard(v, len(ids) + 1, [(ids, thumbs)])
    assert {f: (folder / f).read_bytes() for f in FILES} == by_parts  # a failed store leaves the stored one
