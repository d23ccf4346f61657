"""On one GPU: ``synthgen run`` vs a bare compiled denoiser + VAE loop, DiT-XL/2-size and SD1.5-size.

Random weights at the real sizes of ``shared/gpu-anchors`` (DiT-XL/2 at 256
px, an SD1.5-size UNet with its VAE at 512 px), bf16, 50 steps, CFG. For
each model, at the same batch: a bare loop (the denoiser and the VAE
decoder, torch.compile'd, over random latents; timed after a warm-up call,
and with its compile included) and ``synthgen run`` of a job with
``generator.compile: true`` (a subprocess, as a user runs it; its time after
start-up, compile included). Prints a table, writes JSON to ``$OUT`` (or
bench/results/), and installs only the packages it finds missing.

    python bench/gpu/bench_gpu.py            # on a CUDA machine
    python bench/gpu/bench_gpu.py --smoke    # tiny sizes, CPU, eager: checks the script
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
NEEDED = {"diffusers": "diffusers>=0.42", "transformers": "transformers>=4.50", "prefect": "prefect>=3.9,<4",
          "mlflow": "mlflow>=3.17,<3.18", "sentence_transformers": "sentence-transformers>=5.0",
          "faiss": "faiss-cpu>=1.9", "duckdb": "duckdb>=1.1", "dvc": "dvc>=3.50", "typer": "typer>=0.12",
          "filelock": "filelock>=3.13", "s3fs": "s3fs>=2025.2.0", "sklearn": "scikit-learn>=1.4",
          "matplotlib": "matplotlib>=3.8", "boto3": "boto3>=1.36", "accelerate": "accelerate>=1.0"}


def install_missing() -> list[str]:
    """pip-install the project's packages that are not importable (never torch: the machine's build stays)."""
    missing = [req for mod, req in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print("installing:", " ".join(missing), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


def sizes(smoke: bool) -> dict:
    """Model configs: the anchors' real sizes, or tiny ones for --smoke."""
    if smoke:
        return {"steps": 2, "sd_batch": 2, "dit_batch": 2, "sd_px": 64, "images_batches": 1,
                "unet": dict(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, cross_attention_dim=32,
                             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                             up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
                             attention_head_dim=2),
                "text": dict(hidden_size=32, intermediate_size=37, num_attention_heads=2, num_hidden_layers=2),
                "vae": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4),
                "dit": dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, sample_size=4)}
    return {"steps": 50, "sd_batch": 32, "dit_batch": 256, "sd_px": 512, "images_batches": 2,
            "unet": dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                         down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                         up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
                         attention_head_dim=8),
            "text": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
            "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2),
            "dit": dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, sample_size=32)}


