import numpy as np
import pytest

from synthgen.digits import load_digits_uint8, upsample
from synthgen.generators import GeneratorError, load_generator
from synthgen.imaging import array_to_pil, encode_png
from synthgen.memorisation import copy_distance, standardise
from synthgen.plan import make_plan
from synthgen.spec import GeneratorSpec, parse_spec
from tests.conftest import small_job
from tests.tiny_sd import build_tiny_sd


def pngs(arrays):
    return [encode_png(array_to_pil(a)) for a in arrays]


@pytest.fixture(scope="module")
def digits_gen():
    return load_generator(GeneratorSpec(scheduler="dpm++2m", steps=4, batch_size=8), "class", [0, 1, 7])


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def test_embedded_model_loads_through_from_pretrained(digits_gen):
    assert digits_gen.pipeline_class == "ClassConditionalPipeline"
    assert digits_gen.scheduler_name == "DPMSolverMultistepScheduler"
    assert len(digits_gen.weights_sha256) == 64
    assert digits_gen.pipe.labels["seven"] == 7


def test_sample_bytes_do_not_depend_on_batch_company(digits_gen):
    plan = make_plan(parse_spec(small_job(per_class=3)))[:8]
    together = pngs(digits_gen.generate(plan))
    alone = pngs(digits_gen.generate([plan[5]]))
    tail = pngs(digits_gen.generate(plan[6:8]))
    assert alone[0] == together[5]
    assert tail == together[6:8]
    assert len(set(together)) == 8  # different seeds, different images


def test_same_seed_same_image_different_seed_different_image(digits_gen):
    plan = make_plan(parse_spec(small_job(per_class=2)))
    a = digits_gen.generate(plan[:2])
    b = digits_gen.generate(plan[:2])
    assert np.array_equal(a, b)
    assert a.shape == (2, 16, 16, 1) and a.dtype == np.uint8  # quantised on the device


def test_text_to_image_pipeline_from_local_folder(tiny_sd_dir):
    spec = GeneratorSpec(model=str(tiny_sd_dir), scheduler="euler", steps=2, guidance_scale=5.0,
                         height=32, width=32, batch_size=4)
    gen = load_generator(spec, "text")
    assert gen.pipeline_class == "StableDiffusionPipeline"
    assert gen.scheduler_name == "EulerDiscreteScheduler"
    job = small_job(conditioning={"prompts": ["a red cube", "a blue ball"], "negative_prompt": "blurry",
                                  "classes": None})
    plan = make_plan(parse_spec(job))[:3]
    images = gen.generate(plan)
    assert images.shape == (3, 32, 32, 3)
    assert pngs(gen.generate([plan[1]]))[0] == pngs(images)[1]


def test_wrong_model_kind_and_bad_classes_are_clear_errors(tiny_sd_dir, tmp_path):
    with pytest.raises(GeneratorError, match="needs a class-conditional model"):
        load_generator(GeneratorSpec(model=str(tiny_sd_dir)), "class", [0])
    with pytest.raises(GeneratorError, match="needs a text-to-image model"):
        load_generator(GeneratorSpec(), "text")
    with pytest.raises(GeneratorError, match="out of range"):
        load_generator(GeneratorSpec(), "class", [3, 12])
    with pytest.raises(GeneratorError, match="cannot read a diffusers model"):
        load_generator(GeneratorSpec(model=str(tmp_path)), "class", [0])


def record_denoiser_batches(gen) -> list[int]:
    """Batch sizes the real denoiser receives (a forward pre-hook on the pipeline's UNet)."""
    sizes: list[int] = []
    gen.pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(int(args[0].shape[0])))
    return sizes


@pytest.mark.parametrize("n", [1, 3, 8])
def test_denoiser_always_receives_full_batches(n):
    gen = load_generator(GeneratorSpec(scheduler="dpm++2m", steps=3, batch_size=8, guidance_scale=2.0), "class", [0])
    sizes = record_denoiser_batches(gen)
    plan = make_plan(parse_spec(small_job(per_class=3)))
    gen.generate(plan[:n])
    assert sizes == [16] * 3  # 8 rows, doubled for classifier-free guidance, at every one of the 3 steps


def test_text_denoiser_always_receives_full_batches(tiny_sd_dir):
    spec = GeneratorSpec(model=str(tiny_sd_dir), scheduler="euler", steps=2, guidance_scale=1.0,
                         height=32, width=32, batch_size=4)
    gen = load_generator(spec, "text")
    sizes = record_denoiser_batches(gen)
    job = small_job(conditioning={"prompts": ["a red cube", "a blue ball"], "classes": None})
    gen.generate(make_plan(parse_spec(job))[:1])
    assert sizes == [4, 4]  # no guidance: the batch itself, at both steps


def test_negative_prompt_reaches_the_pipeline(tiny_sd_dir):
    spec = GeneratorSpec(model=str(tiny_sd_dir), scheduler="euler", steps=2, guidance_scale=5.0,
                         height=32, width=32, batch_size=2)
    gen = load_generator(spec, "text")
    base = {"prompts": ["a red cube"], "classes": None}
    plain = make_plan(parse_spec(small_job(conditioning=base)))[:1]
    negative = make_plan(parse_spec(small_job(conditioning={**base, "negative_prompt": "blurry"})))[:1]
    assert plain[0].seed == negative[0].seed and negative[0].negative_prompt == "blurry"
    assert not np.array_equal(gen.generate(plain), gen.generate(negative))  # same seed, other negative prompt


def _real_digits(n: int) -> list[np.ndarray]:
    images, _ = load_digits_uint8()
    return [a[..., None] for a in (upsample(images[:n], 16) * 255).round().astype(np.uint8)]


def test_img2img_from_real_images_keeps_samples_independent_of_their_batch(digits_gen):
    gen = digits_gen  # the class pipeline takes init images whether loaded for them or not
    plan = make_plan(parse_spec(small_job(per_class=2)))[:6]
    init = _real_digits(6)
    together = gen.generate(plan, init, strength=0.5)
    assert pngs(gen.generate(plan[2:3], init[2:3], strength=0.5)) == pngs(together)[2:3]
    assert not np.array_equal(together, gen.generate(plan, init[::-1], strength=0.5))  # the start matters

    def dist(images):
        return np.mean([copy_distance(standardise(a[..., 0]), standardise(b[..., 0])) for a, b in zip(images, init)])

    assert dist(gen.generate(plan, init, strength=0.25)) < dist(together) < dist(gen.generate(plan))


def test_text_to_image_model_runs_its_img2img_pipeline(tiny_sd_dir):
    spec = GeneratorSpec(model=str(tiny_sd_dir), scheduler="euler", steps=4, guidance_scale=5.0,
                         height=32, width=32, batch_size=4)
    gen = load_generator(spec, "text", img2img=True)
    assert type(gen.img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert gen.img2img.unet is gen.pipe.unet  # from_pipe: the same modules, not a second copy
    job = small_job(conditioning={"prompts": ["a red cube", "a blue ball"], "classes": None})
    plan = make_plan(parse_spec(job))[:3]
    init = _real_digits(3)  # grey 16 px: converted to RGB at the model's 32 px
    images = gen.generate(plan, init, strength=0.5)
    assert images.shape == (3, 32, 32, 3)
    assert pngs(gen.generate([plan[1]], init[1:2], strength=0.5))[0] == pngs(images)[1]
    assert not np.array_equal(images, gen.generate(plan))
    with pytest.raises(GeneratorError, match="img2img"):
        load_generator(spec, "text").generate(plan, init, strength=0.5)
