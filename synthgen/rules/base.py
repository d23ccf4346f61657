"""What a per-sample rule is: one class, its own part of the spec, one verdict per sample.

A rule reads only its own spec fields (``from_spec`` returns None when the
spec leaves it off) and judges one ``Sample`` at a time, returning a
``Verdict`` (status, reason, evidence) or None to pass the sample on, like a
datatrove filter's (keep, reason). A rule that needs a measurement of the
image declares ``evidence`` columns and fills them in ``measure``; the score
stage measures every sample whether the rule is on or not, so the values are
stored per row and ``rededup`` can apply the rule later from stored data.
A rule is configured by one spec field (``reads``); a rule that adds that
field declares it in ``spec_field``, and ``DedupSpec`` is built from the
listed rules, so a new rule edits no other file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from synthgen.records import Sample


@dataclass(frozen=True)
class Verdict:
    """A rule's decision for one sample: its status, why, and the numbers it used."""

    status: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


class Rule:
    """Base class of per-sample rules (see the module docstring); ``limit`` is the value of ``reads``."""

    reads: ClassVar[str]  # the DedupSpec field this rule is configured by (null turns it off)
    # (type, pydantic Field) of ``reads`` when the rule adds that field to DedupSpec; None: it exists
    spec_field: ClassVar[tuple[Any, Any] | None] = None
    # float32 columns this rule measures on every image (stored in Sample.measures)
    evidence: ClassVar[tuple[str, ...]] = ()

    def __init__(self, limit: Any):
        self.limit = limit

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reads}={self.limit!r})"

    @classmethod
    def from_spec(cls, dedup: Any) -> "Rule | None":
        """The rule configured from a ``DedupSpec``, or None when the spec turns it off."""
        value = getattr(dedup, cls.reads)
        return cls(value) if value is not None else None

    @staticmethod
    def measure(image: Image.Image) -> dict[str, float]:
        """This rule's evidence for one image (keys: ``evidence``)."""
        return {}

    def check(self, sample: Sample) -> Verdict | None:
        """The verdict for ``sample``, or None when the rule does not apply to it."""
        raise NotImplementedError
