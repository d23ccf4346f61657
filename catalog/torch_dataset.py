"""A torch ``Dataset`` over catalog rows, decoding PNGs lazily."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from synthgen.imaging import open_image, upright


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
        img = upright(open_image(self._images[i].as_py()))  # refused above the pixel limit; as a viewer shows it
        if self.transform is not None:
            x = self.transform(img)
        else:
            arr = np.asarray(img, dtype=np.float32) / 255.0
            x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        label = self._labels[i]
        return x, -1 if label is None else int(label), self._ids[i]


class ShardIterableDataset(torch.utils.data.IterableDataset):
    """Streams a version row group by row group, for sets too large to hold in memory.

    Shards are visited in a seeded random order (reshuffled each epoch via
    ``set_epoch``), a shard's row groups in a seeded order, and rows are
    shuffled within each row group; with several DataLoader workers each
    worker takes every n-th shard, so every row is seen exactly once per
    epoch. Only one row group is in memory at a time, and PNGs are decoded
    lazily, one row at a time. The order is a function of (files, seed,
    epoch) alone: the seeds use a CRC of the shard's file name, not
    ``hash()``, which Python salts per process.
    """

    def __init__(self, files: list[str], status: str = "kept", origin: str | None = None,
                 shuffle: bool = True, seed: int = 0, transform=None):
        self.files, self.status, self.origin = list(files), status, origin
        self.shuffle, self.seed, self.epoch, self.transform = shuffle, seed, 0, transform

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard_order(self) -> list[str]:
        order = list(self.files)
        if self.shuffle:
            np.random.default_rng((self.seed, self.epoch)).shuffle(order)
        return order

    def __iter__(self):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        info = torch.utils.data.get_worker_info()
        shards = self.shard_order()
        if info is not None:
            shards = shards[info.id :: info.num_workers]
        for n, path in enumerate(shards):
            pf = pq.ParquetFile(path)
            key = zlib.crc32(os.path.basename(str(path)).encode())  # content-addressed name: same on every machine
            groups = np.arange(pf.num_row_groups)
            if self.shuffle:
                np.random.default_rng((self.seed, self.epoch, n, key)).shuffle(groups)
            for g in groups:
                t = pf.read_row_group(int(g), columns=["sample_id", "image", "label", "origin", "status"])
                if self.status != "all":
                    t = t.filter(pc.equal(t["status"], self.status))
                if self.origin is not None:
                    t = t.filter(pc.equal(t["origin"], self.origin))
                rows = ImageTableDataset(t, self.transform)
                idx = np.arange(len(rows))
                if self.shuffle:
                    np.random.default_rng((self.seed, self.epoch, n, key, int(g))).shuffle(idx)
                for i in idx:
                    yield rows[int(i)]
