"""Trace an image file back to the sample it came from: credentials, watermark, metadata, pixel hash, CLIP.

What ``synthgen audit FILE`` and the browser's upload box (``flows.ui``) both
run. Each way of matching is tried from the most to the least certain; what
was found is said through ``say`` (one line each), so the caller decides
where the lines go (a console, a web page).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PIL import Image

from catalog import RestrictedError, audit as run_audit
from catalog.audit import AuditRecord, image_of
from catalog.store import Catalog
from catalog.trace import by_embedding, by_pixel_hash, by_watermark
from flows.outputs.credentials import LOSSY, describe_encoding, read_credentials
from flows.outputs.export import encode_jpeg
from synthgen.imaging import ImageReadError, decode, pixel_sha256, png_text, read_image_file
from synthgen.watermark import BITS

Say = Callable[[str], None]


class NoMatch(ValueError):
    """The file matched no row by any method; the message says why."""


def trace_file(cat: Catalog, path: Path, load_embedder: Callable[[], object], say: Say,
               label: str | None = None, allow_restricted: bool = False) -> str:
    """The sample id ``path``'s image came from; how it was matched is said through ``say``.

    ``load_embedder``: returns the CLIP embedder (with ``embed_images`` and
    ``name``); called only when the cheap ways to match have failed.
    ``label``: how the file is named in the lines (default: its path).
    ``allow_restricted``: search restricted datasets too; without it they are
    not searched at all, so a restricted match reads as a miss (no membership oracle).
    Raises ``ImageReadError`` for a file that is not an image, ``NoMatch``
    when nothing in the catalog matches.
    """
    name = label or str(path)
    try:
        data, img = read_image_file(path)
    except ImageReadError as exc:
        raise ImageReadError(f"{str(exc).replace(str(path), name)}; audit takes a sample id or an image file") from None
    sha = pixel_sha256(img)
    found = credentials(name, data, img, sha, cat, say, allow_restricted)
    if found:
        return found
    mark = by_watermark(cat, img, allow_restricted)
    if mark is not None:
        say(f"{name}: watermark payload -> {mark.sample_id} in {mark.dataset} "
            f"({round((1 - mark.similarity) * BITS)} of {BITS} bits off; confidence {mark.confidence})")
        return mark.sample_id
    meta = png_text(img)
    exact = by_pixel_hash(cat, sha, allow_restricted)
    if meta.get("sample_id") and (not exact or exact[0].sample_id == meta["sample_id"]):
        verified = "pixels match the catalog" if exact else "pixels do NOT match the catalog row"
        say(f"{name}: provenance chunk names sample {meta['sample_id']} ({verified})")
        return meta["sample_id"]
    if exact:
        say(f"{name}: exact pixel match (sha256) -> {exact[0].sample_id} in {exact[0].dataset}")
        return exact[0].sample_id
    emb = load_embedder()
    match = by_embedding(cat, emb.embed_images([img])[0], emb.name, image=img, allow_restricted=allow_restricted)
    if match is None:
        raise NoMatch(f"{name}: no exact match and no dataset embedded with {emb.name}")
    margin = f", {match.margin:.3f} closer than the runner-up" if match.margin is not None else ""
    say(f"{name}: no exact match; closest by CLIP then pixels is {match.sample_id} in {match.dataset} "
        f"(cosine {match.similarity:.4f}; pixel distance {match.pixel_distance:.3f}{margin}; "
        f"confidence {match.confidence})")
    if match.same_pixels:
        say(f"  rows with the same pixels: {', '.join(match.same_pixels)}")
    return match.sample_id


def credentials(name: str, data: bytes, img, sha: str, cat: Catalog, say: Say,
                allow_restricted: bool = False) -> str | None:
    """Read and validate the file's C2PA manifest; the sample it names when valid and consistent with the catalog.

    A PNG's pixels must hash to the claim's ``image_sha256``. A JPEG's cannot
    (it is a lossy derivative): c2pa's hard binding proves the file is the
    one that was signed, the claim's sample and pixel hash are checked
    against the catalog row, and the row re-encoded at the claimed quality
    must give the file's pixels.
    """
    cred = read_credentials(data, Image.MIME.get(img.format or "", "image/png"))  # by content, not name
    if cred is None:
        say(f"{name}: no content credentials; tracing by watermark, metadata, pixels, CLIP")
        return None
    trust = "trusted" if cred.trusted else "untrusted signer"
    if not cred.valid:
        say(f"{name}: content credentials FAILED validation ({', '.join(cred.failures) or cred.state}); "
            f"signed by {cred.signer}; the file was altered after signing; tracing it like an unsigned copy")
        return None
    sid, lossy = cred.claim.get("sample_id"), cred.claim.get("encoding") in LOSSY
    say(f"{name}: content credentials valid ({trust}: {cred.signer}); "
        f"{'synthetic (trainedAlgorithmicMedia)' if cred.synthetic else 'no synthetic claim'}; "
        f"claims sample {sid} of {cred.claim.get('dataset')}")
    if lossy:
        say(f"  a lossy derivative ({describe_encoding(cred.claim)}) of the row's pixels; the signature binds "
            "this file, so it is unchanged since export")
    try:  # a claim naming a restricted row is checked only with the flag: the answer would reveal the row
        records = run_audit(cat, sid, allow_restricted) if sid else []
    except RestrictedError:
        records = []
    rows = [r.row for r in records]
    mismatch = [] if rows else [f"no sample {sid!r} in the catalog"]
    if rows and rows[0].get("image_sha256") != cred.claim.get("image_sha256"):
        mismatch.append("image_sha256 in the manifest differs from the catalog row")
    if not lossy and cred.claim.get("image_sha256") != sha:
        mismatch.append("the file's pixels differ from the manifest's image_sha256")
    if lossy and not mismatch:
        mismatch += reencoded_mismatch(records[0], cred.claim, sha)
    checked = "sample, pixel hash, re-encoded pixels" if lossy else "sample and pixel hash"
    say(f"  matches the catalog row ({checked})" if not mismatch else "  MISMATCH: " + "; ".join(mismatch))
    return sid if rows else None


def reencoded_mismatch(record: AuditRecord, claim: dict, sha: str) -> list[str]:
    """[] when the claimed row, re-encoded as the claim says, decodes to the file's pixels; else why not."""
    if not isinstance(claim.get("quality"), int):
        return ["the manifest records no JPEG quality, so the re-encoding cannot be checked"]
    data = image_of(record)
    if data is None:
        return [f"the row's image is no longer in {record.shard}, so the re-encoding cannot be checked"]
    if pixel_sha256(decode(encode_jpeg(decode(data), claim["quality"]))) != sha:
        return [f"the row re-encoded as {describe_encoding(claim)} does not give the file's pixels "
                "(another image, or another JPEG encoder build)"]
    return []
