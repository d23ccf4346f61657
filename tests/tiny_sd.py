"""Build a tiny, random-weight Stable Diffusion text-to-image pipeline offline.

Why this exists: tests need a real diffusers text-to-image pipeline (one that
goes through ``AutoPipelineForText2Image.from_pretrained`` and the real
denoising loop, schedulers, VAE decode and PIL conversion), but test machines
have no network and must never download models.  This module constructs every
component (UNet, VAE, CLIP text encoder, CLIP tokenizer, scheduler) from
scratch with a handful of parameters, seeded with ``torch.manual_seed(0)`` so
the weights are deterministic, and saves it in diffusers format.  The saved
folder is well under 2 MB and generating 32x32 images takes a fraction of a
second on one CPU thread.  The images are noise, of course: only the plumbing
is real.

Run ``python tests/tiny_sd.py`` to build into a temporary directory and run
the self-checks (reload, determinism, batch-vs-alone equality, scheduler swap).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from synthgen.clip_bytes import bytes_to_unicode  # noqa: E402

_MAX_LENGTH = 77


def write_tokenizer_files(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write a minimal byte-level CLIP vocab.json / merges.txt (no merges).

    Every byte maps to one token (plus a ``</w>`` end-of-word variant), so any
    text tokenizes without unknowns; words just become one token per char.
    """
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    vocab_file = directory / "vocab.json"
    merges_file = directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab_file, merges_file


def build_tiny_sd(path: str | pathlib.Path, vae_levels: int = 2) -> pathlib.Path:
    """Build a tiny random Stable Diffusion pipeline and save it to ``path``.

    ``vae_levels=4`` gives SD's 8x VAE (512-px images from 64x64 latents) at toy width.

    The pipeline is a ``StableDiffusionPipeline`` with a 2-level UNet
    (channels 8/16, sample_size 16, cross-attention dim 32), an AutoencoderKL
    with channels 8/16 and 4 latent channels (one downsampling, so
    ``vae_scale_factor`` is 2 and 32x32 images use 16x16 latents), a
    2-layer CLIP text encoder of width 32, a byte-level CLIP tokenizer with no
    merges (514 tokens, max length 77) and a DDIM scheduler with the standard
    SD v1 config.  No safety checker or feature extractor.  Weights come from
    ``torch.manual_seed(0)``, so two builds give identical files.  It is saved
    with ``save_pretrained(path, safe_serialization=True)`` and loads back
    with ``AutoPipelineForText2Image.from_pretrained(path)``.

    Returns ``path`` as a ``pathlib.Path``.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,  # legacy name: this is the number of heads
        norm_num_groups=4,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8,) + (16,) * (vae_levels - 1),
        down_block_types=("DownEncoderBlock2D",) * vae_levels,
        up_block_types=("UpDecoderBlock2D",) * vae_levels,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    )

    # Load the tokenizer from real vocab.json/merges.txt files (the way
    # hub checkpoints ship them).  Note: in transformers 5 the constructor's
    # keyword args are ``vocab``/``merges`` (not ``vocab_file``), and unknown
    # keywords are silently ignored, leaving a 3-token vocab.
    with tempfile.TemporaryDirectory() as tok_dir:
        write_tokenizer_files(pathlib.Path(tok_dir))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=_MAX_LENGTH)
    vocab_size = len(tokenizer)
    assert vocab_size == 2 * 256 + 2, vocab_size

    torch.manual_seed(0)
    text_config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=_MAX_LENGTH,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)

    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _folder_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _main() -> None:
    import time

    import numpy as np
    from diffusers import AutoPipelineForText2Image, DPMSolverMultistepScheduler
    from diffusers.utils import logging as dlogging

    torch.set_num_threads(1)
    dlogging.disable_progress_bar()

    def gens(*seeds: int) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    def run(pipe, prompts, negs, seeds):
        out = pipe(
            prompt=prompts,
            negative_prompt=negs,
            num_inference_steps=2,
            guidance_scale=5.0,
            height=32,
            width=32,
            generator=gens(*seeds),
            output_type="pil",
        )
        return [np.asarray(im) for im in out.images], out.images

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_tiny_sd(pathlib.Path(tmp) / "tiny-sd")
        t_build = time.perf_counter() - t0
        size = _folder_size(path)
        print(f"build+save: {t_build:.2f}s  folder size: {size / 1e6:.3f} MB")
        for p in sorted(path.rglob("*")):
            if p.is_file():
                print(f"  {p.relative_to(path)}  {p.stat().st_size} B")
        assert size < 2_000_000, size

        t0 = time.perf_counter()
        pipe = AutoPipelineForText2Image.from_pretrained(path)
        pipe.set_progress_bar_config(disable=True)
        assert len(pipe.tokenizer) == 514, len(pipe.tokenizer)
        print(f"load: {time.perf_counter() - t0:.2f}s  ({type(pipe).__name__}, "
              f"{type(pipe.tokenizer).__name__}, {type(pipe.scheduler).__name__})")

        prompts = ["a red cube", "a blue ball"]
        negs = ["blurry", "blurry"]

        t0 = time.perf_counter()
        arrs1, images = run(pipe, prompts, negs, (1, 2))
        t_first = time.perf_counter() - t0
        print(f"batch of 2, first call: {t_first:.3f}s")
        assert len(images) == 2
        assert all(im.size == (32, 32) for im in images), [im.size for im in images]
        assert t_first < 5.0, t_first

        t0 = time.perf_counter()
        arrs2, _ = run(pipe, prompts, negs, (1, 2))
        print(f"batch of 2, second call: {time.perf_counter() - t0:.3f}s")
        rerun_same = all(np.array_equal(a, b) for a, b in zip(arrs1, arrs2))
        print(f"rerun identical: {rerun_same}")
        assert rerun_same
        assert not np.array_equal(arrs1[0], arrs1[1]), "different seeds gave same image"

        alone0, _ = run(pipe, prompts[:1], negs[:1], (1,))
        alone1, _ = run(pipe, prompts[1:], negs[1:], (2,))
        for i, alone in enumerate((alone0[0], alone1[0])):
            diff = np.abs(alone.astype(int) - arrs1[i].astype(int))
            print(f"image {i} alone vs batch: bit-identical={bool(diff.max() == 0)} "
                  f"max|diff|={diff.max()} pixels differing={int((diff > 0).sum())}")

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        t0 = time.perf_counter()
        arrs3, images3 = run(pipe, prompts, negs, (1, 2))
        print(f"DPMSolverMultistepScheduler batch of 2: {time.perf_counter() - t0:.3f}s, "
              f"sizes {[im.size for im in images3]}")
        assert all(im.size == (32, 32) for im in images3)

        path2 = build_tiny_sd(pathlib.Path(tmp) / "tiny-sd-2")
        same_weights = all(
            (path / f).read_bytes() == (path2 / f).read_bytes()
            for f in ("unet/diffusion_pytorch_model.safetensors",
                      "vae/diffusion_pytorch_model.safetensors",
                      "text_encoder/model.safetensors")
        )
        print(f"second build has identical weight files: {same_weights}")
        assert same_weights
    print("all checks passed")


if __name__ == "__main__":
    _main()
