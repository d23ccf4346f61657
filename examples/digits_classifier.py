"""A user's classifier for `synthgen sweep --classifier examples.digits_classifier:svc`.

The contract: ``FUNCTION(names)`` is called once with the job's class names
(or prompts), in the spec's order, and returns a function from a list of
PIL images to one predicted name per image. Nothing else is assumed: load
any model here (scikit-learn, torch, a transformers pipeline).

This one is the independent judge of ``bench/bench_quality_sweep.py``: an
RBF SVC trained on scikit-learn's real 8x8 digits (99% on held-out real
digits), applied to images averaged down to 8x8. It knows nothing of the
project's generator or embedder. The demo's classes are the digits 0-9 in
order, so ``names[d]`` is digit ``d``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image


def pixels_8x8(images: list[Image.Image]) -> np.ndarray:
    """(n, 64) in the SVC's 0..16 scale: greyscale, 16x16, 2x2 averaged."""
    x = np.stack([np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), np.float64) / 255.0 for im in images])
    return x.reshape(len(x), 8, 2, 8, 2).mean(axis=(2, 4)).reshape(len(x), 64) * 16.0


def svc(names: list[str]) -> Callable[[list[Image.Image]], list[str]]:
    """An SVC on all 1,797 real 8x8 digits; predicts ``names[digit]``."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    if len(names) != 10:
        raise ValueError(f"the digits classifier knows 10 classes (0-9), the job has {len(names)}")
    d = load_digits()
    model = SVC(gamma=0.001, C=10).fit(d.images.reshape(len(d.images), -1), d.target)
    return lambda images: [names[int(i)] for i in model.predict(pixels_8x8(images))]
