"""Run ``python -m flows.cli`` as a user does: a real process, from outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def synthgen(data: Path, *args: str, cwd: Path | None = None, timeout: float = 300,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """``synthgen --data-dir DATA ARGS...`` in a subprocess; stdout and stderr captured as text."""
    base = {k: v for k, v in os.environ.items() if k not in ("SYNTHGEN_DATA", "SYNTHGEN_DEBUG")}
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "--data-dir", str(data), *args], capture_output=True, text=True,
        cwd=cwd or data.parent, env={**base, **(env or {})}, timeout=timeout,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, names: list[str], code: int = 2) -> None:
    """Exit ``code``, one ``error:`` message naming each of ``names``, and no traceback anywhere."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == code, both[-3000:]
    assert "Traceback" not in both and 'File "' not in both, both[-3000:]
    message = " ".join(proc.stderr.split())  # names are checked across any line breaks
    assert "error:" in message or "Error" in message, both[-3000:]
    for name in names:
        assert " ".join(name.split()) in message, f"{name!r} not named in: {message[-2000:]}"


def seed_data(root: Path) -> tuple[Path, Path]:
    """A data folder with a real dataset `real` (20 digits, no embeddings) and a synthetic `synth` (6 rows).

    Returns (data folder, the image folder `real` was ingested from). No model is loaded.
    """
    from catalog import Catalog, ingest_folder, samples_to_table
    from synthgen.digits import export_image_folder
    from tests.conftest import make_samples

    good = export_image_folder(root / "good")
    for folder in good.iterdir():
        for f in sorted(folder.glob("*.png"))[2:]:
            f.unlink()
    data = root / "seed"
    cat = Catalog(data / "catalog")
    ingest_folder(cat, "real", good)
    cat.create("synth", "synthetic")
    cat.commit("synth", [cat.write_shard("synth", samples_to_table(make_samples(6), embedding_model="m"))],
               embedding_model="m")
    return data, good
