"""CLIP's byte-level BPE alphabet, for building small tokenizers offline.

transformers 5 no longer exports ``bytes_to_unicode`` from
``tokenization_clip``; the embedded CLIP's training script and the tests'
tiny models build their vocabularies from this one copy.
"""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode char mapping (256 entries)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
