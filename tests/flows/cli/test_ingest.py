"""`synthgen ingest` as a user runs it: killed and resumed, from a bucket, bad and hostile files, bounded memory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog import Catalog, open_version
from synthgen.failpoints import after_reused
from tests.conftest import REPO
from tests.flows.cli_process import (
    MODEL_LIBRARIES,
    ForkedCli,
    assert_clean_error,
    synthgen,
)
from tests.s3_server import moto_s3

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

SHARD = "8"  # images per shard: the 60-image folder below makes 8 shards


@pytest.fixture(scope="module")
def forked():
    """``forked(data, *args)``: ``synthgen``, each command a process of its own forked from one interpreter that
    imported the CLI and the model libraries. Runs that are killed, or whose memory is measured, start afresh."""
    cli = ForkedCli(preload=MODEL_LIBRARIES)
    yield cli
    cli.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """60 small PNGs in 10 class folders, with a classes.txt."""
    root = tmp_path_factory.mktemp("ingest") / "images"
    rng = np.random.RandomState(0)
    for c in range(10):
        for i in range(6):
            path = root / f"class{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.randint(0, 255, (12, 12, 3)).astype("uint8")).save(path)
    (root / "classes.txt").write_text("".join(f"class{c}\n" for c in reversed(range(10))))
    return root


@pytest.fixture(scope="module")
def ingested(folder, forked, tmp_path_factory) -> Path:
    """A data folder holding the folder's uninterrupted ingest (read it, or copy it to change it)."""
    data = tmp_path_factory.mktemp("whole") / "data"
    proc = forked(data, "ingest", str(folder), "--name", "real", "--shard-size", SHARD)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "60 images, 0 bad files" in proc.stdout and "img/s" in proc.stdout
    return data


@pytest.fixture(scope="module")
def uninterrupted(ingested):
    return Catalog(ingested / "catalog").manifest("real")


def _listed(forked: ForkedCli, data: Path) -> list[dict]:
    proc = forked(data, "datasets", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)["datasets"]


# In the order one ingest passes them: one data folder's ingest is killed at each in turn, each run resuming what
# the one before it staged, then run to the end. "@n" names the n-th shard (or its Parquet file) of the plan; a
# resumed run reads and writes only the shards not staged (`synthgen.failpoints.after_reused`).
KILL_POINTS = ["ingest-shard@2", "parquet-write@3", "before-commit", "manifest-written"]


