"""Model checks from config files: real saved models pass, broken or mismatched ones name the problem."""

import json
import shutil

import pytest

from synthgen.model_check import ModelCheckError, check_embedder, check_generator, check_job_models
from synthgen.model_files import EMBEDDED
from synthgen.spec import EmbedderSpec, GeneratorSpec, parse_spec
from tests.conftest import small_job
from tests.tiny_clip import build_tiny_clip
from tests.tiny_sd import build_tiny_sd

EMPTY_SAFETENSORS = (2).to_bytes(8, "little") + b"{}"  # a valid file with no tensors


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


def test_shipped_and_saved_models_pass(tiny_sd_dir, tmp_path):
    info = check_job_models(parse_spec(small_job()))
    assert info.kind == "class" and info.num_classes == 10 and info.pipeline_class == "ClassConditionalPipeline"
    text = check_generator(GeneratorSpec(model=str(tiny_sd_dir), scheduler="euler"), "text")
    assert text.kind == "text" and text.pipeline_class == "StableDiffusionPipeline"
    assert check_embedder(EmbedderSpec(model=str(build_tiny_clip(tmp_path / "clip")))) == tmp_path / "clip"


def test_conditioning_must_fit_the_model(tiny_sd_dir):
    with pytest.raises(ModelCheckError, match=r"conditioning.classes: .* text-to-image StableDiffusionPipeline"):
        check_generator(GeneratorSpec(model=str(tiny_sd_dir)), "class", [0])
    with pytest.raises(ModelCheckError, match=r"conditioning.prompts: embedded:digits is a class-conditional"):
        check_generator(GeneratorSpec(), "text")
    with pytest.raises(ModelCheckError, match=r"ids \[10, 11\] out of range; embedded:digits has 10 classes"):
        check_generator(GeneratorSpec(), "class", [0, 11, 10])


