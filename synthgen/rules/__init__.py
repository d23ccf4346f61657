"""The per-sample rules, in the order they are tried: the first verdict wins.

This list is the one place a new rule is registered; ``DedupSpec`` takes
the rules' spec fields and the catalog schema their evidence columns from it.
"""

from __future__ import annotations

from typing import Any

from synthgen.rules.alignment import LowAlignment
from synthgen.rules.base import Rule, Verdict
from synthgen.rules.degenerate import Degenerate
from synthgen.rules.pixel_copy import PixelRealCopy
from synthgen.rules.real_copy import ClipRealCopy
from synthgen.rules.source_copy import SourceCopy

RULES: tuple[type[Rule], ...] = (ClipRealCopy, PixelRealCopy, SourceCopy, LowAlignment, Degenerate)


def build_rules(dedup: Any) -> list[Rule]:
    """The rules a ``DedupSpec`` turns on, in ``RULES`` order."""
    return [r for r in (cls.from_spec(dedup) for cls in RULES) if r is not None]


def evidence_columns() -> list[str]:
    """Every rule's per-row evidence columns, in ``RULES`` order."""
    return [name for cls in RULES for name in cls.evidence]


__all__ = ["RULES", "Rule", "Verdict", "build_rules", "evidence_columns"]