def staged_shards(data: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each finished shard's record in the ingest's staging folder: (inode, mtime, bytes), so a rewrite shows."""
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes())
            for f in (data / "staging").rglob("shard-*.json")}


@pytest.fixture(scope="module")
def killed_chain(folder, forked, tmp_path_factory) -> dict:
    """One ingest SIGKILLed at each point in turn, what each kill left, then the run to the end and one more."""
    data = tmp_path_factory.mktemp("killed") / "data"
    killed, listed, staged = {}, {}, {}
    for point in KILL_POINTS:
        before = staged_shards(data) if data.exists() else {}
        killed[point] = synthgen(data, "ingest", str(folder), "--name", "real", "--shard-size", SHARD,
                                 env={"SYNTHGEN_FAILPOINT": after_reused(point, len(before))})
        listed[point] = _listed(forked, data)
        staged[point] = (before, staged_shards(data))
    rerun = forked(data, "ingest", str(folder), "--name", "real", "--shard-size", SHARD)
    done = {"manifest": Catalog(data / "catalog").manifest("real") if rerun.returncode == 0 else None,
            "listed": _listed(forked, data), "staging_left": list((data / "staging").rglob("*.parquet"))}
    again = forked(data, "ingest", str(folder), "--name", "real", "--shard-size", SHARD)
    return {"data": data, "killed": killed, "listed": listed, "staged": staged, "rerun": rerun, "done": done,
            "again": again}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_ingest_leaves_no_rows_visible_and_its_staged_shards_to_the_next_run(killed_chain, point):
    killed = killed_chain["killed"][point]
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL at the failpoint: nothing got to clean up
    # No partial dataset is listed: no rows at all are visible (a kill between the manifest and HEAD
    # leaves the new dataset's name with no version, and nothing readable).
    assert all(d["head"] is None and d["rows"] == 0 for d in killed_chain["listed"][point])
    # The run reused every shard staged before it: each record is the same file, untouched.
    before, after = killed_chain["staged"][point]
    assert {f: after.get(f) for f in before} == before
    assert len(after) == {"ingest-shard@2": 2, "parquet-write@3": 2}.get(point, 8)  # 8 shards in all


def test_a_killed_ingest_rerun_publishes_the_version_an_uninterrupted_one_does(killed_chain, uninterrupted):
    rerun, done = killed_chain["rerun"], killed_chain["done"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    m = done["manifest"]
    assert m.version == 1 and m.rows == 60
    assert [(s.sha256, s.rows) for s in m.shards] == [(s.sha256, s.rows) for s in uninterrupted.shards]
    assert "8 shard(s) reused from an earlier run" in rerun.stdout  # every shard the killed runs staged
    assert [d["rows"] for d in done["listed"]] == [60]
    assert done["staging_left"] == []  # the staging area is cleaned up after the commit
    again = killed_chain["again"]
    assert again.returncode == 0 and "already committed" in again.stdout  # no second, identical version
    assert Catalog(killed_chain["data"] / "catalog").head("real") == 1


def test_an_ingest_from_an_s3_bucket_equals_one_from_the_folder(folder, uninterrupted, tmp_path, forked):
    with moto_s3() as s3:
        bucket = s3.bucket()
        client = s3.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, f"sets/real/{path.relative_to(folder).as_posix()}")
        # The rows' created_at is each file's modification time: give the folder's copy the bucket's.
        local = tmp_path / "copy"
        for obj in client.list_objects_v2(Bucket=bucket, Prefix="sets/real/")["Contents"]:
            target = local / obj["Key"].removeprefix("sets/real/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((folder / obj["Key"].removeprefix("sets/real/")).read_bytes())
            stamp = obj["LastModified"].timestamp()
            os.utime(target, (stamp, stamp))
        data = tmp_path / "data"
        proc = forked(data, "ingest", f"s3://{bucket}/sets/real", "--name", "from-s3", "--shard-size", SHARD)
        assert proc.returncode == 0, proc.stderr[-3000:]
    other = forked(data, "ingest", str(local), "--name", "from-folder", "--shard-size", SHARD)
    assert other.returncode == 0, other.stderr[-3000:]
    cat = Catalog(data / "catalog")
    a, b = cat.manifest("from-s3"), cat.manifest("from-folder")
    assert a.rows == 60 and [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    assert a.prov["wasGeneratedBy"]["used"] == f"s3://{bucket}/sets/real"
    rows = open_version(cat, "from-s3").table(["source_path", "image", "label", "label_name"]).to_pylist()
    assert {r["label_name"]: r["label"] for r in rows}["class9"] == 0  # classes.txt read from the bucket
    for r in rows:  # stored byte for byte
        assert r["image"]["bytes"] == (folder / r["source_path"]).read_bytes()


def test_bad_files_in_several_shards_are_all_named_and_skip_bad_reuses_the_staged_work(folder, tmp_path, forked):
    images = tmp_path / "images"
    shutil.copytree(folder, images)
    (images / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (images / "class8" / "notes.txt").write_text("not an image\n")
    data = tmp_path / "data"
    refused = forked(data, "ingest", str(images), "--name", "real", "--shard-size", SHARD)
    assert_clean_error(refused, ["class1/broken.png", "class8/notes.txt", "2 of 62 files", "--skip-bad"])
    assert _listed(forked, data) == []  # nothing committed
    proc = forked(data, "ingest", str(images), "--name", "real", "--shard-size", SHARD, "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 2 unreadable file(s)" in proc.stdout and "shard(s) reused from an earlier run" in proc.stdout
    m = Catalog(data / "catalog").manifest("real")
    assert m.rows == 60 and sorted(s["file"] for s in m.prov["skipped"]) == ["class1/broken.png", "class8/notes.txt"]


def test_a_link_to_dev_zero_and_a_fifo_are_named_not_read(folder, tmp_path, forked):
    images = tmp_path / "images"
    shutil.copytree(folder, images)
    (images / "class3" / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(images / "class5" / "pipe.png")
    data = tmp_path / "data"
    refused = forked(data, "ingest", str(images), "--name", "real", timeout=120)
    assert_clean_error(refused, ["class3/zero.png: not a regular file (a character device)",
                                 "class5/pipe.png: not a regular file (a FIFO)"])
    assert _listed(forked, data) == []
    proc = forked(data, "ingest", str(images), "--name", "real", "--skip-bad", timeout=120)
    assert proc.returncode == 0 and Catalog(data / "catalog").manifest("real").rows == 60, proc.stderr[-2000:]


def test_a_file_pillow_fails_on_with_any_exception_is_named_and_skip_bad_leaves_it_out(tmp_path, forked):
    import io

    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    Image.new("L", (8, 8), 7).save(images / "a" / "ok.png")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "IM")  # a PIL "IM" file whose mode is garbled: Pillow raises KeyError
    (images / "a" / "photo.jpg").write_bytes(buf.getvalue().replace(b"RGB image", b"RGB im\x12ge", 1))
    data = tmp_path / "data"
    refused = forked(data, "ingest", str(images), "--name", "real")
    assert_clean_error(refused, ["a/photo.jpg: damaged or unsupported image (Pillow raised KeyError", "--skip-bad"])
    proc = forked(data, "ingest", str(images), "--name", "real", "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped a/photo.jpg: damaged or unsupported image" in proc.stderr
    assert Catalog(data / "catalog").manifest("real").rows == 1


def test_restricted_otherwise_than_the_existing_dataset_is_refused_before_any_file_is_read(ingested, folder, tmp_path,
                                                                                           forked):
    data = tmp_path / "data"
    shutil.copytree(ingested, data)  # holds `real`, not restricted, from these very files
    refused = forked(data, "ingest", str(folder), "--name", "real", "--restricted")
    assert_clean_error(refused, ["'real' exists and is not restricted", "under a new name"])
    assert "already committed" not in refused.stdout
    assert not list((data / "staging").rglob("*.parquet"))  # nothing decoded or staged


def _huge_png(path: Path, side: int) -> None:
    Image.new("1", (side, side), 1).save(path)  # 1 bit per pixel: small to build, huge when decoded


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(ingested, tmp_path, forked):
    big = tmp_path / "big.png"
    _huge_png(big, 12_000)
    data = tmp_path / "data"
    shutil.copytree(ingested, data)  # a data folder to audit against
    proc = _peak_rss(data, "audit", str(big))
    assert_clean_error(proc, [f"{big}: image too large", "12000x12000"])
    assert "DecompressionBombWarning" not in proc.stderr
    assert proc.peak_mb < 1500  # it was 2.8 GB: the pixels were decoded before Pillow's warning
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    _huge_png(images / "a" / "big.png", 12_000)
    Image.new("L", (8, 8)).save(images / "a" / "small.png")
    refused = forked(data, "ingest", str(images), "--name", "other")
    assert_clean_error(refused, ["a/big.png: image too large"])


def _peak_rss(data: Path, *args: str) -> subprocess.CompletedProcess:
    """``synthgen`` in a fresh parent that reports its child's peak RSS (``peak_mb`` on the result)."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
             "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)")
    env = {k: v for k, v in os.environ.items() if k not in ("SYNTHGEN_DATA", "SYNTHGEN_DEBUG")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "flows.cli", "--data-dir", str(data),
                           *args], capture_output=True, text=True, cwd=data.parent, env=env, timeout=600)
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK ")][-1]
    proc.stderr = proc.stderr.replace(peak + "\n", "")
    proc.peak_mb = int(peak.split()[1]) / 1024  # ru_maxrss is in KiB on Linux
    return proc


def test_ingesting_forty_4000_px_pngs_stays_under_1_5_gb(tmp_path):
    images = tmp_path / "images"
    rng = np.random.RandomState(0)
    for c in range(2):
        (images / f"c{c}").mkdir(parents=True)
    for i in range(4):  # four distinct images, ten copies each: what is measured is the decoding
        arr = np.zeros((4000, 4000, 3), np.uint8)
        arr[rng.randint(0, 4000, 200), :, i % 3] = 255
        Image.fromarray(arr).save(images / "c0" / f"{i}.png", compress_level=1)
    for i in range(40):
        src = images / "c0" / f"{i % 4}.png"
        (images / f"c{i % 2}" / f"copy{i}.png").write_bytes(src.read_bytes())
    for i in range(4):
        (images / "c0" / f"{i}.png").unlink()
    data = tmp_path / "data"
    proc = _peak_rss(data, "ingest", str(images), "--name", "big")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Catalog(data / "catalog").manifest("big").rows == 40
    assert proc.peak_mb < 1500, f"peak RSS {proc.peak_mb:.0f} MB"
