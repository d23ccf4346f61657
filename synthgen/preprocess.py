"""CLIP preprocessing and guard thumbnails as tensor ops on a uint8 batch, on any device.

What a CLIP image processor does through PIL, one image at a time (convert
to RGB, resize the shortest edge with bicubic resampling, center crop,
rescale, normalise), here on the whole (n, H, W, C) uint8 batch where the
embedder lives, so on a GPU the pixels go from the generator to the CLIP
tower without a trip through PIL. torch's antialiased bicubic follows PIL's
filter; the result is rounded to uint8 like PIL's, so it differs from the
processor's by at most a grey level or so per pixel (the tests bound the
effect on the embeddings). An image already at the crop size is not
resampled at all, as in the processor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F


@dataclass(frozen=True)
class ClipPreprocess:
    """The numbers of a Hugging Face CLIP image processor, applied to tensors."""

    shortest_edge: int
    crop: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale: float = 1 / 255

    @classmethod
    def from_processor(cls, proc) -> "ClipPreprocess":
        """From a ``CLIPImageProcessor`` (or a ``CLIPProcessor`` holding one)."""
        proc = getattr(proc, "image_processor", proc)
        size = proc.size
        edge = size.get("shortest_edge") or min(size["height"], size["width"])
        crop = proc.crop_size if proc.do_center_crop else {"height": edge, "width": edge}
        return cls(int(edge), (int(crop["height"]), int(crop["width"])), tuple(proc.image_mean),
                   tuple(proc.image_std), float(proc.rescale_factor))

    def pil(self, rgb: Image.Image) -> np.ndarray:
        """One RGB PIL image -> (3, crop_h, crop_w) float32: the processor's PIL path, step for step, with
        none of its per-call overhead (about 0.3 instead of 2 ms per image), so the values are the same."""
        w, h = rgb.size
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        new_h, new_w = (new_long, new_short) if w <= h else (new_short, new_long)
        if (w, h) != (new_w, new_h):
            rgb = rgb.resize((new_w, new_h), Image.BICUBIC, reducing_gap=None)
        ch, cw = self.crop
        top, left = (new_h - ch) // 2, (new_w - cw) // 2
        a = np.asarray(rgb)[top : top + ch, left : left + cw]
        x = (a.astype(np.float64) * self.rescale).astype(np.float32)
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, u8: torch.Tensor) -> torch.Tensor:
        """(n, H, W, C) uint8 -> (n, 3, crop_h, crop_w) float32 pixel values, on ``u8``'s device."""
        x = u8.permute(0, 3, 1, 2)
        if x.shape[1] == 1:  # grey -> RGB, as ``do_convert_rgb`` does
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        size = (new_short, new_long) if h <= w else (new_long, new_short)
        x = x.float()
        if (h, w) != size:
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            x = x.round().clamp(0, 255)  # PIL resamples to uint8
        ch, cw = self.crop
        top, left = (size[0] - ch) // 2, (size[1] - cw) // 2
        x = x[..., top : top + ch, left : left + cw]
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * self.rescale - mean) / std


def to_batch(arrays: list[np.ndarray], device: str | torch.device) -> torch.Tensor:
    """One (n, H, W, C) uint8 tensor on ``device`` from same-sized uint8 arrays (one copy of 1 byte/channel)."""
    return torch.from_numpy(np.stack(arrays)).to(device)


def grey(u8: torch.Tensor) -> torch.Tensor:
    """(n, H, W, C) uint8 -> (n, H, W) uint8 luma, bit-exact with PIL's ``convert("L")`` (ITU-R 601-2)."""
    if u8.shape[-1] == 1:
        return u8[..., 0]
    rgb = u8[..., :3].to(torch.int32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).to(torch.uint8)


def thumbnails(u8: torch.Tensor, size: int) -> np.ndarray:
    """(n, size, size) float32 grey thumbnails (antialiased bilinear, like PIL's), on the host."""
    g = grey(u8)
    if tuple(g.shape[-2:]) != (size, size):
        g = F.interpolate(g[:, None].float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)[:, 0].round().clamp(0, 255)
    return g.float().cpu().numpy()
