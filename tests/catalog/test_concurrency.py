"""Two real processes committing to one dataset at once never lose a version."""

import subprocess
import sys

from catalog import Catalog, open_version
from catalog.verify import verify
from tests.conftest import REPO

WRITER = """
import sys
from catalog import Catalog, samples_to_table
from tests.conftest import make_samples
cat = Catalog(sys.argv[1])
cat.create("race", "synthetic")
for i in range(int(sys.argv[3])):
    rows = make_samples(2, start=int(sys.argv[2]) * 1000 + i * 2)
    with cat.lock("race"):
        shard = cat.write_shard("race", samples_to_table(rows))
        cat.commit("race", [shard])
"""


def test_two_processes_racing_commits(tmp_path):
    n = 10
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(n)], cwd=REPO)
        for w in (1, 2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    cat = Catalog(tmp_path)
    assert cat.head("race") == 2 * n
    assert verify(cat, "race").ok
    ids = open_version(cat, "race").table(["sample_id"])["sample_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 4 * n  # every commit's rows, none twice
    assert [m.version for m in cat.versions("race")] == list(range(1, 2 * n + 1))


def test_kill_during_commits_leaves_a_readable_catalog(tmp_path):
    import time

    cat = Catalog(tmp_path)
    for delay in (0.05, 0.3, 0.6, 0.9, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(int(delay * 100)), "1000"], cwd=REPO)
        deadline = time.time() + 120
        while not (tmp_path / "race" / "HEAD").exists() and time.time() < deadline:
            time.sleep(0.02)  # wait for the first commit, then kill somewhere inside the loop
        time.sleep(delay)
        proc.kill()
        proc.wait()
        report = verify(cat, "race")
        assert report.ok, report.problems
        head = open_version(cat, "race")
        assert head.table(["sample_id"]).num_rows == sum(s.rows for s in head.manifest.shards)
    assert cat.head("race") >= 1
    cat.cleanup_temp()
    assert not list(tmp_path.rglob(".tmp-*"))
