"""`synthgen` commands for a shared catalog addressed by URL (push, pull, remote-versions, remote-load, remote-verify).

URLs are ``s3://bucket/prefix`` (any S3-compatible server: ``--endpoint-url``
or ``$AWS_ENDPOINT_URL``; credentials as for any AWS tool) or a path. The
protocol that makes a push atomic is described in ``catalog.publish``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import typer
from rich.markup import escape

from flows.cli.common import SHARE, open_catalog, fail, app, check_status, err, failing_on, out
from flows.cli.output import print_rows, say
from flows.cli.paths import output_file

URL_HELP = "Shared catalog: s3://BUCKET/PREFIX or a path."
ENDPOINT_HELP = "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: $AWS_ENDPOINT_URL, else AWS)."


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules


def check_url(url: str) -> str:
    """A shared catalog URL: ``s3://BUCKET[/PREFIX]`` or a folder path; anything else is a clear error."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url or "")
    if not url or not url.strip():
        fail("the shared catalog URL is empty; use s3://BUCKET/PREFIX or a folder path")
    if scheme and not (len(scheme.group(1)) == 1 and url[1:3] in (":\\", ":/")):  # not a Windows drive
        if scheme.group(1).lower() == "file" and url.startswith("file://"):
            url = url[len("file://"):]
        elif scheme.group(1).lower() != "s3" or not url.startswith("s3://"):
            fail(f"{url}: unsupported URL; use s3://BUCKET/PREFIX or a folder path (publishing needs "
                  "S3's conditional writes)")
        else:
            bucket = url[len("s3://"):].split("/", 1)[0]
            if not _BUCKET.match(bucket):
                fail(f"{url}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-'); "
                      "use s3://BUCKET/PREFIX")
            return url
    if Path(url).expanduser().is_file():
        fail(f"{url} is a file; a shared catalog is a folder (or s3://BUCKET/PREFIX)")
    return url


def _options(url: str, endpoint: str | None) -> dict | None:
    """Storage options for ``url``: the endpoint, for s3:// URLs only."""
    check_url(url)
    if not endpoint:
        return None
    if not url.startswith("s3://"):
        fail(f"--endpoint-url applies to s3:// URLs, not {url}")
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        fail(f"--endpoint-url {endpoint!r}: expected http(s)://HOST[:PORT]")
    return {"endpoint_url": endpoint}


def _remote(url: str, endpoint: str | None):
    from catalog.remote import RemoteCatalog

    return RemoteCatalog(check_url(url), _options(url, endpoint))


def _span(versions: list[int]) -> str:
    return f"{versions[0]}" if len(versions) == 1 else f"{versions[0]}..{versions[-1]}"


@app.command(rich_help_panel=SHARE)
def push(
    name: str = typer.Argument(..., help="Local dataset name."),
    url: str = typer.Argument(..., help=URL_HELP),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help=ENDPOINT_HELP),
    allow_restricted: bool = typer.Option(False, help="Required to publish a restricted dataset."),
) -> None:
    """Publish the versions the shared catalog lacks; HEAD moves last, so readers never see a partial version."""
    from catalog import CatalogError
    from catalog.publish import push as run_push

    with failing_on(CatalogError):
        r = run_push(open_catalog(), name, url, _options(url, endpoint_url), allow_restricted=allow_restricted)
    if r.versions:
        say(f"pushed {name}@{_span(r.versions)} to {r.url} ({r.objects} new objects); shared head is {r.head}")
    else:
        say(f"{name}: nothing to push to {r.url} (shared head {r.head}){'; ' + r.note if r.note else ''}")


@app.command(rich_help_panel=SHARE)
def pull(
    url: str = typer.Argument(..., help=URL_HELP),
    name: str = typer.Argument(..., help="Dataset name."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help=ENDPOINT_HELP),
    allow_restricted: bool = typer.Option(False, help="Required to copy shards holding blocked copies of "
                                          "restricted real data."),
) -> None:
    """Copy the shared catalog's new versions into the local one, checking every hash on the way."""
    from catalog import CatalogError
    from catalog.publish import pull as run_pull

    with failing_on(CatalogError):
        r = run_pull(url, name, open_catalog(), _options(url, endpoint_url), allow_restricted=allow_restricted)
    if r.versions:
        say(f"pulled {name}@{_span(r.versions)} from {r.url} ({r.objects} objects fetched); local head is {r.head}")
    else:
        say(f"{name}: {r.note or 'up to date'} (shared head {r.head})")


