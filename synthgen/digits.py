"""scikit-learn's bundled handwritten digits: the offline demo's real data.

1,797 real 8x8 grayscale images in 10 classes ship inside scikit-learn, so
the demo, the embedded models' training scripts and the benchmarks all use
them without a download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)


def caption(class_name: str) -> str:
    """The caption used for a digit class, e.g. 'a handwritten digit seven'."""
    return f"a handwritten digit {class_name}"


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """Real digits as (N, 8, 8) uint8 in 0..255 and (N,) int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.round(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64)


def upsample(images_u8: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, h, w) uint8 images to (N, size, size) float in [0, 1]."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images_u8).float().unsqueeze(1) / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.squeeze(1).clamp(0, 1).numpy()


def digits_tensor(size: int = 16):
    """Real digits as a float tensor (N, 1, size, size) in [-1, 1] and labels."""
    import torch

    images, labels = load_digits_uint8()
    x = torch.from_numpy(upsample(images, size)).unsqueeze(1)
    return x * 2 - 1, torch.from_numpy(labels)


def export_image_folder(out_dir: str | Path, size: int = 16) -> Path:
    """Write the real digits as PNGs in class sub-folders (``seven/0007.png``).

    This is the layout ``synthgen ingest`` reads for any user's image folder,
    so the demo's real dataset goes through the same command.
    """
    from PIL import Image

    out = Path(out_dir)
    images, labels = load_digits_uint8()
    up = (upsample(images, size) * 255).round().astype(np.uint8)
    for i, (img, y) in enumerate(zip(up, labels)):
        folder = out / CLASS_NAMES[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / f"{i:04d}.png")
    return out
