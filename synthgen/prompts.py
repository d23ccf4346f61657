"""Prompt programs: templates with attribute slots, filled in a balanced, seed-derived order.

A condition (a class or a prompt) has one or more templates, e.g.
``"a photo of a {name}, {lighting}, {viewpoint}"``, and the job has
attributes (``lighting: [dawn, noon, dusk]``). Sample ``i`` of a condition
gets one template and one value of each attribute from ``balanced_digits``:
a pure function of (job seed, condition, i), so the plan stays
deterministic and a plan extended past its end continues the same walk.

Balanced, not just random: for every attribute (and the template), each
aligned block of ``n`` consecutive samples of a condition holds every one
of its ``n`` values once, so after any number of samples the counts of its
values differ by at most one. Across attributes the walk covers every
combination once per ``prod(n)`` samples (a mixed-radix walk whose digits
are shifted so that shared factors between radices do not lock attributes
together). A seed-derived permutation of each attribute's values per
condition keeps the order from being the same in every job and class.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from dataclasses import dataclass, field

NAME_SLOT = "name"  # filled with the class name (class jobs) or the prompt (prompt jobs)
TEMPLATE_AXIS = "\x00template"  # the template choice's own permutation key (no attribute can be named so)


def slot_names(template: str) -> list[str]:
    """The ``{slots}`` a template names, in order; ``ValueError`` for a malformed template."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"slot {{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                             "is not a plain {name}; write a literal brace as '{{' or '}}'")
        names.append(field)
    return names


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with its slots filled from ``values``."""
    return template.format(**values)


def _permutation(seed: int, condition_key: str, axis: str, n: int) -> list[int]:
    """A seed-derived order of ``n`` values for one axis of one condition."""
    def rank(v: int) -> bytes:
        return hashlib.sha256(f"{seed}|{condition_key}|{axis}|{v}".encode()).digest()

    return sorted(range(n), key=rank)


def balanced_digits(index: int, radices: list[int]) -> list[int]:
    """Digit ``j`` in ``range(radices[j])`` for sample ``index``: each digit balanced within one at any prefix.

    Digit ``j`` is ``(index + shift) % n_j`` with a shift that is constant on
    aligned blocks of ``n_j`` (so each block is a cyclic permutation: the
    prefix counts differ by at most one). The shift steps through
    ``g = gcd(P, n_j)`` values, one per window of ``lcm(P, n_j)`` samples,
    where ``P`` is the product of the earlier radices: by the Chinese
    remainder theorem each window pairs the earlier digits' combinations
    with one residue class of digit ``j``, and the ``g`` shifts cover the
    rest, so every combination appears once per ``prod(radices)`` samples.
    """
    digits, period = [], 1
    for n in radices:
        g = math.gcd(period, n)
        window = period * n // g
        digits.append((index + (index // window) % g) % n)
        period *= n
    return digits


@dataclass(frozen=True)
class ConditionPrompts:
    """One condition's templates and the text its ``{name}`` slot takes."""

    name: str
    templates: tuple[str, ...]


@dataclass(frozen=True)
class PromptProgram:
    """Which template and attribute values each sample of each condition gets."""

    seed: int
    conditions: dict[str, ConditionPrompts]  # condition key (the plan's) -> its templates
    attributes: dict[str, tuple[str, ...]]
    negative_prompt: str | None = None
    # Each condition's axis permutations, made on first use (a plan slice touches few conditions of many).
    _orders: dict[str, list[list[int]]] = field(default_factory=dict, repr=False, compare=False)

    def choose(self, condition_key: str, index: int) -> dict:
        """The ``Sample`` fields of sample ``index`` of a condition: prompt, template, attribute values."""
        cond = self.conditions[condition_key]
        names = sorted(self.attributes)  # sorted: the digest sorts keys, so order in the YAML must not matter
        axes = [(TEMPLATE_AXIS, len(cond.templates))] + [(a, len(self.attributes[a])) for a in names]
        if condition_key not in self._orders:
            self._orders[condition_key] = [_permutation(self.seed, condition_key, a, n) for a, n in axes]
        digits = balanced_digits(index, [n for _, n in axes])
        picks = [order[d] for order, d in zip(self._orders[condition_key], digits)]
        template = cond.templates[picks[0]]
        chosen = {a: self.attributes[a][p] for a, p in zip(names, picks[1:])}
        return {
            "prompt": fill(template, {NAME_SLOT: cond.name, **chosen}),
            "negative_prompt": self.negative_prompt,
            "prompt_template": template,
            "prompt_attributes": chosen or None,
        }


def attributes_json(attributes: dict[str, str] | None) -> str | None:
    """The stored form of a row's attribute values: compact JSON text with sorted keys (DuckDB: ``->>'key'``)."""
    if not attributes:
        return None
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
