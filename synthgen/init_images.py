"""Real-image guidance: which real image each sample starts from, and how far it stays from it.

An ``InitImages`` holds the real rows a job may start from, grouped by class
name, and picks one per sample from the sample's seed alone (a hash of the
seed, modulo the class's rows in sample-id order), so the choice is the same
whatever the batch, shard or worker. Class-conditioned samples draw from the
real rows whose class *name* (``label_name``) is theirs; prompted samples from
the class their prompt is mapped to, or from the whole set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from synthgen.imaging import decode
from synthgen.memorisation import THUMB, copy_distances, standardise
from synthgen.records import Sample

WHOLE_SET = ""  # the pool key of prompts with no mapped class


def pick(seed: int, n: int) -> int:
    """Which of ``n`` candidates a sample with ``seed`` starts from (independent of its noise)."""
    h = hashlib.sha256(f"init-image|{seed}".encode()).digest()
    return int.from_bytes(h[:8], "big") % n


@dataclass
class InitImages:
    """The real rows a job starts from: ``pools`` class name -> ids (sorted), ``png`` id -> image bytes.

    ``prompt_classes``: prompt -> class name (prompted jobs); others draw from the whole set.
    """

    dataset: str
    version: int
    strength: float
    pools: dict[str, list[str]]
    png: dict[str, bytes]
    prompt_classes: dict[str, str] = field(default_factory=dict)
    _thumbs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def pool_of(self, s: Sample) -> str:
        """The pool key of a sample: its class name, its prompt's mapped class, or the whole set."""
        if s.class_name is not None:
            return s.class_name
        return self.prompt_classes.get(s.prompt or "", WHOLE_SET)

    def choose(self, s: Sample) -> str:
        """The real sample id ``s`` starts from."""
        pool = self.pools.get(self.pool_of(s))
        if not pool:
            raise ValueError(f"{self.dataset}@{self.version} has no rows of class {self.pool_of(s)!r}")
        return pool[pick(int(s.seed or 0), len(pool))]

    def assign(self, samples: list[Sample]) -> list[np.ndarray]:
        """Set each sample's ``init_image_id``; its real image as a uint8 (H, W, C) array."""
        out = []
        for s in samples:
            s.init_image_id = self.choose(s)
            arr = np.asarray(decode(self.png[s.init_image_id]))
            out.append(arr[..., None] if arr.ndim == 2 else arr)
        return out

    def thumb(self, real_id: str) -> np.ndarray:
        """The guard's standardised thumbnail of a real image (computed once per id)."""
        if real_id not in self._thumbs:
            self._thumbs[real_id] = standardise(decode(self.png[real_id]), THUMB)
        return self._thumbs[real_id]

    def distances(self, samples: list[Sample]) -> None:
        """Each sample's ``init_distance``: the guard's pixel distance to its own init image."""
        for s in samples:
            if s.init_image_id is not None and s.image is not None:
                q = standardise(s.image, THUMB)
                s.init_distance = float(copy_distances(q, self.thumb(s.init_image_id)[None])[0])
