"""Build a tiny, random-weight GPT-2 text-generation model offline (for prompt expansion tests).

A byte-level tokenizer with no merges (every byte one token, as in ``tests/tiny_sd.py``) and a
2-layer GPT-2 of width 32, seeded with ``torch.manual_seed(0)``, that writes only letters and spaces:
a real causal language model
that ``transformers.pipeline("text-generation", model=folder)`` loads through
``from_pretrained``. Its text is noise; only the plumbing is real.
"""

from __future__ import annotations

import json
import pathlib

import torch

from synthgen.clip_bytes import bytes_to_unicode


def build_tiny_gpt2(path: str | pathlib.Path) -> pathlib.Path:
    """Save a tiny random GPT-2 and its tokenizer with ``save_pretrained`` into ``path``; returns it."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = GPT2Tokenizer.from_pretrained(path)
    torch.manual_seed(0)
    eos = len(tokenizer) - 1
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=eos, eos_token_id=eos))
    # Zero every token but lowercase letters and the space (the output embedding is tied to the input's): their
    # logits are then 0, and greedy or beam search picks letters, so the tests see readable phrases, not bytes.
    readable = {vocab[c] for c in "abcdefghijklmnopqrstuvwxyz\u0120"}  # \u0120: the byte-level space
    with torch.no_grad():
        for i in set(range(len(tokenizer))) - readable:
            model.transformer.wte.weight[i].zero_()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