def test_incomplete_folders_name_the_missing_part(tiny_sd_dir, tmp_path):
    broken = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, broken)
    shutil.rmtree(broken / "text_encoder")
    with pytest.raises(ModelCheckError, match=r"lists 'text_encoder' .* is missing"):
        check_generator(GeneratorSpec(model=str(broken)), "text")
    shutil.copytree(tiny_sd_dir / "text_encoder", broken / "text_encoder")
    for f in (broken / "vae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelCheckError, match=r"vae has a config but no weights"):
        check_generator(GeneratorSpec(model=str(broken)), "text")
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(ModelCheckError, match=r"model_index.json is not readable JSON"):
        check_generator(GeneratorSpec(model=str(broken)), "text")


def test_dit_class_count_comes_from_the_transformer_config(tmp_path):
    dit = tmp_path / "dit"
    (dit / "transformer").mkdir(parents=True)
    (dit / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline",
                                                      "transformer": ["diffusers", "DiTTransformer2DModel"]}))
    (dit / "transformer" / "config.json").write_text(json.dumps({"num_embeds_ada_norm": 1000}))
    (dit / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(EMPTY_SAFETENSORS)
    assert check_generator(GeneratorSpec(model=str(dit)), "class", [999]).num_classes == 1000
    with pytest.raises(ModelCheckError, match=r"ids \[1000\] out of range"):
        check_generator(GeneratorSpec(model=str(dit)), "class", [1000])


def test_embedder_must_be_an_image_text_model(tmp_path):
    with pytest.raises(ModelCheckError, match="embedder.model: .*digits-ddpm is not a CLIP model folder"):
        check_embedder(EmbedderSpec(model="embedded:digits"))
    text_only = tmp_path / "bert"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (text_only / "model.safetensors").write_bytes(EMPTY_SAFETENSORS)
    with pytest.raises(ModelCheckError, match="is a bert model"):
        check_embedder(EmbedderSpec(model=str(text_only)))
    assert check_embedder(EmbedderSpec()) == EMBEDDED["embedded:digits-clip"]


def test_uncached_hub_id_is_an_error_offline_only(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelCheckError, match="not in the Hugging Face cache"):
        check_generator(GeneratorSpec(model="someorg/not-cached-model"), "text")
    with pytest.raises(ModelCheckError, match="neither a folder nor a valid hub id"):
        check_generator(GeneratorSpec(model="bad name!"), "text")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online, the loader downloads it: nothing to check here
    assert check_generator(GeneratorSpec(model="someorg/not-cached-model"), "text").folder is None


def test_unknown_pipeline_classes_and_sizes_off_the_latent_grid(tiny_sd_dir, tmp_path):
    factor = 2 ** (len(json.loads((tiny_sd_dir / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
    assert check_generator(GeneratorSpec(model=str(tiny_sd_dir), height=8 * factor, width=8 * factor), "text")
    if factor > 1:
        with pytest.raises(ModelCheckError, match=rf"generator.width: {8 * factor + 1} is not a multiple of {factor}"):
            check_generator(GeneratorSpec(model=str(tiny_sd_dir), width=8 * factor + 1), "text")
    odd = tmp_path / "odd"
    shutil.copytree(tiny_sd_dir, odd)
    index = json.loads((odd / "model_index.json").read_text())
    (odd / "model_index.json").write_text(json.dumps({**index, "_class_name": "NoSuchPipeline"}))
    with pytest.raises(ModelCheckError, match="names pipeline 'NoSuchPipeline'"):
        check_generator(GeneratorSpec(model=str(odd)), "text")


def _digits_copy(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(EMBEDDED["embedded:digits"], folder)
    return folder


def test_class_model_sizes_must_halve_through_the_unet():
    """The digits UNet2DModel has 3 levels (2 halvings): 17 px breaks its skip connections in the first batch."""
    assert check_generator(GeneratorSpec(height=20, width=24), "class", [0]).image_size == (20, 24)
    with pytest.raises(ModelCheckError, match=r"generator.height: 17 is not a multiple of 4, the UNet's downsampling"):
        check_generator(GeneratorSpec(height=17), "class", [0])
    assert check_generator(GeneratorSpec(), "class", [0]).image_size == (16, 16)  # the config's sample_size


def test_text_model_default_size_is_latent_size_times_vae_factor(tiny_sd_dir):
    unet = json.loads((tiny_sd_dir / "unet" / "config.json").read_text())
    factor = 2 ** (len(json.loads((tiny_sd_dir / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
    size = unet["sample_size"] * factor
    assert check_generator(GeneratorSpec(model=str(tiny_sd_dir)), "text").image_size == (size, size)


@pytest.mark.parametrize("key, value", [("sample_size", "abc"), ("sample_size", 0), ("in_channels", 1.5),
                                        ("block_out_channels", [32, "x"]), ("num_class_embeds", True)])
def test_config_values_of_the_wrong_type_are_named(tmp_path, key, value):
    folder = _digits_copy(tmp_path)
    config = folder / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), key: value}))
    with pytest.raises(ModelCheckError, match=rf"unet/config.json: '{key}' is .*; it must be"):
        check_generator(GeneratorSpec(model=str(folder)), "class", [0])


def test_watermark_needs_the_models_images_to_be_large_enough():
    small = small_job(output={"dataset": "x", "shard_size": 8, "watermark": {"enabled": True}})
    with pytest.raises(ModelCheckError, match=r"output.watermark: embedded:digits makes 16x16 images"):
        check_job_models(parse_spec(small))
    big = small_job(output={"dataset": "x", "shard_size": 8, "watermark": {"enabled": True}},
                    generator={"height": 256, "width": 256})
    assert check_job_models(parse_spec(big)).image_size == (256, 256)


@pytest.mark.parametrize("data", [b"", b"\x01\x02", bytes(range(256)) * 4, (5).to_bytes(8, "little") + b"[1,2]",
                                  (2).to_bytes(8, "little") + b"{}"[:1] + b"x",
                                  (60).to_bytes(8, "little") + b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
                                  .ljust(60) + b"short"])
def test_damaged_safetensors_are_caught_from_the_header(tmp_path, data):
    folder = _digits_copy(tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(data)
    with pytest.raises(ModelCheckError, match=r"diffusion_pytorch_model.safetensors is not a valid safetensors file"):
        check_generator(GeneratorSpec(model=str(folder)), "class", [0])
    clip = tmp_path / "clip"
    shutil.copytree(EMBEDDED["embedded:digits-clip"], clip)
    (clip / "model.safetensors").write_bytes(data)
    with pytest.raises(ModelCheckError, match=r"embedder.model: .*model.safetensors is not a valid safetensors"):
        check_embedder(EmbedderSpec(model=str(clip)))
