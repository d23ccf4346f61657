"""Reads through the one storage layer (catalog.storage) against bare pathlib reads of the same files.

A local catalog now reads HEAD, dataset.json and manifests through an fsspec
``Storage``; this checks what that costs per call on small files (the
common case: ``Catalog.head`` is called on every read and commit), and what
``verify`` (streamed hashes through the Storage) costs against hashing the
same shard files with ``hashlib`` directly.

    python bench/bench_storage.py [--calls 2000] [--shards 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import emit
from catalog import Catalog, samples_to_table
from catalog.layout import head_key, parse_head
from catalog.manifest import Manifest
from catalog.verify import verify
from tests.conftest import make_samples


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(tmp)
        cat.create("ds", "synthetic")
        for s in range(args.shards):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(200, start=s * 200)))])
        head_file, manifest_file = cat.root / head_key("ds"), cat.manifest_path("ds", args.shards)
        files = [cat.path("ds") / s.file for s in cat.manifest("ds").shards]
        cases = [
            ("HEAD", lambda: cat.head("ds"), lambda: parse_head(head_file.read_bytes())[0], args.calls),
            ("manifest", lambda: cat.manifest("ds", args.shards),
             lambda: Manifest.model_validate_json(manifest_file.read_bytes()), args.calls // 4),
            ("verify (all shards)", lambda: verify(cat, "ds"),
             lambda: [hashlib.sha256(f.read_bytes()).hexdigest() for f in files], 5),
        ]
        rows = []
        for what, layer, bare, n in cases:
            bare(), layer()  # warm the page cache and fsspec's instance cache
            t_layer, t_bare = timed(layer, n), timed(bare, n)
            rows.append({"read": what, "calls": n, "storage_us": t_layer * 1e6, "bare_us": t_bare * 1e6,
                         "ratio": t_layer / t_bare})
    emit("storage", "Reads through catalog.storage vs bare pathlib/hashlib reads (per call)", rows,
         {"shards": args.shards, "rows_per_shard": 200,
          "note": "HEAD/manifest: Catalog (Storage) vs Path.read_bytes + parse; verify also checks the "
                  "chain, footers and id segments, so its ratio is an upper bound on the layer's cost"},
         args.json)


if __name__ == "__main__":
    main()
