"""A tiny random-weight CLIP in Hugging Face format, built offline for tests.

Used where a test needs a *second* embedder (to check that the spec chooses
the embedder and that rows embedded by another model are re-embedded).
Loaded through ``SentenceTransformer(dir)`` like any real CLIP.
"""

from __future__ import annotations

import pathlib
import tempfile

import torch

from tests.tiny_sd import write_tokenizer_files


def build_tiny_clip(path: str | pathlib.Path, image_size: int = 16, patch_size: int = 4) -> pathlib.Path:
    """Build, save (transformers + sentence-transformers files) and return ``path``.

    ``image_size=224, patch_size=32`` gives a ViT-B/32-shaped input path (49 patches) at toy width.
    """
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_tokenizer_files(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=32)
        torch.manual_seed(0)
        config = CLIPConfig(
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            ),
            vision_config=dict(
                image_size=image_size, patch_size=patch_size, hidden_size=32, intermediate_size=37,
                num_hidden_layers=1, num_attention_heads=2,
            ),
            projection_dim=16,
        )
        model = CLIPModel(config)
        image_processor = CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        hf_dir = tmp / "hf"
        model.save_pretrained(hf_dir, safe_serialization=True)
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(hf_dir)
        SentenceTransformer(str(hf_dir), device="cpu").save(str(path))
    return path
