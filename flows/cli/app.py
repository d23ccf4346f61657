"""The ``synthgen`` command line (Typer): running jobs, ingesting, listing, loading, auditing.

Heavy imports (torch, prefect, mlflow) happen inside commands, after the
data folder is configured, so ``synthgen --help`` is instant and Prefect
and MLflow always see the right folder. Commands live in modules that register
on one app: this one (generate, list, load), ``cli_audit`` (audit a sample or a
file), ``cli_export``, ``cli_catalog``, ``cli_quality``, ``cli_remote``, ``cli_schedule``, ``cli_ui``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from flows.cli.common import (
    GENERATE, INSPECT, JSON_HELP, open_catalog, fail, cli_paths, app, check_status, err, out,
    print_json,
)
from flows.cli.errors import EXIT_TERMINATED, INTERRUPTED, TERMINATED, Terminated, raise_on_sigterm
from flows.cli.output import print_record, print_rows, say
from flows.cli.paths import output_file

REPO = Path(__file__).resolve().parents[2]  # flows/cli/app.py -> the checkout
DEMO_PACKAGED = Path(__file__).resolve().parents[1] / "demo"  # package data: the demo runs from an installed wheel
DEMO_REAL = "digits-real"


SET_HELP = "Override a spec field: --set generator.steps=10 (repeatable; the value is YAML)."
PARAMS_HELP = "Merge a section of a params file over the spec, e.g. params.yaml:demo (DVC's params)."
CHECK_HELP = "Only validate: the spec, the models' configs and the catalog references; run nothing, write nothing."


def demo_files() -> tuple[Path, Path]:
    """The demo's job spec and params file.

    In a source checkout these are ``jobs/digits-demo.yaml`` and the root
    ``params.yaml``, the files DVC tracks (``dvc exp run -S demo...`` edits
    the latter). An installed package has no checkout: it uses the copies
    shipped in ``flows/demo/``, which a test keeps equal to those two.
    """
    job, params = REPO / "jobs" / "digits-demo.yaml", REPO / "params.yaml"
    if (REPO / "dvc.yaml").is_file() and job.is_file() and params.is_file():
        return job, params
    return DEMO_PACKAGED / "digits-demo.yaml", DEMO_PACKAGED / "params.yaml"


def _load_job(spec_path: Path, params: str | None, assignments: list[str] | None):
    """The validated job spec (with params and --set merged), or a clear error naming the field."""
    from synthgen.spec import load_params, load_spec, merge_overrides, parse_assignments

    overrides = merge_overrides(load_params(params) if params else {}, parse_assignments(assignments or []))
    return load_spec(spec_path, overrides)


def _check_job(spec, skip_real: str | None = None) -> None:
    """Everything checkable before services start: catalog references and the models' config files.

    ``preflight`` is the one place both are checked (the flow runs it again for deployments).
    """
    from catalog import Catalog
    from flows.job.preflight import preflight
    from flows.settings import Settings

    # Checking creates nothing: a data folder that does not exist yet reads as an empty catalog (`run --check`
    # of a new folder, or a run refused there, left an empty data folder behind).
    cat = Catalog(cli_paths(resolve_only=True).catalog, create=False)
    if skip_real and spec.dedup.real_dataset == skip_real and not cat.exists(skip_real):
        spec = spec.model_copy(update={"dedup": spec.dedup.model_copy(update={"real_dataset": None})})
    settings = Settings()
    preflight(spec, cat, settings.shard_pool, settings.ray_address)  # where the flow will sample: see generate_dataset


def _run_job(spec_path: Path, params: str | None = None, assignments: list[str] | None = None,
             components=None) -> dict:
    """Run the job's flow; ``components``: a ``ComponentLoader`` already prefetching (the demo's)."""
    spec = _load_job(spec_path, params, assignments)  # validated before anything loads or is written
    _check_job(spec)
    paths = cli_paths()
    from catalog import Catalog
    from flows.executors.base import ShardFailed
    from flows.generate import generate_dataset
    from flows.job.components import ComponentLoader
    from flows.cli.progress import TerminalProgress
    from flows.schedule import ScheduleError
    from flows.prefect_server import server_orm_defined, start_in_background
    from flows.outputs.reports import prefetch_plotting
    from flows.tracking import warm_up

    server = start_in_background(paths.prefect_home)
    components = components or ComponentLoader(spec, str(paths.catalog), str(paths.cache))
    # A committed spec loads nothing: the flow answers it from the catalog.
    if not Catalog(paths.catalog).find_job(spec.output.dataset, spec.digest()):
        components.prefetch()  # loads the models on the second core while Prefect's server starts
    warm_up(paths.tracking_uri, paths.artifact_root, after=server_orm_defined)  # and opens MLflow's store
    prefetch_plotting()  # and imports matplotlib for the reports
    err.print(f"[bold]synthgen[/] {spec.name}: {spec.size_text} -> {spec.output.dataset} (data: {paths.root})")
    server.join()
    try:
        return generate_dataset(spec.model_dump(mode="json"), str(paths.root), components=components,
                                progress=TerminalProgress(err))
    except ScheduleError as exc:  # e.g. shards sent to a work pool without a long-lived Prefect server
        fail(str(exc))
    except ShardFailed as exc:
        fail(f"{exc}\nShards finished before it are staged; rerun the same command to resume from there.")


def _print_checked(spec) -> None:
    out.print(f"{spec.name}: valid ({spec.size_text} -> {spec.output.dataset}; "
              f"generator {spec.generator.model}, embedder {spec.embedder.model}; job digest {spec.digest()[:12]})")


def per_condition_fields(p: dict) -> list[tuple[str, str]]:
    """Summary lines of a ``kept_per_condition`` job: how many conditions reached the count, which hit the cap."""
    conds, target = p["conditions"], p["kept_per_condition"]
    reached = sum(1 for c in conds.values() if c["kept"] == target)
    lines = [("kept per condition", f"{target} in {reached} of {len(conds)} conditions "
                                    f"(generated per condition: {min(c['generated'] for c in conds.values())}"
                                    f"-{max(c['generated'] for c in conds.values())}, cap {p['max_per_condition']})")]
    if p["capped"]:
        lines.append(("hit the cap", ", ".join(f"{n} ({conds[n]['kept']} kept of {conds[n]['generated']})"
                                               for n in p["capped"])))
    if p["missed"]:
        lines.append(("not at the count (rechecked after the plan was complete)", ", ".join(p["missed"])))
    return lines


def print_summary(r: dict) -> None:
    m = r["metrics"]
    c = r["counts"]
    fields = [
        # A reused version was generated by an earlier run: say so, not "generated N at 0.0 images/s".
        ("generated", f"{sum(c.values())}" + (" (by the run that committed it; none this run)" if r["reused"] else "")),
        ("kept", c.get("kept", 0)),
        ("dropped: near-duplicate", c.get("dropped_duplicate", 0)),
        ("blocked: near-copy of real data", c.get("blocked_real_copy", 0)),
    ]
    if c.get("low_quality"):
        fields.append(("dropped: low quality (CLIP alignment or degenerate image)", c["low_quality"]))
    if r.get("per_condition"):
        fields += per_condition_fields(r["per_condition"])
    if not r["reused"]:
        fields.append(("throughput", f"{m['images_per_s']:.1f} images/s over {m['wall_s']:.1f} s "
                                     f"(start-up {m['startup_s']:.1f} s)"))
    folder = r["files"][0].rsplit("/", 1)[0] if r["files"] else "-"  # a folder, or a URL's prefix
    excluded = f" + {len(r['excluded_files'])} of excluded rows" if r.get("excluded_files") else ""
    fields += [
        ("dataset", f"{r['dataset']} version {r['version']}"),
        ("parquet", f"{len(r['files'])} new training shard(s){excluded} in {folder}" if r["files"]
         else "(no new shards)"),
        ("manifest", r["manifest"]),
        ("sample grid", r["grid"]),
        ("MLflow run", f"{r['mlflow_run_id']} ({r['mlflow_tracking_uri']})"),
        ("Prefect flow run", f"{r['prefect_flow_run_name']} ({r['prefect_flow_run_id']})"),
    ]
    print_record(f"{r['job']} -> {r['dataset']}@{r['version']}" + ("  (already committed: reused)" if r["reused"] else ""),
                 fields)


@app.command(rich_help_panel=GENERATE)
def run(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    params: str = typer.Option(None, "--params", help=PARAMS_HELP),
    assignments: list[str] = typer.Option(None, "--set", help=SET_HELP),
    json_out: Path = typer.Option(None, "--json", help="Also write the run's result (version, counts, metrics) as JSON."),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
) -> None:
    """Run a job spec: generate, deduplicate, commit a version, log to MLflow."""
    if check:
        job = _load_job(spec, params, assignments)
        _check_job(job)
        _print_checked(job)
        return
    if json_out is not None:
        output_file(str(json_out), "--json")
    result = _run_job(spec, params, assignments)
    if json_out:
        import json

        json_out.write_text(json.dumps(result, indent=2, default=str))
    print_summary(result)


@app.command(rich_help_panel=GENERATE)
def ingest(
    folder: str = typer.Argument(
        ..., help="Folder or URL (s3://bucket/prefix, any fsspec store) with one sub-folder per class "
                  "(files in its sub-folders count for it; links are followed)."),
    name: str = typer.Option(..., "--name", "-n", help="Real dataset name."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for the memorisation guard."),
    restricted: bool = typer.Option(False, help="Mark the dataset restricted (no export without a flag)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out files that are not readable images (counted)."),
    shard_size: Optional[int] = typer.Option(None, "--shard-size", min=1,
                                             help="At most this many images per shard (default 100,000; a shard "
                                                  "also closes at 1 GB)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Decoding threads (0: every core)."),
) -> None:
    """Ingest an image folder or bucket as a real dataset (class = sub-folder name).

    Streams in shards, on every core; nothing is committed unless every file is a readable image (or
    --skip-bad). A killed ingest rerun with the same arguments resumes from the shards it finished.
    """
    from catalog import Catalog
    from catalog.ingest import SHARD_ROWS, check_target, ingest_folder, shown
    from catalog.ingest_decode import EmbedSteps
    from catalog.ingest_source import open_source
    from flows.cli.ingest_display import ingest_progress, summary
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    # A bad or taken name (or one restricted otherwise than asked), then the source's layout, then the
    # embedder: before any file is read, any model loads, or a new data folder is created.
    check_target(Catalog(cli_paths(resolve_only=True).catalog, create=False), name, restricted)
    source = open_source(folder)
    source.files()
    emb_spec = EmbedderSpec(model=embedder)
    check_embedder(emb_spec, "--embedder")
    paths = cli_paths()
    cat = open_catalog()

    @functools.cache  # loads once the layout is known to be good
    def emb():
        from synthgen.embedder import load_embedder

        return load_embedder(emb_spec)

    with ingest_progress(err, folder) as (progress, last):
        steps = EmbedSteps(lambda img: emb().prepare_image(img), lambda items: emb().embed_prepared(items))
        m = ingest_folder(cat, name, source, steps, lambda: emb().name,
                          restricted=restricted, skip_bad=skip_bad, staging=paths.staging / "ingest",
                          shard_rows=shard_size or SHARD_ROWS, workers=workers or None, progress=progress)
    written = sum(cat.storage.files.size(f"{name}/{s.file}") for s in m.shards)
    summary(out, m, last[0] if last else None, name, emb().name, written)
    for item in m.prov.get("skipped", []):
        err.print(f"  skipped {escape(shown(item['file']))}: {escape(shown(item['reason']))}")


@app.command(rich_help_panel=GENERATE)
def demo(
    assignments: list[str] = typer.Option(None, "--set", help=SET_HELP),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
) -> None:
    """Ingest the bundled real digits (once) and run the demo job (jobs/digits-demo.yaml + params.yaml's `demo`)."""
    import tempfile

    from synthgen.digits import CLASS_NAMES, export_image_folder

    job, params = demo_files()
    spec = _load_job(job, f"{params}:demo", assignments)
    server = None
    if not check:
        # Once the spec is valid the server (~10 s) can start behind the model checks (~3 s of
        # diffusers imports) and the ingest; a failed check exits and Prefect stops it. Its files
        # go to the data folder's prefect/, never the catalog. Prefect's core is imported here
        # first, so the server's thread imports only the server's own modules.
        paths = cli_paths()  # Prefect's environment (PREFECT_HOME in the data folder), before the server reads it
        import flows.generate  # noqa: F401
        from flows.prefect_server import start_in_background

        server = start_in_background(paths.prefect_home)
    _check_job(spec, skip_real=DEMO_REAL)  # the demo ingests its real digits below
    if check:
        _print_checked(spec)
        return
    cat = open_catalog()
    components = None
    if not cat.exists(DEMO_REAL) or cat.head(DEMO_REAL) is None:
        from flows.job.components import ComponentLoader
        from flows.prefect_server import server_orm_defined
        from flows.tracking import warm_up

        # The ingest runs mostly on one core (per-image preprocessing): the job's models and
        # MLflow's store load on the other, before the flow needs them (the guard after the ingest).
        paths = cli_paths()
        components = ComponentLoader(spec, str(paths.catalog), str(paths.cache))
        components.prefetch(guard=False)
        warm_up(paths.tracking_uri, paths.artifact_root, after=server_orm_defined)
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_image_folder(Path(tmp) / "digits")
            (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
            ingest(str(folder), DEMO_REAL, "embedded:digits-clip", False, False, None, 0)
    if server is not None:
        server.join()
    print_summary(_run_job(job, f"{params}:demo", assignments, components))


@app.command(rich_help_panel=INSPECT)
def datasets(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List datasets with origin, head version and row counts."""
    cat = open_catalog()
    rows = []
    for name in cat.names():
        info, head = cat.info(name), cat.head(name)
        m = cat.manifest(name, head) if head else None
        rows.append({"name": name, "origin": info["origin"], "head": head, "rows": m.rows if m else 0,
                     "kept": m.rows_by_status.get("kept", 0) if m else 0, "restricted": bool(info.get("restricted"))})
    if as_json:
        return print_json({"catalog": cat.location, "datasets": rows})
    print_rows(f"datasets in {cat.location}", ("name", "origin", "head", "rows", "kept", "restricted"),
               [(r["name"], r["origin"], r["head"], r["rows"], r["kept"], "yes" if r["restricted"] else "")
                for r in rows])


@app.command(rich_help_panel=INSPECT)
def versions(
    name: str = typer.Argument(..., help="Dataset name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List a dataset's versions: time, parent, rows by status, job digest, runs."""
    cat = open_catalog()
    ms = cat.versions(name)
    if as_json:
        return print_json({"dataset": name, "origin": cat.info(name)["origin"], "versions": [
            {"version": m.version, "created_at": m.created_at, "parent": m.parent, "rows": m.rows,
             "rows_by_status": m.rows_by_status, "job_digest": m.job_digest, "message": m.message,
             "runs": [r.model_dump(mode="json") for r in m.runs]} for m in ms]})
    print_rows(f"{name} ({cat.info(name)['origin']})",
               ("version", "created", "parent", "rows", "by status", "job digest", "MLflow runs"),
               [(m.version, m.created_at[:19], m.parent, m.rows,
                 ", ".join(f"{k}={v}" for k, v in sorted(m.rows_by_status.items())),
                 (m.job_digest or "-")[:12], [r.mlflow_run_id or "-" for r in m.runs]) for m in ms])


@app.command(rich_help_panel=INSPECT)
def load(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    status: str = typer.Option("kept", help="Row status ('all' for every row)."),
    limit: int = typer.Option(5, min=0, help="Rows to show."),
    allow_restricted: bool = typer.Option(False, help="Required to read a restricted dataset."),
) -> None:
    """Open a version the way training code does and show a few rows."""
    from catalog import open_version

    check_status(status)
    cols = ["sample_id", "origin", "status", "label", "label_name", "prompt", "seed", "nn_similarity"]
    v = open_version(open_catalog(), ref, allow_restricted)
    table = v.table(cols, status)
    say(f"{v.ref}: {table.num_rows} rows ({status}); files:\n  " + "\n  ".join(v.files_for(status)))
    shown = table.slice(0, limit)
    print_rows(None, shown.column_names, [list(row.values()) for row in shown.to_pylist()], boxed=False)


# The other command modules register on `app` after this one's commands, so `--help` lists the
# panels in the order a user meets them (generate, inspect, audit, share, schedule).
from flows.cli import audit, export  # noqa: E402,F401 - audit and share commands, in this order
from flows.cli import catalog, prompts, quality, release, remote, schedule, sweep  # noqa: E402,F401
from flows.cli import ui  # noqa: E402,F401 - the web app


def entrypoint() -> None:
    """Console-script entry point."""
    raise_on_sigterm()
    try:
        app()
    except KeyboardInterrupt:  # outside a command (the group turns one inside into this message and 130)
        err.print(INTERRUPTED)
        _exit(130)
    except Terminated:
        err.print(TERMINATED)
        _exit(EXIT_TERMINATED)
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code) -> None:
    """End the process as Python's own exit does, minus tearing down every module and object.

    After a run (torch, Prefect, MLflow, diffusers loaded) that teardown takes ~2.5 s and does
    nothing a user can see. What does matter happens first, in Python's order (``Py_FinalizeEx``):
    ``threading._shutdown`` (executors told to stop, then non-daemon threads joined), atexit
    handlers (Prefect drains its log and event workers, logging flushes, temporary folders go),
    then stdout and stderr are flushed.
    """
    import atexit
    import os
    import threading

    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    # The interpreter's own first step at exit: concurrent.futures' exit hooks run before the joins, so
    # an executor nobody shut down (e.g. a process pool's manager thread) ends instead of hanging here.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream: nothing left to say
            code = code or 120  # what Python's own exit reports when its final flush fails
    os._exit(code or 0)


if __name__ == "__main__":
    entrypoint()