@app.command("remote-versions", rich_help_panel=SHARE)
def remote_versions(
    url: str = typer.Argument(..., help=URL_HELP),
    name: Optional[str] = typer.Argument(None, help="Dataset name (omit to list the datasets)."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help=ENDPOINT_HELP),
) -> None:
    """List a shared catalog's datasets, or one dataset's published versions (chain-checked against HEAD)."""
    from catalog import CatalogError

    with failing_on(CatalogError):
        remote = _remote(url, endpoint_url)
        if name is None:
            heads = {n: remote.head(n)[0] for n in remote.names()}
            say("\n".join(f"{n}  head {h or '-'}" for n, h in heads.items()) or f"no datasets in {url}")
            return
        manifests = remote.versions(name)
    print_rows(f"{name} at {url}", ("version", "created", "rows", "kept", "added shards", "message"),
               [(m.version, m.created_at[:19], m.rows, m.rows_by_status.get("kept", 0), len(m.added_shards), m.message)
                for m in manifests])


@app.command("remote-load", rich_help_panel=SHARE)
def remote_load(
    url: str = typer.Argument(..., help=URL_HELP),
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    status: str = typer.Option("kept", help="Row status ('all' for every row)."),
    limit: int = typer.Option(5, min=0, help="Rows to show."),
    save: Optional[str] = typer.Option(None, "--out", help="Also write the rows to this new Parquet file."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help=ENDPOINT_HELP),
    allow_restricted: bool = typer.Option(False, help="Required to read a restricted dataset's rows."),
) -> None:
    """Read a published version straight from shared storage (shards hash-checked) and show a few rows."""
    from catalog import CatalogError

    check_status(status)
    target = output_file(save, "--out", ".parquet", replace=False) if save is not None else None  # before reading
    with failing_on(CatalogError):
        remote = _remote(url, endpoint_url)
        v = remote.open(ref, allow_restricted)
        table = v.table(status=status)
    say(f"{v.ref} at {url}: {table.num_rows} rows ({status}) from {len(v.manifest.shards)} shard(s)")
    stored = v.manifest.rows if status == "all" else v.manifest.rows_by_status.get(status, 0)
    if table.num_rows < stored:  # only blocked copies of restricted real data are left out (RemoteVersion.table)
        say(f"{stored - table.num_rows} blocked copies of restricted real data withheld (--allow-restricted "
            "to include them)")
    cols = [c for c in ("sample_id", "origin", "status", "label", "prompt", "seed") if c in table.column_names]
    print_rows(None, cols, [list(row.values()) for row in table.select(cols).slice(0, limit).to_pylist()], boxed=False)
    if target is not None:
        import pyarrow.parquet as pq

        pq.write_table(table, target)
        say(f"wrote {table.num_rows} rows to {target}")


@app.command("remote-verify", rich_help_panel=SHARE)
def remote_verify(
    url: str = typer.Argument(..., help=URL_HELP),
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url", help=ENDPOINT_HELP),
) -> None:
    """Check a shared dataset: manifest chain to HEAD, shard and id-segment hashes (exit 1 on any problem)."""
    from catalog import CatalogError, parse_ref
    from catalog.remote import verify_remote

    name, version = parse_ref(ref)
    with failing_on(CatalogError):
        report = verify_remote(_remote(url, endpoint_url), name, version)
    for problem in report.problems:
        err.print(f"[red]FAIL[/] {escape(problem)}")
    verdict = "[green]OK[/]" if report.ok else "[red]CORRUPT[/]"
    out.print(f"{name}@{report.version} at {url}: {report.manifests_checked} manifests, {report.shards_checked} "
              f"shards, {report.id_segments_checked} id segments checked; {verdict}")
    if not report.ok:
        raise typer.Exit(1)
