"""``synthgen audit``: a sample's lineage, or a file traced back (credentials, watermark, hashes, CLIP)."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import AUDIT, JSON_HELP, open_catalog, fail, app, err, out, print_json
from flows.cli.output import clean, print_record
from flows.cli.output import say as print_line


@app.command(rich_help_panel=AUDIT)
def audit(
    target: str = typer.Argument(..., help="A sample id, or an image file to trace back."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for tracing edited files."),
    allow_restricted: bool = typer.Option(False, help="Required to show a row of a restricted dataset."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a sample's whole lineage: provenance, versions, runs. Accepts an image file too."""
    from catalog import audit as run_audit
    from catalog.init_source import init_source
    from catalog.manifest import release_record

    if not target.strip():  # Path("") is the current folder: say what is missing instead
        fail("audit needs a sample id or an image file, not an empty string")
    sample_id = target
    if Path(target).is_file():
        sample_id = _trace(Path(target), embedder, quiet=as_json, allow_restricted=allow_restricted)
    records = run_audit(open_catalog(), sample_id, allow_restricted)
    # Exit 2 (bad input, like any unknown name); exit 1 stays for what an audit finds about a file.
    if not records and sample_id == target and Path(target).exists() and not Path(target).is_file():
        fail(f"{target}: not a sample id nor a regular image file (a folder or a device)")
    if not records:
        fail(f"no sample {sample_id!r} in any committed version (give a sample id or an image file)")
    cat = open_catalog()
    sources = [init_source(cat, rec.row, allow_restricted) for rec in records]  # real-image guidance's lineage
    # Who lifted a restriction on the versions holding the row, and why (catalog.release).
    releases = [[{**release_record(m), "released_at_version": m.version} for m in cat.versions(rec.dataset)
                 if m.version in rec.versions and release_record(m)] for rec in records]
    if as_json:
        return print_json({"sample_id": sample_id, "records": [
            {"dataset": rec.dataset, "versions": rec.versions, "shard": rec.shard,
             "row": {k: v for k, v in rec.row.items() if k not in ("image", "embedding")},
             **({"init_source": src} if src else {}), **({"releases": rel} if rel else {})}
            for rec, src, rel in zip(records, sources, releases)]})
    for rec, src, rel in zip(records, sources, releases):
        print_record(f"sample {sample_id} in {rec.dataset} (versions {', '.join(map(str, rec.versions))})",
                     [*((k, v) for k, v in rec.row.items() if v is not None), ("shard", rec.shard)])
        if src:
            print_record(f"init image {src['sample_id']} (the real image it started from)",
                         [(k, v) for k, v in src.items() if v is not None])
        for r in rel:
            print_record(f"released at {rec.dataset}@{r['released_at_version']} (the rows of version {r['version']})",
                         [(k, r[k]) for k in ("by", "reason", "at", "sources")])


def _trace(path: Path, embedder: str, quiet: bool = False, allow_restricted: bool = False) -> str:
    """Find the sample an image file came from; print how it was matched (to stderr when ``quiet``).

    Restricted datasets are searched only with ``allow_restricted`` (``catalog.trace``).
    """
    from flows.trace_file import NoMatch, trace_file
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    def load():
        emb_spec = EmbedderSpec(model=embedder)
        check_embedder(emb_spec, "--embedder")
        from synthgen.embedder import load_embedder  # torch: only once the cheap ways to match have failed

        return load_embedder(emb_spec)

    console = err if quiet else out  # --json keeps stdout for the JSON document
    try:  # file names and ids are data: no markup, control characters and line breaks shown as escapes
        return trace_file(open_catalog(), path, load, lambda line: print_line(clean(line, one_line=True), console),
                          allow_restricted=allow_restricted)
    except NoMatch as exc:
        fail(str(exc), code=1)
