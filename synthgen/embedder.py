"""CLIP image/text embeddings through sentence-transformers.

The embedded digits CLIP ships in Hugging Face CLIP format; a real CLIP
(``clip-ViT-B-32``, or any local folder) is one spec value away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from synthgen.preprocess import ClipPreprocess, to_batch
from synthgen.model_files import resolve_model_path, weights_sha256
from synthgen.runtime import resolve_device
from synthgen.spec import EmbedderSpec


@dataclass
class Embedder:
    """L2-normalised image and text embeddings in one space."""

    model: object  # sentence_transformers.SentenceTransformer
    name: str  # recorded in every row, e.g. 'embedded:digits-clip@1a2b3c4d5e6f'
    batch_size: int = 256
    _text_cache: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.embed_texts(["x"]).shape[1])

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """(n, d) float32, unit length."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        emb = self.model.encode(
            rgb, batch_size=self.batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)

    @cached_property
    def _tower(self) -> tuple[object, ClipPreprocess] | None:
        """(Hugging Face CLIP model, its preprocessing as tensor ops), or None for other model layouts."""
        module = self.model[0] if len(self.model) else None
        clip, proc = getattr(module, "model", None), getattr(module, "processor", None)
        if clip is None or not hasattr(clip, "get_image_features") or proc is None:
            return None
        return clip, ClipPreprocess.from_processor(proc)

    def embed_pixels(self, arrays: list[np.ndarray], tensor_ops: bool | None = None) -> np.ndarray:
        """(n, d) float32, unit length, from same-sized uint8 HWC arrays.

        ``tensor_ops`` (default: when the embedder is on an accelerator):
        preprocess as tensor ops on the embedder's device and feed the CLIP
        image tower directly (``synthgen.preprocess``), with no PIL step. On
        the CPU the model's own PIL processor is as fast at 512 px and faster
        at 1024 (measured 9.8 vs 16.3 ms per image), so the CPU keeps it; a
        model that is not a Hugging Face CLIP always goes through ``embed_images``.
        """
        if not arrays:
            return np.zeros((0, self.dim), dtype=np.float32)
        if tensor_ops is None:
            tensor_ops = self.model.device.type != "cpu"
        if self._tower is None or not tensor_ops:
            return self.embed_images([Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays])
        clip, prep = self._tower
        out = []
        with torch.inference_mode():
            for i in range(0, len(arrays), self.batch_size):
                pixels = prep(to_batch(arrays[i : i + self.batch_size], self.model.device))
                feats = clip.get_image_features(pixel_values=pixels.to(clip.dtype))
                feats = getattr(feats, "pooler_output", feats)  # transformers 5 returns an output object
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def prepare_image(self, img: Image.Image):
        """One image made ready for ``embed_prepared``: the model's own image processor, on the calling thread.

        Splitting the embedding this way lets the per-image preprocessing (PIL resizes, numpy) run on
        the threads that decode, beside the batched forward on the embedder's device; the result is
        what ``embed_images`` computes. A model that is not a Hugging Face CLIP gets the RGB image.
        """
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        if self._tower is None:
            return rgb
        return self._tower[1].pil(rgb)

    def embed_prepared(self, items: list) -> np.ndarray:
        """(n, d) float32, unit length, from ``prepare_image`` results."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._tower is None:
            return self.embed_images(items)
        clip, _ = self._tower
        out = []
        with torch.inference_mode():
            for i in range(0, len(items), self.batch_size):
                pixels = torch.from_numpy(np.stack(items[i : i + self.batch_size])).to(self.model.device, clip.dtype)
                feats = clip.get_image_features(pixel_values=pixels)
                feats = getattr(feats, "pooler_output", feats)  # transformers 5 returns an output object
                out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, d) float32, unit length; repeated texts are cached."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            emb = self.model.encode(
                missing, batch_size=self.batch_size, convert_to_numpy=True,
                normalize_embeddings=True, show_progress_bar=False,
            )
            self._text_cache.update(zip(missing, np.asarray(emb, dtype=np.float32)))
        return np.stack([self._text_cache[t] for t in texts])


def load_embedder(spec: EmbedderSpec) -> Embedder:
    """Load the spec's CLIP model with ``SentenceTransformer(path_or_id)``."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would break the job's own progress display
    path = resolve_model_path(spec.model)
    model = SentenceTransformer(path, device=resolve_device(spec.device))
    name = spec.model
    if Path(path).is_dir():
        # The hash pins the exact weights: two folders with one name differ here.
        name = f"{spec.model}@{weights_sha256(path)[:12]}"
    return Embedder(model=model, name=name, batch_size=spec.batch_size)
