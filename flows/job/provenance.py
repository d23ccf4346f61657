"""What every sample of one run shares, gathered once per shard."""

from __future__ import annotations

from catalog import RunRef
from synthgen import __version__
from synthgen.accel import options_json
from synthgen.embedder import Embedder
from synthgen.generators import Generator
from synthgen.init_images import InitImages
from synthgen.records import Provenance
from synthgen.runtime import code_commit, library_version
from synthgen.spec import JobSpec


def provenance_for(spec: JobSpec, gen: Generator, emb: Embedder, runs: RunRef,
                   init: InitImages | None = None) -> Provenance:
    """The fields every sample of this run shares (``init``: the real rows it starts from, if any)."""
    return Provenance(
        job_name=spec.name,
        job_digest=spec.digest(),
        model_id=gen.model_id,
        model_weights_sha256=gen.weights_sha256,
        pipeline_class=gen.pipeline_class,
        scheduler=gen.scheduler_name,
        scheduler_config=gen.scheduler_config,
        num_inference_steps=spec.generator.steps,
        guidance_scale=spec.generator.guidance_scale,
        batch_size=spec.generator.batch_size,
        dtype=str(gen.dtype).removeprefix("torch."),
        device=gen.device,
        torch_version=library_version("torch"),
        diffusers_version=library_version("diffusers"),
        synthgen_version=__version__,
        code_commit=code_commit(),
        embedding_model=emb.name,
        dedup_threshold=spec.dedup.threshold,
        real_threshold=spec.dedup.real_threshold,
        pixel_threshold=spec.dedup.pixel_threshold if spec.dedup.real_dataset else None,
        real_dataset=spec.dedup.real_dataset,
        prefect_flow_run_id=runs.prefect_flow_run_id,
        mlflow_run_id=runs.mlflow_run_id,
        png_compress_level=spec.output.png_compress_level,
        png_encoder=spec.output.png_encoder,
        generator_options=options_json(gen.options),
        watermark_method=(f"{spec.output.watermark.method}:{spec.output.watermark.strength}"
                          if spec.output.watermark.enabled else None),
        init_dataset=init.dataset if init else None,
        init_version=init.version if init else None,
        init_strength=init.strength if init else None,
    )
