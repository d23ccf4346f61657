"""Shared output for benchmarks: a printed table and a JSON file."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def emit(name: str, title: str, rows: list[dict], extra: dict | None = None, path: str | None = None) -> Path:
    """Print ``rows`` as an aligned table and write them with context to JSON."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    widths = {c: max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in cols}
    print(f"\n## {title}\n")
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(cell(r.get(c, "")).ljust(widths[c]) for c in cols) + " |")
    out = Path(path) if path else RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "title": title,
        "when": datetime.now(timezone.utc).isoformat(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "rows": rows,
        **(extra or {}),
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return out


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
