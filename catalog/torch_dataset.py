"""A torch ``Dataset`` over catalog rows, decoding PNGs lazily."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset


class ImageTableDataset(Dataset):
    """Yields ``(image, label, sample_id)``; image is a float tensor (C, H, W) in [0, 1].

    Pass ``transform`` (PIL image -> tensor) to replace the default conversion.
    Rows without a class label (text prompts) get label -1.
    """

    def __init__(self, table: pa.Table, transform=None):
        self._images = table.column("image").combine_chunks().field("bytes")
        self._labels = table.column("label").to_pylist()
        self._ids = table.column("sample_id").to_pylist()
        self._origins = table.column("origin").to_pylist() if "origin" in table.column_names else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self._ids)

    def origin(self, i: int) -> str | None:
        return self._origins[i] if self._origins else None

    def __getitem__(self, i: int):
        img = Image.open(io.BytesIO(self._images[i].as_py()))
        if self.transform is not None:
            x = self.transform(img)
        else:
            arr = np.asarray(img, dtype=np.float32) / 255.0
            x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        label = self._labels[i]
        return x, -1 if label is None else int(label), self._ids[i]
