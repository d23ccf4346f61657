"""``synthgen audit``: a sample's lineage, or a file traced back (credentials, watermark, hashes, CLIP)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli_common import AUDIT, JSON_HELP, _catalog, _fail, app, err, out, print_json


@app.command(rich_help_panel=AUDIT)
def audit(
    target: str = typer.Argument(..., help="A sample id, or an image file to trace back."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for tracing edited files."),
    allow_restricted: bool = typer.Option(False, help="Required to show a row of a restricted dataset."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a sample's whole lineage: provenance, versions, runs. Accepts an image file too."""
    from catalog import audit as run_audit

    if not target.strip():  # Path("") is the current folder: say what is missing instead
        _fail("audit needs a sample id or an image file, not an empty string")
    sample_id = target
    if Path(target).is_file():
        sample_id = _trace(Path(target), embedder, quiet=as_json, allow_restricted=allow_restricted)
    records = run_audit(_catalog(), sample_id, allow_restricted)
    # Exit 2 (bad input, like any unknown name); exit 1 stays for what an audit finds about a file.
    if not records and sample_id == target and Path(target).exists() and not Path(target).is_file():
        _fail(f"{target}: not a sample id nor a regular image file (a folder or a device)")
    if not records:
        _fail(f"no sample {sample_id!r} in any committed version (give a sample id or an image file)")
    if as_json:
        return print_json({"sample_id": sample_id, "records": [
            {"dataset": rec.dataset, "versions": rec.versions, "shard": rec.shard,
             "row": {k: v for k, v in rec.row.items() if k not in ("image", "embedding")}} for rec in records]})
    for rec in records:
        t = Table(title=f"sample {sample_id} in {rec.dataset} (versions {', '.join(map(str, rec.versions))})")
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k, v in rec.row.items():
            if v is not None:
                t.add_row(k, escape(str(v)))
        t.add_row("shard", rec.shard)
        out.print(t)


def _trace(path: Path, embedder: str, quiet: bool = False, allow_restricted: bool = False) -> str:
    """Find the sample an image file came from; print how it was matched (to stderr when ``quiet``).

    Restricted datasets are matched only with ``allow_restricted`` (``catalog.trace.searchable``).
    """
    from catalog.trace import by_embedding, by_pixel_hash
    from synthgen.imaging import ImageReadError, pixel_sha256, png_text, read_image_file
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    try:
        _, img = read_image_file(path)
    except ImageReadError as exc:
        raise ImageReadError(f"{exc}; audit takes a sample id or an image file") from None
    say = (err if quiet else out).print  # --json keeps stdout for the JSON document
    cat = _catalog()
    sha = pixel_sha256(img)
    found = _credentials(path, img, sha, cat, say, allow_restricted)
    if found:
        return found
    from catalog.trace import by_watermark
    from synthgen.watermark import BITS

    mark = by_watermark(cat, img, allow_restricted)
    if mark is not None:
        say(f"{path}: watermark payload -> {mark.sample_id} in {mark.dataset} "
            f"({round((1 - mark.similarity) * BITS)} of {BITS} bits off; confidence {mark.confidence})")
        return mark.sample_id
    meta = png_text(img)
    exact = by_pixel_hash(cat, sha, allow_restricted)
    if meta.get("sample_id") and (not exact or exact[0].sample_id == meta["sample_id"]):
        verified = "pixels match the catalog" if exact else "pixels do NOT match the catalog row"
        say(f"{path}: provenance chunk names sample {meta['sample_id']} ({verified})")
        return meta["sample_id"]
    if exact:
        say(f"{path}: exact pixel match (sha256) -> {exact[0].sample_id} in {exact[0].dataset}")
        return exact[0].sample_id
    emb_spec = EmbedderSpec(model=embedder)
    check_embedder(emb_spec, "--embedder")
    from synthgen.embedder import load_embedder  # torch: only once the cheap ways to match have failed

    emb = load_embedder(emb_spec)
    match = by_embedding(cat, emb.embed_images([img])[0], emb.name, image=img, allow_restricted=allow_restricted)
    if match is None:
        _fail(f"{path}: no exact match and no dataset embedded with {emb.name}", code=1)
    margin = f", {match.margin:.3f} closer than the runner-up" if match.margin is not None else ""
    say(f"{path}: no exact match; closest by CLIP then pixels is {match.sample_id} in {match.dataset} "
              f"(cosine {match.similarity:.4f}; pixel distance {match.pixel_distance:.3f}{margin}; "
              f"confidence {match.confidence})")
    if match.same_pixels:
        say(f"  rows with the same pixels: {', '.join(match.same_pixels)}")
    return match.sample_id


def _credentials(path: Path, img, sha: str, cat, say, allow_restricted: bool = False) -> str | None:
    """Read and validate the file's C2PA manifest; the sample it names when valid and consistent with the catalog.

    A PNG's pixels must hash to the claim's ``image_sha256``. A JPEG's cannot
    (it is a lossy derivative): c2pa's hard binding proves the file is the
    one that was signed, the claim's sample and pixel hash are checked
    against the catalog row, and the row re-encoded at the claimed quality
    must give the file's pixels.
    """
    from PIL import Image

    from catalog import RestrictedError, audit as run_audit
    from flows.credentials import LOSSY, describe_encoding, read_credentials

    cred = read_credentials(path.read_bytes(), Image.MIME.get(img.format or "", "image/png"))  # by content, not name
    if cred is None:
        say(f"{path}: no content credentials; tracing by watermark, metadata, pixels, CLIP")
        return None
    trust = "trusted" if cred.trusted else "untrusted signer"
    if not cred.valid:
        say(f"{path}: content credentials FAILED validation ({', '.join(cred.failures) or cred.state}); "
            f"signed by {cred.signer}; the file was altered after signing; tracing it like an unsigned copy")
        return None
    sid, lossy = cred.claim.get("sample_id"), cred.claim.get("encoding") in LOSSY
    say(f"{path}: content credentials valid ({trust}: {cred.signer}); "
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
        mismatch += _reencoded_mismatch(records[0], cred.claim, sha)
    checked = "sample, pixel hash, re-encoded pixels" if lossy else "sample and pixel hash"
    say(f"  matches the catalog row ({checked})" if not mismatch else "  MISMATCH: " + "; ".join(mismatch))
    return sid if rows else None


def _reencoded_mismatch(record, claim: dict, sha: str) -> list[str]:
    """[] when the claimed row, re-encoded as the claim says, decodes to the file's pixels; else why not."""
    from catalog.audit import image_of
    from flows.credentials import describe_encoding
    from flows.export import encode_jpeg
    from synthgen.imaging import decode, pixel_sha256

    if not isinstance(claim.get("quality"), int):
        return ["the manifest records no JPEG quality, so the re-encoding cannot be checked"]
    data = image_of(record)
    if data is None:
        return [f"the row's image is no longer in {record.shard}, so the re-encoding cannot be checked"]
    if pixel_sha256(decode(encode_jpeg(decode(data), claim["quality"]))) != sha:
        return [f"the row re-encoded as {describe_encoding(claim)} does not give the file's pixels "
                "(another image, or another JPEG encoder build)"]
    return []
