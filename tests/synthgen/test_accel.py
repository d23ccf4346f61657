"""The generator's speed options: resolved per device, applied to the pipeline, recorded for regeneration.

torch.compile itself works on this CPU (the embedded UNet compiled and gave
the eager pixels, measured by hand), but its first call took ~90 s on the
two-core machine, so the test checks the wrapping and the records, not a
compiled forward.
"""

import torch

from synthgen import accel
from synthgen.generators import load_generator
from synthgen.records import Sample
from synthgen.runtime import torch_dtype
from synthgen.spec import GeneratorSpec


def test_defaults_are_on_for_cuda_and_off_for_cpu():
    spec = GeneratorSpec()
    assert accel.resolve(spec, "cpu") == {"compile": False, "channels_last": False, "fuse_qkv": False, "sdpa": True}
    assert accel.resolve(spec, "cuda:1") == {"compile": False, "channels_last": True, "fuse_qkv": True, "sdpa": True}
    assert torch_dtype("auto", "cuda") == torch.bfloat16 and torch_dtype("auto", "cpu") == torch.float32


def test_options_are_applied_recorded_and_read_back_for_regeneration():
    spec = GeneratorSpec(steps=2, batch_size=4, compile=True, channels_last=True, fuse_qkv=True)
    gen = load_generator(spec, "class", [0, 1])
    assert isinstance(gen.pipe.unet, torch._dynamo.eval_frame.OptimizedModule)  # compiled lazily, at first call
    weight = next(p for p in gen.pipe.unet.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    # the embedded UNet2DModel has no fused-QKV method: recorded as not applied, not as asked
    assert gen.options == {"compile": True, "channels_last": True, "fuse_qkv": False, "sdpa": True}
    again = GeneratorSpec(steps=2, batch_size=4, **accel.spec_fields(accel.options_json(gen.options)))
    assert accel.resolve(again, "cpu") == {**gen.options, "fuse_qkv": False}
    assert accel.spec_fields(None) == {}


def test_channels_last_gives_the_same_pixels_on_cpu():
    samples = [Sample(f"s{i}", "synthetic", seed=i, class_id=i % 2) for i in range(4)]
    plain = load_generator(GeneratorSpec(steps=2, batch_size=4), "class", [0, 1]).generate(samples)
    cl = load_generator(GeneratorSpec(steps=2, batch_size=4, channels_last=True), "class", [0, 1]).generate(samples)
    assert plain.shape == cl.shape and abs(plain.astype(int) - cl.astype(int)).max() <= 1
