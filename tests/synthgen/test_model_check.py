"""Model checks from config files: real saved models pass, broken or mismatched ones name the problem."""

import json
import shutil

import pytest

from synthgen.model_check import ModelCheckError, check_embedder, check_generator, check_job_models
from synthgen.runtime import EMBEDDED
from synthgen.spec import EmbedderSpec, GeneratorSpec, parse_spec
from tests.conftest import small_job
from tests.tiny_clip import build_tiny_clip
from tests.tiny_sd import build_tiny_sd


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
    (dit / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert check_generator(GeneratorSpec(model=str(dit)), "class", [999]).num_classes == 1000
    with pytest.raises(ModelCheckError, match=r"ids \[1000\] out of range"):
        check_generator(GeneratorSpec(model=str(dit)), "class", [1000])


def test_embedder_must_be_an_image_text_model(tmp_path):
    with pytest.raises(ModelCheckError, match="embedder.model: .*digits-ddpm is not a CLIP model folder"):
        check_embedder(EmbedderSpec(model="embedded:digits"))
    text_only = tmp_path / "bert"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (text_only / "model.safetensors").write_bytes(b"")
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
