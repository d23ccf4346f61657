"""A shard's work as a short list of stages over ``list[Sample]``.

``shard_stages`` returns, in order: generate (the denoiser), encode
(quantise, PNG, hash), embed (CLIP image embeddings), guard (closest real
image in pixel space) and score (CLIP alignment with the caption, and each
rule's image measurements). Each stage fills its own fields of the samples
in place and knows nothing about where it runs; the engine decides that
(the first stage on the main thread, the rest behind it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import Callable, Protocol

import numpy as np

from synthgen.embedder import Embedder
from synthgen.generators import Generator
from synthgen.imaging import DEFAULT_PNG_LEVEL, array_to_pil
from synthgen.init_images import InitImages
from synthgen.memorisation import PixelGuard
from synthgen.parallel import encode_pool
from synthgen.png import DEFAULT_PNG_ENCODER, GIL_FREE, PngEncoder, encode_pixels
from synthgen.records import Provenance, Sample
from synthgen.rules import RULES


class Stage(Protocol):
    """One step of a shard's work: fills its fields of every sample of a batch."""

    def __call__(self, samples: list[Sample]) -> None: ...


@dataclass
class Generate:
    """Sample one batch with the generator (``Sample.pixels``); with ``init``, each from its real image."""

    generator: Generator
    init: InitImages | None = None

    def __call__(self, samples: list[Sample]) -> None:
        if self.init is None:
            pixels = self.generator.generate(samples)
        else:  # the real image is chosen from the seed here, in the plan's terms, not by an executor
            pixels = self.generator.generate(samples, self.init.assign(samples), self.init.strength)
        for s, arr in zip(samples, pixels):
            s.pixels = arr


@dataclass
class SourceDistance:
    """Each sample's pixel distance to the real image it started from (``Sample.init_distance``)."""

    init: InitImages

    def __call__(self, samples: list[Sample]) -> None:
        self.init.distances(samples)


@dataclass
class Watermark:
    """Embed each sample's payload (``synthgen.watermark``) in its pixels, before they are encoded and hashed."""

    method: str = "dwtDctSvd"
    strength: int = 72

    def __call__(self, samples: list[Sample]) -> None:
        from synthgen import watermark

        for s in samples:
            s.watermark = watermark.payload(s.sample_id)
            s.pixels = watermark.apply(s.pixels, s.watermark, self.method, self.strength)


@dataclass
class Encode:
    """PNG-encode (``encoder`` at zlib ``level``) and hash each image; attach the run's provenance.

    A GIL-free encoder (``synthgen.png``) runs on the calling worker thread;
    Pillow's, with ``workers`` > 1, in the shared process pool
    (``synthgen.parallel``). The bytes are the same either way.
    """

    provenance: Provenance | None = None
    level: int = DEFAULT_PNG_LEVEL
    workers: int = 1
    encoder: PngEncoder = DEFAULT_PNG_ENCODER

    def __call__(self, samples: list[Sample]) -> None:
        now = datetime.now(timezone.utc)
        arrays = [s.pixels for s in samples]
        pool = None if self.encoder in GIL_FREE else encode_pool(self.workers)
        if pool is None:
            encoded = map(encode_pixels, arrays, repeat(self.level), repeat(self.encoder))
        else:
            chunk = max(1, len(arrays) // (2 * self.workers))  # a few images per message: IPC stays small
            encoded = pool.map(encode_pixels, arrays, repeat(self.level), repeat(self.encoder), chunksize=chunk)
        for s, arr, (png, sha) in zip(samples, arrays, encoded):
            img = array_to_pil(arr)
            s.image, s.png, s.image_sha256 = img, png, sha
            s.width, s.height = img.width, img.height
            s.created_at = now
            s.provenance = self.provenance


@dataclass
class Embed:
    """CLIP image embeddings, one batch at a time, from the uint8 pixels (preprocessed on the embedder's device)."""

    embedder: Embedder

    def __call__(self, samples: list[Sample]) -> None:
        if all(s.pixels is not None and s.pixels.dtype == np.uint8 for s in samples) \
                and len({s.pixels.shape for s in samples}) == 1:
            emb = self.embedder.embed_pixels([s.pixels for s in samples])
        else:  # mixed sizes or no pixels (e.g. rows read back): the PIL images
            emb = self.embedder.embed_images([s.image for s in samples])
        for s, e in zip(samples, emb):
            s.embedding = e


@dataclass
class Guard:
    """Each sample's closest real image in pixel space (the memorisation guard's evidence).

    ``device``: where the batch's thumbnails are made (the generator's; see ``PixelGuard.nearest_pixels``).
    """

    guard: PixelGuard
    device: str = "cpu"

    def __call__(self, samples: list[Sample]) -> None:
        if all(s.pixels is not None and s.pixels.dtype == np.uint8 for s in samples) \
                and len({s.pixels.shape for s in samples}) == 1:
            dists, ids = self.guard.nearest_pixels([s.pixels for s in samples], self.device)
        else:
            dists, ids = self.guard.nearest([s.image for s in samples])
        for s, d, rid in zip(samples, dists, ids):
            s.real_pixel_distance, s.real_pixel_nn_id = d, rid


@dataclass
class Score:
    """CLIP alignment with each sample's caption (when given), and every rule's image measurements.

    Rules are measured whether the spec turns them on or not, so their
    evidence is stored per row and a later ``rededup`` can apply them.
    """

    embedder: Embedder | None = None
    caption: Callable[[Sample], str] | None = None

    def __call__(self, samples: list[Sample]) -> None:
        if self.embedder is not None and self.caption is not None:
            emb = np.stack([s.embedding for s in samples])
            texts = self.embedder.embed_texts([self.caption(s) for s in samples])
            for s, score in zip(samples, np.einsum("nd,nd->n", emb, texts)):
                s.clip_score = float(score)
        for rule in RULES:
            if rule.evidence:
                for s in samples:
                    s.measures.update(rule.measure(s.image))


def shard_stages(
    generator: Generator,
    embedder: Embedder | None = None,
    provenance: Provenance | None = None,
    caption: Callable[[Sample], str] | None = None,
    guard: PixelGuard | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    workers: int = 1,
    watermark: Watermark | None = None,
    png_encoder: PngEncoder | None = None,
    init: InitImages | None = None,
) -> list[Stage]:
    """The stages of one shard, in order: generate, (watermark), encode, embed, guard, (source distance), score.

    ``init``: real-image guidance (each sample starts from a real image of its class).
    ``workers``: how many post-processing workers the engine runs them on (sizes the encode pool).
    ``png_encoder``: by default the one the provenance records (so rows say what made their
    bytes), else ``synthgen.png.DEFAULT_PNG_ENCODER``.
    """
    recorded = provenance.png_encoder if provenance is not None else None
    if png_encoder and recorded and png_encoder != recorded:
        raise ValueError(f"png_encoder {png_encoder!r} differs from the {recorded!r} the provenance records")
    stages: list[Stage] = [Generate(generator, init), *([watermark] if watermark else [])]
    stages.append(Encode(provenance, png_level, workers, png_encoder or recorded or DEFAULT_PNG_ENCODER))
    stages += [Embed(embedder)] if embedder is not None else []
    stages += [Guard(guard, str(getattr(generator, "device", "cpu")))] if guard is not None else []
    stages += [SourceDistance(init)] if init is not None else []
    stages.append(Score(embedder, caption))
    return stages
