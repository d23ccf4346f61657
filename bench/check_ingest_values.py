"""Digests of what an ingest stores, to check that a change to the ingest's speed or memory changed none of it.

Ingests a folder (as ``bench/bench_ingest.py``'s child does: the embedded CLIP on one torch thread, or
``--stub`` zero embeddings) into a scratch catalog and prints sha256 digests of each stored value:
sample ids, ``image_sha256`` column, embeddings (float32 bytes), the guard's ``thumbs.npy``,
``ids.json`` and ``index.faiss``, and the shard files. With ``--expect FILE`` (a JSON this script
printed before, e.g. from the commit before the change) it exits 1 naming every digest that differs.

    python bench/check_ingest_values.py /tmp/ingest-bench/10k --expect bench/results/ingest_values_10k.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def digests(folder: str, stub: bool, workers: int) -> dict:
    """Ingest ``folder`` into a scratch catalog; the digests of what it stored."""
    import torch

    from catalog import Catalog, open_version
    from catalog.guard import guard_dir
    from catalog.ingest import ingest_folder
    from catalog.ingest_decode import EmbedSteps
    from catalog.version import read_rows
    from synthgen.embedder import load_embedder
    from synthgen.spec import EmbedderSpec

    torch.set_num_threads(1)  # as bench_ingest.py: the embeddings' bits may depend on the thread count
    if stub:
        steps, name = EmbedSteps(lambda img: None, lambda items: np.zeros((len(items), 64), np.float32)), "stub"
    else:
        emb = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
        steps, name = EmbedSteps(emb.prepare_image, emb.embed_prepared), emb.name
    work = Path(tempfile.mkdtemp(prefix="check-ingest-"))
    try:
        cat = Catalog(work / "catalog")
        m = ingest_folder(cat, "real", folder, steps, name, staging=work / "staging", workers=workers)
        version = open_version(cat, "real", allow_restricted=True)
        t = read_rows(version, ["sample_id", "image_sha256", "embedding"], "kept", None)
        sha = lambda b: hashlib.sha256(b).hexdigest()
        embeddings = np.stack(t["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        guard = guard_dir(version)
        return {
            "rows": m.rows,
            "sample_id": sha("\n".join(t["sample_id"].to_pylist()).encode()),
            "image_sha256": sha("\n".join(t["image_sha256"].to_pylist()).encode()),
            "embedding": sha(embeddings.tobytes()),
            **{f"guard/{f}": sha((guard / f).read_bytes()) for f in ("thumbs.npy", "ids.json", "index.faiss")},
            "shards": sorted(s.sha256 for s in m.shards),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--stub", action="store_true", help="zero embeddings instead of the CLIP model")
    ap.add_argument("--workers", type=int, default=None, help="decode threads (default: every core)")
    ap.add_argument("--expect", help="a JSON of digests printed before: exit 1 unless every one is equal")
    args = ap.parse_args()
    got = digests(args.folder, args.stub, args.workers)
    print(json.dumps(got, indent=1))
    if args.expect:
        want = json.loads(Path(args.expect).read_text())
        differ = [k for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
        print("differ: " + ", ".join(differ) if differ else f"equal to {args.expect}")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
