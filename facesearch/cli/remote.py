"""`facesearch remote ...`: talk to a facesearch server with an API key.

The server and key come from --url/--api-key or FACESEARCH_URL/FACESEARCH_API_KEY (prefer the
environment: a key on the command line lands in the shell history). Ids are the server's opaque
strings (`col_...`, `job_...`), shown and taken as they are."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from facesearch.cli.common import console, console_err, print_json

if TYPE_CHECKING:  # imported where used: `facesearch --help` loads no HTTP client
    from facesearch.client import ApiError, FacesearchClient

remote_app = typer.Typer(
    help="Use a remote facesearch server with an API key.", no_args_is_help=True
)

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="server base URL (default: $FACESEARCH_URL)")
]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key fsk_... (default: $FACESEARCH_API_KEY)")
]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="do not verify the TLS certificate (testing only)")
]
JsonOpt = Annotated[bool, typer.Option("--json")]


def _client(url: str | None, key: str | None, insecure: bool = False) -> FacesearchClient:
    from facesearch.client import FacesearchClient

    url = url or os.environ.get("FACESEARCH_URL")
    key = key or os.environ.get("FACESEARCH_API_KEY")
    if not url or not key:
        console_err.print(
            "[bold red]error:[/] set FACESEARCH_URL and FACESEARCH_API_KEY (or "
            "pass --url and --api-key)"
        )
        sys.exit(2)
    return FacesearchClient(url, key, verify=not insecure)


def _fail(exc: ApiError) -> None:
    from facesearch.client import RateLimited

    extra = ""
    if isinstance(exc, RateLimited) and exc.retry_after:
        extra = f" (retry after {int(exc.retry_after)} s)"
    console_err.print(f"[bold red]error {exc.status}:[/] {exc.detail}{extra}")
    sys.exit(1)


@remote_app.command("search")
def search(
    probe: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    case: Annotated[str, typer.Option("--case", help="case number")],
    purpose: Annotated[str, typer.Option("--purpose", help="why this search is needed")],
    collection: Annotated[
        list[str] | None,
        typer.Option(
            "--collection", help="collection name or id (repeat; default: all you may search)"
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=100)] = 10,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Search a probe photo on the server (recorded in the audit log with case and purpose)."""
    from rich.table import Table

    from facesearch.client import ApiError

    with _client(url, api_key, insecure) as fs:
        try:
            ids = [fs.collection_id(c) for c in collection or []]
            result = fs.search(probe, case, purpose, ids or None, top)
        except ApiError as exc:
            _fail(exc)
            return
    if as_json:
        print_json(result)
        return
    console.print(
        f"search {result['search_id']} for case {result['case_number']} "
        f"(audit entry {result['audit_entry_id']})"
    )
    console.print(f"[yellow]{result['notice']}[/]")
    if not result["faces"]:
        console.print("no face found in the probe")
    for face in result["faces"]:
        table = Table(title=f"probe face {face['index']} at {face['box']}")
        for col in ("rank", "score", "result", "face", "collection", "source", "status"):
            table.add_column(col)
        for c in face["candidates"]:
            table.add_row(
                str(c["rank"]),
                f"{c['score']:.3f}",
                str(c["result_id"]),
                str(c["face_id"]),
                c["collection"],
                c["source"],
                c["status"],
            )
        console.print(table)


@remote_app.command("collections")
def collections(
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Collections your organisation owns or may search."""
    from rich.table import Table

    from facesearch.client import ApiError

    with _client(url, api_key, insecure) as fs:
        try:
            items = fs.collections()
        except ApiError as exc:
            _fail(exc)
            return
    if as_json:
        print_json(items)
        return
    table = Table()
    for col in ("id", "name", "access", "files", "faces", "retention_days"):
        table.add_column(col)
    for c in items:
        table.add_row(
            str(c["id"]),
            c["name"],
            c["access"],
            str(c["files"]),
            str(c["faces"]),
            str(c["retention_days"]),
        )
    console.print(table)


@remote_app.command("ingest")
def ingest(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=True, readable=True)],
    collection: Annotated[str, typer.Option("--collection", help="collection name or id")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Upload the images of a folder (or one file) into a collection on the server."""
    from facesearch.client import ApiError
    from facesearch.vision.formats import IMAGE_SUFFIXES

    files = (
        [folder]
        if folder.is_file()
        else sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    )
    if not files:
        console_err.print("[bold red]error:[/] no image files found")
        sys.exit(2)
    with _client(url, api_key, insecure) as fs:
        try:
            job = fs.upload(fs.collection_id(collection), files)
            if wait:
                job = fs.wait_job(str(job["id"]))
        except ApiError as exc:
            _fail(exc)
            return
    _show_job(job, as_json)


@remote_app.command("job")
def job(
    job_id: Annotated[str, typer.Argument(help="the job's id (job_...)")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """An ingest job's progress."""
    from facesearch.client import ApiError

    with _client(url, api_key, insecure) as fs:
        try:
            data = fs.job(job_id)
        except ApiError as exc:
            _fail(exc)
            return
    _show_job(data, as_json)


def _show_job(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    console.print(
        f"job {data['id']}: {data['status']}, {data['files_done']}/"
        f"{data['files_total']} files, {data['faces']} faces"
    )
    if data.get("error"):
        console_err.print(f"[red]{data['error']}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(remote_app, name="remote")