def build_models(tmp: Path, cfg: dict) -> tuple[Path, Path]:
    """Random-weight SD (text) and DiT (class) pipelines saved as diffusers folders."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel,
                           DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_sd import write_tokenizer_files

    torch.manual_seed(0)
    (tmp / "tok").mkdir()
    write_tokenizer_files(tmp / "tok")
    tok = CLIPTokenizer.from_pretrained(tmp / "tok", model_max_length=77)
    vae_kw = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  latent_channels=4, **cfg["vae"])
    te = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), max_position_embeddings=77, **cfg["text"]))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    sd = StableDiffusionPipeline(vae=AutoencoderKL(**vae_kw), text_encoder=te, tokenizer=tok,
                                 unet=UNet2DConditionModel(**cfg["unet"]), scheduler=sched, safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    sd.save_pretrained(tmp / "sd15")
    dit = DiTTransformer2DModel(in_channels=4, out_channels=8, patch_size=2, num_embeds_ada_norm=1000, **cfg["dit"])
    DiTPipeline(transformer=dit, vae=AutoencoderKL(**vae_kw), scheduler=DPMSolverMultistepScheduler()) \
        .save_pretrained(tmp / "dit")
    return tmp / "sd15", tmp / "dit"


def bare_loop(path: Path, kind: str, batch: int, cfg: dict, device: str, compile_: bool) -> dict:
    """Denoiser (CFG: the batch doubled) and VAE decode over random latents, as the pipelines do."""
    import torch
    from diffusers import DiffusionPipeline

    dt = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(path, dtype=dt).to(device)
    den = pipe.unet if kind == "text" else pipe.transformer
    decode = pipe.vae.decode
    if compile_:
        den, decode = torch.compile(den, dynamic=False), torch.compile(decode, dynamic=False)
    side = cfg["sd_px"] // 8 if kind == "text" else cfg["dit"]["sample_size"]
    sched = pipe.scheduler
    if kind == "text":
        ctx = torch.randn(2 * batch, 77, pipe.text_encoder.config.hidden_size, device=device, dtype=dt)
    labels = torch.arange(2 * batch, device=device) % 1000

    def once() -> None:
        lat = torch.randn(batch, 4, side, side, device=device, dtype=dt)
        sched.set_timesteps(cfg["steps"], device=device)
        with torch.inference_mode():
            for t in sched.timesteps:
                x = torch.cat([lat, lat])
                if kind == "text":
                    eps = den(x, t, encoder_hidden_states=ctx).sample
                else:
                    eps = den(x, timestep=t.expand(len(x)), class_labels=labels).sample[:, :4]
                cond, uncond = eps.chunk(2)
                lat = sched.step(uncond + 7.5 * (cond - uncond), t, lat).prev_sample
            decode(lat / pipe.vae.config.scaling_factor).sample.float().clamp(-1, 1)
        if device == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    once()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(cfg["images_batches"]):
        once()
    steady = (time.perf_counter() - t) / cfg["images_batches"]
    return {"bare_img_s": batch / steady, "bare_first_batch_s": first}


def flow_run(path: Path, kind: str, batch: int, cfg: dict, device: str, compile_: bool, tmp: Path) -> dict:
    """``synthgen run`` of a job over the same model, batch, steps and guidance."""
    import yaml

    from tests.tiny_clip import build_tiny_clip

    clip = tmp / "clip-b32"
    if not clip.is_dir():
        build_tiny_clip(clip, image_size=224, patch_size=32)
    n = batch * cfg["images_batches"]
    cond = ({"prompts": ["a futuristic cityscape at sunrise"]} if kind == "text"
            else {"classes": [{"id": 207, "name": "golden retriever"}]})
    gen = {"model": str(path), "steps": cfg["steps"], "batch_size": batch, "device": device, "threads": None,
           "compile": compile_, "guidance_scale": 7.5 if kind == "text" else 4.0}
    if kind == "text":
        gen.update(height=cfg["sd_px"], width=cfg["sd_px"])
    spec = {"name": f"gpu-{kind}", "generator": gen, "conditioning": cond, "images_per_condition": n,
            "embedder": {"model": str(clip), "device": device}, "dedup": {"real_dataset": None},
            "output": {"dataset": f"gpu-{kind}", "shard_size": n}}
    spec_path, out = tmp / f"{kind}.yaml", tmp / f"{kind}.json"
    spec_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "flows.cli", "--data-dir", str(tmp / f"data-{kind}"), "run",
                    str(spec_path), "--json", str(out)], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    m = json.loads(out.read_text())["metrics"]
    return {"images": n, "flow_img_s": n / (m["wall_s"] - m["startup_s"]), "flow_startup_s": m["startup_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, eager (checks the script)")
    ap.add_argument("--models", nargs="+", default=["dit", "sd15"], choices=["dit", "sd15"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    installed = [] if args.smoke else install_missing()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = "cpu" if args.smoke else "cuda"
    compile_ = not args.smoke  # inductor on a CPU takes minutes to compile: smoke checks the script, eager
    cfg = sizes(args.smoke)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd_path, dit_path = build_models(tmp, cfg)
        for name in args.models:
            path, kind = (sd_path, "text") if name == "sd15" else (dit_path, "class")
            batch = cfg["sd_batch"] if name == "sd15" else cfg["dit_batch"]
            bare = bare_loop(path, kind, batch, cfg, device, compile_)
            if device == "cuda":
                torch.cuda.empty_cache()
            flow = flow_run(path, kind, batch, cfg, device, compile_, tmp)
            rows.append({"model": name, "batch": batch, "steps": cfg["steps"], **bare, **flow,
                         "flow_over_bare": flow["flow_img_s"] / bare["bare_img_s"]})
            print(rows[-1], flush=True)
    from bench.report import emit

    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke)"
    out = args.json or (str(Path(os.environ["OUT"]) / "gpu_throughput.json") if os.environ.get("OUT") else None)
    emit("gpu_throughput", f"synthgen run vs bare compiled loop on {gpu}", rows,
         {"smoke": args.smoke, "compile": compile_, "installed": installed}, out)


if __name__ == "__main__":
    main()
