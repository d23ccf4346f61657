"""Peak RSS of ``catalog.guard.store_guard`` alone over ``n`` synthetic thumbnails, handed in parts of 16,384
as an ingest hands its staged ones; prints the peak and the digests of the files (to compare two commits).

    python bench/bench_guard_store.py 1000000 /tmp/guard-store   # then delete the folder
"""
import hashlib
import json
import resource
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from catalog.guard import store_guard  # noqa: E402
PART = 16_384  # rows per part, as ``catalog.ingest_stage.staged_in_order`` hands them


def rss_mb() -> int:
    """This process's resident set now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def parts(n: int):
    """(ids, standardised-like thumbnails) for ``n`` rows, a part at a time, the same for every run."""
    for start in range(0, n, PART):
        rows = min(n, start + PART) - start
        thumbs = np.random.default_rng(start).standard_normal((rows, 16, 16), dtype=np.float32)
        yield [f"real-{i:020d}" for i in range(start, start + rows)], thumbs


def main() -> None:
    n, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    # A stand-in version: store_guard only asks it for its folder and its manifest's digest.
    cat = SimpleNamespace(version_dir=lambda name, v: out, manifest_sha256=lambda name, v: "0" * 64)
    version = SimpleNamespace(catalog=cat, name="real", version=1, ref="real@1")
    peak, before = [0], rss_mb()

    def sample() -> None:  # ru_maxrss alone would include the imports' peak
        while True:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    store_guard(version, n, parts(n))
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in sorted((out / "guard").iterdir())
             if f.name != "guard.json"}
    print(json.dumps({"n": n, "rss_before_mb": before, "peak_sampled_mb": peak[0],
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                      "s": round(time.perf_counter() - t0, 1), **files}))


if __name__ == "__main__":
    main()
