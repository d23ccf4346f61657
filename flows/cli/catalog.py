"""`synthgen` commands that check, derive and query versions (verify, diff, takedown, mix, query, card, dedup)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from flows.cli.common import (
    AUDIT, GENERATE, INSPECT, JSON_HELP, SHARE, open_catalog, fail, app, check_options, err, failing_on, interruptibly,
    out, print_json,
)
from flows.cli.output import print_rows, say, show
from flows.cli.paths import output_file


@app.command(rich_help_panel=AUDIT)
def gc(
    name: str = typer.Argument(..., help="Dataset name."),
    older_than: float = typer.Option(24.0, "--older-than", min=0, help="Hours: keep younger files (a commit in "
                                     "progress elsewhere has written its shards but not yet its manifest)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Remove shard files that no manifest names (left by commits that died before their manifest) and what a work
    pool's jobs staged on the store and never committed."""
    from catalog.gc import collect_garbage

    cat = open_catalog()
    cat.info(name)  # an unknown dataset is an error, not an empty collection
    found = collect_garbage(cat.storage, name, older_than * 3600, dry_run)
    if as_json:
        print_json({"dataset": name, "named": found.named, "unnamed": found.unnamed, "removed": found.removed,
                    "kept_young": found.kept_young, "staged": found.staged, "staged_removed": found.staged_removed,
                    "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    out.print(f"{name}: {found.named} shard file(s) named by manifests; {verb} {len(found.removed)} that none "
              f"names; kept {len(found.kept_young)} younger than {older_than:g} h")
    if found.staged:
        out.print(f"{name}: {len(found.staged)} job(s) staged on the store and not committed; {verb} "
                  f"{len(found.staged_removed)} untouched for {older_than:g} h")


@app.command(rich_help_panel=AUDIT)
def verify(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    regenerate: int = typer.Option(0, min=0, help="Also regenerate N synthetic samples and compare pixel hashes."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check integrity: shard hashes, row counts, schema, manifest hash chain (exit 1 on any problem)."""
    from catalog import parse_ref
    from catalog.verify import verify as run_verify

    name, version = parse_ref(ref)
    report = run_verify(open_catalog(), name, version)
    result = {"dataset": name, "version": report.version, "ok": report.ok, "problems": report.problems,
              "notes": report.notes, "manifests_checked": report.manifests_checked,
              "shards_checked": report.shards_checked, "head_sha256": report.head_sha256}
    if not as_json:
        for problem in report.problems:
            err.print(f"[red]FAIL[/] {escape(problem)}")
        for note in report.notes:
            err.print(f"note: {escape(note)}")
        out.print(
            f"{name}@{report.version}: {report.manifests_checked} manifests, {report.shards_checked} shards checked; "
            f"head manifest sha256 {report.head_sha256}; " + ("[green]OK[/]" if report.ok else "[red]CORRUPT[/]")
        )
    ok = report.ok
    if regenerate:
        from flows.job.regenerate import regenerate_sample_check

        regen = regenerate_sample_check(open_catalog(), ref, regenerate)
        result["regenerated"] = {
            "checked": regen.checked, "matched": regen.matched,
            "mismatches": [{"sample_id": m.sample_id, "fields": {k: [str(a), str(b)] for k, (a, b) in m.fields.items()},
                            "message": str(m)} for m in regen.mismatches],
            "elapsed_s": regen.elapsed_s, "images_per_s": regen.images_per_s,
            "groups": [{"settings": g.label(), "checked": g.checked, "matched": g.matched,
                        "differing_fields": g.differing_fields} for g in regen.groups],
        }
        if not as_json:
            for line in regen.mismatches:
                err.print(f"[red]MISMATCH[/] {escape(str(line))}")
            for g in regen.groups:
                differing = ", ".join(f"{k} ({n})" for k, n in sorted(g.differing_fields.items())) or "nothing"
                out.print(f"  group {g.label()}: {g.checked} regenerated, {g.matched} identical; differing: {differing}",
                          markup=False, highlight=False)
            out.print(f"regenerated {regen.checked} samples: {regen.matched} identical, {len(regen.mismatches)} differ "
                      f"({regen.elapsed_s:.1f} s, {regen.images_per_s:.2f} images/s)")
        ok = ok and not regen.mismatches
    if as_json:
        print_json(result | {"ok": ok})
    if not ok:
        raise typer.Exit(1)


@app.command(rich_help_panel=INSPECT)
def diff(a: str = typer.Argument(..., help="NAME@A"), b: str = typer.Argument(..., help="NAME@B")) -> None:
    """Rows added and removed between two versions, and how their job specs differ."""
    from catalog.diff import diff as run_diff

    from catalog import CatalogError

    with failing_on(CatalogError):
        d = run_diff(open_catalog(), a, b)
    say(f"{d.a} -> {d.b}: +{len(d.added)} rows, -{len(d.removed)} rows")
    for sid in d.removed[:20]:
        say(f"  - {show(sid, True)}")
    for sid in d.added[:20]:
        say(f"  + {show(sid, True)}")
    for key, (old, new) in d.spec_changes.items():
        say(f"  spec {key}: {old!r} -> {new!r}")


@app.command(rich_help_panel=AUDIT)
def takedown(
    name: str = typer.Argument(..., help="Dataset name."),
    where: str = typer.Option(..., help="SQL filter, e.g. \"sample_id = 'abc'\" or \"prompt LIKE '%logo%'\"."),
    reason: str = typer.Option(..., help="Why (recorded in the new version's manifest)."),
) -> None:
    """Commit a new version without the rows a filter selects (old versions stay readable)."""
    from catalog import CatalogError
    from catalog.derive import takedown as run_takedown

    with failing_on(CatalogError):
        m = run_takedown(open_catalog(), name, where, reason)
    say(f"{name}@{m.version}: {m.message}")


@app.command(rich_help_panel=SHARE)
def mix(
    synthetic: str = typer.Argument(..., help="Synthetic NAME@VERSION."),
    real: str = typer.Argument(..., help="Real NAME@VERSION."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the mixed dataset."),
    ratio: float = typer.Option(..., help="Synthetic share of the mix, e.g. 0.3."),
    seed: int = typer.Option(0, help="Seed for choosing the synthetic rows."),
    allow_restricted: bool = typer.Option(False, help="Required to mix a restricted real dataset."),
) -> None:
    """Build a training mix of real and synthetic rows at an explicit ratio."""
    from catalog import CatalogError
    from catalog.derive import mix as run_mix
    from catalog.safe_paths import check_name

    cat = open_catalog()
    with failing_on(CatalogError):
        check_name(name)  # a bad --name fails before any row is read
    with failing_on(CatalogError):
        m = run_mix(cat, synthetic, real, ratio, name, seed, allow_restricted)
    say(f"{name}@{m.version}: {m.message}")


QUERY_LIMIT = 1000  # rows `query` prints by default: a table anyone reads, and flat memory on any result size


@app.command(rich_help_panel=INSPECT)
def query(
    sql: str = typer.Argument(..., help="SQL; views: <dataset> (head) and <dataset>_v<N>, '-' -> '_'."),
    allow_restricted: bool = typer.Option(False, help="Also define views of restricted datasets."),
    limit: int = typer.Option(QUERY_LIMIT, min=1, help="Print at most this many rows (the rest are not read)."),
) -> None:
    """Run DuckDB SQL over the catalog's Parquet (read-only: no other files can be read or written)."""
    from catalog import CatalogError
    from catalog.query import connect, query_head

    cat = open_catalog()
    con = connect(cat, allow_restricted)
    try:
        with failing_on(CatalogError):
            table, more = interruptibly(lambda: query_head(cat, sql, allow_restricted, limit, con), con.interrupt)
    except KeyboardInterrupt:
        say("interrupted: the query was stopped", err)
        raise typer.Exit(130) from None
    shown = table.drop([c for c in ("image", "embedding") if c in table.column_names])
    print_rows(None, shown.column_names, [list(row.values()) for row in shown.to_pylist()], boxed=False)
    say(f"(showing the first {table.num_rows} rows; there are more: use --limit or LIMIT/OFFSET)" if more
        else f"({table.num_rows} rows)")


@app.command(rich_help_panel=INSPECT)
def card(ref: str = typer.Argument(..., help="NAME or NAME@VERSION."), write: bool = typer.Option(False, help="Also write card.md into the version's folder.")) -> None:
    """Print a version's dataset card (Markdown)."""
    from catalog.card import render_card, write_card

    cat = open_catalog()
    say(render_card(cat, ref))
    if write:
        say(f"wrote {write_card(cat, ref)}")


@app.command("dedup-report", rich_help_panel=INSPECT)
def dedup_report_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    png: Optional[str] = typer.Option(None, help="Histogram PNG in an existing folder (default: the version's folder)."),
) -> None:
    """Nearest-neighbour similarity histogram and what other thresholds would drop."""
    from catalog import open_version
    from catalog.dedup_report import dedup_report

    given = output_file(png, "--png", ".png") if png is not None else None
    cat = open_catalog()
    v = open_version(cat, ref)
    target = given or cat.version_dir(v.name, v.version) / "dedup-histogram.png"
    target.parent.mkdir(parents=True, exist_ok=True)  # the version's own folder
    r = dedup_report(v, target)
    say(f"{r.ref}: {r.rows} synthetic rows; " + ", ".join(f"{k}={n}" for k, n in sorted(r.by_status.items())))
    print_rows("rows at or above each cosine threshold",
               ("threshold", "near a kept synthetic sample", "near a real sample"),
               [(f"{x:.2f}", r.would_drop[x], r.would_block[x]) for x in r.would_drop])
    say("examples nearest the threshold:")
    for e in r.near_threshold:
        say(f"  {show(e['sample_id'], True)} {e['status']:<18} nn {show(e['nn_id'], True)} ({e['nn_source']}) "
            f"cos {show(e['nn_similarity'])}")
    say(f"histogram: {r.histogram}")


@app.command("rededup", rich_help_panel=GENERATE)
def rededup_cmd(
    name: str = typer.Argument(..., help="Synthetic dataset name (its head is re-decided)."),
    threshold: float = typer.Option(..., help="New near-duplicate cosine threshold (0 < t <= 1)."),
    real_threshold: Optional[float] = typer.Option(None, help="New CLIP threshold against real data."),
    pixel_threshold: Optional[float] = typer.Option(None, help="New pixel-distance threshold against real data."),
    min_clip_score: Optional[float] = typer.Option(None, help="Mark rows below this alignment low_quality."),
    keep: str = typer.Option("first", help="'first' (plan order) or 'quality' (best CLIP alignment wins)."),
    allow_restricted: bool = typer.Option(False, help="Required when the new thresholds would keep rows the "
                                          "memorisation guard blocked as copies of restricted real data."),
) -> None:
    """Re-deduplicate a version at new thresholds from stored evidence (a new derived version)."""
    from catalog import CatalogError
    from flows.job.rededup import rededup
    from synthgen.spec import DedupSpec

    check_options(DedupSpec, {"threshold": threshold, "real_threshold": real_threshold,
                              "pixel_threshold": pixel_threshold, "min_clip_score": min_clip_score, "keep": keep})
    with failing_on(CatalogError):
        m = rededup(open_catalog(), name, threshold, real_threshold, pixel_threshold, min_clip_score, keep,
                    allow_restricted=allow_restricted)
    say(f"{name}@{m.version}: {m.message}")


@app.command(rich_help_panel=INSPECT)
def search(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    text: str = typer.Argument(..., help="What to look for, e.g. 'a seven with a crossbar'."),
    where: Optional[str] = typer.Option(None, help="SQL filter on the rows, e.g. 'label = 7'."),
    k: int = typer.Option(10, min=1, help="How many results."),
    sheet: Optional[str] = typer.Option(None, help="Write a contact sheet PNG of the results (in an existing folder)."),
    embedder: str = typer.Option("embedded:digits-clip", help="Must be the model the rows were embedded with."),
    allow_restricted: bool = typer.Option(False, help="Required to search a restricted dataset."),
) -> None:
    """Nearest samples to a text by CLIP embedding, filtered by metadata."""
    from catalog import CatalogError, open_version
    from catalog.search import by_attribute, hit_attributes
    from catalog.search import search as run_search
    from synthgen.imaging import decode, make_grid
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    sheet_path = output_file(sheet, "--sheet", ".png") if sheet is not None else None  # before the search runs
    v = open_version(open_catalog(), ref, allow_restricted)
    emb_spec = EmbedderSpec(model=embedder)
    check_embedder(emb_spec, "--embedder")
    from synthgen.embedder import load_embedder  # torch: after the reference and the model are checked

    emb = load_embedder(emb_spec)
    if v.manifest.embedding_model and v.manifest.embedding_model != emb.name:
        fail(f"{v.ref} was embedded with {v.manifest.embedding_model}, not {emb.name}; pass --embedder")
    with failing_on(CatalogError):
        hits = run_search(v, emb.embed_texts([text])[0], k, where)
    attributes = hit_attributes(v, hits) if hits else {}
    for sid, sim in hits:
        values = " ".join(f"{a}={show(x)}" for a, x in sorted(attributes.get(sid, {}).items()))
        say(f"{show(sid, True)}  {sim:.4f}" + (f"  {values}" if values else ""))
    if attributes:  # a prompt program's rows: which attribute values the query finds, and how closely
        print_rows("hits by prompt attribute", ("attribute", "value", "hits", "mean cosine"),
                   [(a, x, n, f"{m:.4f}") for a, x, n, m in by_attribute(hits, attributes)])
    if sheet_path and hits:
        want = {sid for sid, _ in hits}
        rows = [r for r in v.table(["sample_id", "image"]).to_pylist() if r["sample_id"] in want]
        by_id = {r["sample_id"]: decode(r["image"]["bytes"]) for r in rows}
        make_grid([[by_id[sid] for sid, _ in hits]]).save(sheet_path)
        say(f"contact sheet: {sheet_path}")
