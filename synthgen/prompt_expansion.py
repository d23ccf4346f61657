"""Optional prompt expansion: a local text-generation model writes more templates, once, into the spec.

Expansion is a step before a job, never part of one: ``expand_spec`` returns
a new spec whose extra templates are written out (each class's
``prompts``, or more ``prompts`` in a prompt job) with a record of the
model that wrote them (``conditioning.prompt_expansion``). Running that
spec needs no text model, so reruns, resumes and offline machines make
the same rows, and its digest covers the prompts themselves.

Each new template is an existing one plus the model's continuation of it
(its slots filled with the first value of each attribute as context), so
it keeps every attribute slot and the program's balance. Decoding is
deterministic: greedy for one continuation per template, beam search
(no sampling) for several.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from synthgen.prompts import NAME_SLOT, fill
from synthgen.model_files import weights_sha256
from synthgen.spec import JobSpec, PromptExpansion, parse_spec

MAX_CHARS = 120  # of one continuation: a phrase, not a paragraph


class ExpansionError(ValueError):
    """The text model cannot be used (not a local folder, not a causal language model)."""


@dataclass
class TextModel:
    """A loaded ``transformers`` text-generation pipeline and what identifies its weights."""

    pipe: object
    model: str
    weights_sha256: str

    def continuations(self, text: str, n: int, max_new_tokens: int) -> list[str]:
        """Up to ``n`` distinct cleaned continuations of ``text`` (greedy for one, beam search for more)."""
        out = self.pipe(text, max_new_tokens=max_new_tokens, do_sample=False, num_beams=n, num_return_sequences=n,
                        return_full_text=False)
        cleaned = [clean(o["generated_text"]) for o in out]
        return list(dict.fromkeys(c for c in cleaned if c))


def clean(text: str) -> str:
    """The first line of a continuation as a phrase: printable, no braces (slots), spaces collapsed."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = "".join(ch for ch in line if ch.isprintable() and ch not in "{}\ufffd")
    return re.sub(r"\s+", " ", line).strip(" ,.;:")[:MAX_CHARS].strip()


def load_text_model(path: str | Path) -> TextModel:
    """A local folder saved with ``save_pretrained`` as a ``pipeline("text-generation")`` on the CPU."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ExpansionError(f"--model {path}: not a local model folder (no config.json); give a folder saved "
                             "with save_pretrained (expansion never downloads)")
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        pipe = pipeline("text-generation", model=str(folder), device="cpu")
    except (OSError, ValueError, KeyError) as exc:
        raise ExpansionError(f"--model {path}: cannot load a text-generation model: {exc}") from None
    return TextModel(pipe, str(path), weights_sha256(folder))


def expand_spec(spec: JobSpec, model: TextModel, per_template: int = 1, max_new_tokens: int = 16) -> JobSpec:
    """``spec`` with ``per_template`` more templates written from each of its templates, and the record of it."""
    cond = spec.conditioning
    if cond.classes is not None and not cond.programmed:
        raise ExpansionError("a class job is expanded from its templates: give conditioning.prompt_template or "
                             "classes[].prompts (and a text-to-image model)")
    data = spec.model_dump(mode="json")
    first = {a: values[0] for a, values in (cond.attributes or {}).items()}
    added = 0

    def more(name: str, template: str, prefix: str = "") -> list[str]:
        nonlocal added
        # Without a program a prompt is plain text (a brace in it is literal), so it is its own context.
        context = fill(template, {NAME_SLOT: name, **first}) if cond.programmed else template
        new = [f"{prefix or template}, {c}" for c in model.continuations(context, per_template, max_new_tokens)]
        added += len(new)
        return new

    if cond.classes is not None:
        for c, (name, templates) in zip(data["conditioning"]["classes"], cond.templates()):
            c["prompts"] = list(dict.fromkeys(templates + [t for tmpl in templates for t in more(name, tmpl)]))
    else:  # a prompt job: the new texts are new prompts (conditions), each written from one
        prompts = cond.prompts or []
        extra = [t for (name, [tmpl]), p in zip(cond.templates(), prompts) for t in more(name, tmpl, p)]
        data["conditioning"]["prompts"] = list(dict.fromkeys(prompts + extra))
    data["conditioning"]["prompt_expansion"] = PromptExpansion(
        model=model.model, weights_sha256=model.weights_sha256, per_template=per_template,
        max_new_tokens=max_new_tokens, added=added).model_dump()
    return parse_spec(data, source="expanded spec")
