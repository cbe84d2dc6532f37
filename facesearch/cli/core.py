"""Core commands: init, ingest, search, verify, stats, index rebuild."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from facesearch.cli.common import console, console_err, print_json, state_of
from facesearch.errors import FacesearchError

if TYPE_CHECKING:
    from facesearch.config import Settings

index_app = typer.Typer(help="Vector index maintenance.", no_args_is_help=True)

# Every command imports what it needs inside itself: `facesearch --help` and a search load
# only their own modules (tests/test_cli.py checks which).


def _read(path: Path) -> bytes:
    from facesearch.ingest.walker import read_checked

    try:
        return read_checked(path)
    except OSError as exc:
        raise FacesearchError(f"cannot read {path}: {exc.strerror}") from exc


def init(ctx: typer.Context) -> None:
    """Create a data directory (SQLite, vector index, encrypted blobs) and its key file."""
    from facesearch.deployment import init_deployment

    settings = state_of(ctx).settings()
    key_file = init_deployment(settings)
    console.print(f"[green]created[/] data directory {settings.home}")
    console.print(f"[green]created[/] key file {key_file} (mode 0600)")
    console.print(
        "[yellow]Back up the key file separately: without it nothing in the data "
        "directory can be read.[/]"
    )


def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Folder (walked recursively) or image file.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: every core).")
    ] = None,
    legal_basis: Annotated[
        str | None,
        typer.Option(help="Why this collection may be processed (recorded on the collection)."),
    ] = None,
    retention_days: Annotated[
        int | None, typer.Option(help="Days to keep the collection's faces before purging.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Face model of a new collection: sface (default), dlib-onnx or dlib. An "
            "existing collection keeps its own."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Add every face found under PATH to a collection (resumable; skips ingested files)."""
    from rich.table import Table

    from facesearch.cli.progress import RichIngestProgress, ingest_bar
    from facesearch.deployment import Deployment
    from facesearch.gallery.collections import ensure_collection
    from facesearch.ingest.runner import FolderIngest

    dep = Deployment.open(state_of(ctx).settings())
    try:
        collection_id = ensure_collection(
            dep, collection, legal_basis=legal_basis, retention_days=retention_days, model=model
        )
        with ingest_bar("ingest", console_err, disable=as_json) as bar:
            summary = FolderIngest(
                dep, collection_id, workers=workers, progress=RichIngestProgress(bar)
            ).run(path)
    finally:
        dep.close()
    data = summary.as_dict()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"ingest into {collection!r}", show_header=False)
    for key in (
        "files_seen",
        "ok",
        "no_face",
        "rejected",
        "skipped_already_ingested",
        "duplicates",
        "faces",
        "low_quality_faces",
        "seconds",
        "files_per_s",
        "faces_per_s",
    ):
        table.add_row(key.replace("_", " "), str(data[key]))
    console.print(table)
    if summary.rejected_files:
        rejected = Table(title="rejected files")
        rejected.add_column("file")
        rejected.add_column("reason")
        for path_, reason in summary.rejected_files[:50]:
            rejected.add_row(path_, reason)
        console.print(rejected)
        if len(summary.rejected_files) > 50:
            console.print(f"… and {len(summary.rejected_files) - 50} more (use --json)")


def search(
    ctx: typer.Context,
    probe: Annotated[Path, typer.Argument(help="Probe image.")],
    collection: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="Collection to search (repeatable; default: all)."),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Candidates per probe face.")] = 10,
    threshold: Annotated[
        float | None, typer.Option(help="Only candidates scoring at least this (0 to 1).")
    ] = None,
    crops: Annotated[Path | None, typer.Option(help="Write candidates' face crops here.")] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Search in this process even when the service of this data directory runs.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search the gallery for every face in PROBE: ranked candidates (leads, not identities).

    When `facesearch serve` runs on this data directory the search runs in it, on its warm model
    and index (a private socket; ADR 0019); otherwise, or with --local or --crops, here."""
    settings = state_of(ctx).settings()
    image = _read(probe)
    result = None
    if not local and crops is None and settings.service_socket:
        from facesearch.cli import via_service

        if via_service.may_listen(settings):  # the key is loaded only then
            from facesearch.crypto import KeyRing

            key = KeyRing.load(settings.resolved_key_file).local_channel_key
            result = via_service.search(
                settings, key, image, collections=collection or None, top=top, threshold=threshold
            )
            if result is not None:
                console_err.print("answered by the running service of this data directory")
    if result is None:
        result = _search_here(settings, image, collection, top, threshold, crops)
    if as_json:
        print_json(result)
        return
    _print_result(result)


def _search_here(
    settings: Settings,
    image: bytes,
    collection: list[str] | None,
    top: int,
    threshold: float | None,
    crops: Path | None,
) -> dict[str, Any]:
    from facesearch.deployment import Deployment
    from facesearch.gallery.names import collection_models, ids_by_name

    dep = Deployment.open(settings)
    try:
        with dep.db.session() as s:
            ids = ids_by_name(s, collection or None)
            models = collection_models(s, ids, dep.default_model_id)
        for model_id, cids in models.items():  # beside the model's work, on another core
            dep.open_index_in_background(model_id, cids)
        from facesearch.search.operator import operator_search  # (its imports overlap that too)

        result = operator_search(
            dep,
            image,
            collection_ids=ids,
            top_k=top,
            threshold=threshold,
            channel="cli",
        )
        if crops is not None:
            from facesearch.gallery.faces import operator_crop

            crops.mkdir(parents=True, exist_ok=True)
            with dep.db.session() as s:
                for face in result.faces:
                    for cand in face.candidates:
                        name = f"probe{face.index}_rank{cand.rank:03d}_face{cand.face_id}.jpg"
                        (crops / name).write_bytes(operator_crop(dep, s, cand.face_id))
    finally:
        dep.close()
    return result.as_dict()


def _print_result(result: dict[str, Any]) -> None:
    """A search result (`EngineResult.as_dict()`) as tables."""
    if not result["faces"]:
        console.print("no face found in the probe image")
        return
    from rich.table import Table

    for face in result["faces"]:
        q = face["quality"]
        table = Table(
            title=f"probe face {face['index']} at {face['box']} "
            f"(quality {q['score']:.2f}{', LOW' if q['low'] else ''})"
        )
        for col in ("rank", "score", "≥thr", "collection", "quality"):
            table.add_column(col, no_wrap=True)
        table.add_column("source (face box)", overflow="fold", ratio=1)
        for c in face["candidates"]:
            quality = f"{c['quality']:.2f}" + (" low" if c["low_quality"] else "")
            at = c["frame_time"]
            where = c["source"] if at is None else f"{c['source']} @ {at:.2f}s"
            table.add_row(
                str(c["rank"]),
                f"{c['score']:.4f}",
                "yes" if c["above_threshold"] else "",
                c["collection"],
                quality,
                f"{where} {c['box']}",
            )
        console.print(table)
    used = "; ".join(
        f"model {m['model_id']}, threshold {m['threshold']}, {m['gallery_faces']} faces"
        + (
            f" (about {m['expected_false_candidates']:g} unrelated faces expected above it)"
            if m["expected_false_candidates"] is not None
            else ""
        )
        for m in result["models"]
    )
    console.print(f"{used}.")
    console.print("Candidates are leads for a person to review, not identifications.")


def verify(
    ctx: typer.Context,
    a: Annotated[Path, typer.Argument(help="First image.")],
    b: Annotated[Path, typer.Argument(help="Second image.")],
    threshold: Annotated[
        float | None, typer.Option(help="Decision threshold (score, 0 to 1).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Are the largest faces of A and B the same person? Prints score and threshold."""
    from facesearch.search.engine import verify_images
    from facesearch.vision.decode import DecodeLimits
    from facesearch.vision.registry import build_model

    settings = state_of(ctx).settings()
    model = build_model(settings.model, detector=settings.detector, **settings.model_options())
    limits = DecodeLimits.of(settings)
    result = verify_images(
        model,
        _read(a),
        _read(b),
        threshold=threshold,
        limits=limits,
        min_face_size=settings.min_face_size,
    )
    if as_json:
        print_json(result.as_dict())
        return
    verdict = (
        "[green]likely the same person[/]"
        if result.same_person
        else "[red]likely different people[/]"
    )
    console.print(f"{verdict}: score {result.score:.4f}, threshold {result.threshold}")
    for label, face in (("A", result.face_a), ("B", result.face_b)):
        if face["quality"]["low"]:
            console.print(
                f"[yellow]warning:[/] the face in {label} is low quality "
                f"({'; '.join(face['quality']['reasons'])})"
            )


def stats(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Collections, files, faces and index size."""
    from rich.table import Table
    from sqlalchemy import func, select

    from facesearch.deployment import Deployment
    from facesearch.store.gallery import Collection, Face, SourceFile

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            per = s.execute(
                select(
                    Collection.name,
                    Collection.model_id,
                    select(func.count(SourceFile.id))
                    .where(SourceFile.collection_id == Collection.id)
                    .scalar_subquery(),
                    select(func.count(Face.id))
                    .where(
                        Face.collection_id == Collection.id, Face.model_id == Collection.model_id
                    )
                    .scalar_subquery(),
                ).order_by(Collection.name)
            ).all()
            by_status = dict(
                s.execute(
                    select(SourceFile.status, func.count(SourceFile.id)).group_by(SourceFile.status)
                ).all()
            )
        index = dep.index
        per_collection = [
            {"name": r[0], "model_id": r[1], "files": int(r[2]), "faces": int(r[3])} for r in per
        ]
        files = sum(int(r[2]) for r in per)
        faces = sum(int(r[3]) for r in per)
        data: dict[str, Any] = {
            "collections": len(per),
            "files": files,
            "faces": faces,
            "index_size": index.size(),
            "index_bytes": index.nbytes(),
            "files_by_status": by_status,
            "per_collection": per_collection,
        }
    finally:
        dep.close()
    if as_json:
        print_json(data)
        return
    table = Table(title=f"facesearch at {dep.settings.home}")
    for col in ("collection", "model", "files", "faces"):
        table.add_column(col)
    for row in per_collection:
        table.add_row(row["name"], str(row["model_id"]), str(row["files"]), str(row["faces"]))
    console.print(table)
    console.print(
        f"{files} files ({json.dumps(by_status)}), {faces} faces; "
        f"index holds {data['index_size']} vectors ({data['index_bytes'] / 1e6:.1f} MB in memory)"
    )


def reembed(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    model: Annotated[
        str | None, typer.Option(help="Target model: sface (default), dlib-onnx or dlib.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: every core).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Move a collection to another face model, from its stored encrypted images (resumable;
    the collection switches when every image is done)."""
    from facesearch.cli.progress import RichIngestProgress, ingest_bar
    from facesearch.deployment import Deployment
    from facesearch.gallery.collections import ids_by_name
    from facesearch.ingest.reembed import Reembed

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            (collection_id,) = ids_by_name(s, [collection])
        with ingest_bar("re-embed", console_err, disable=as_json) as bar:
            summary = Reembed(
                dep, collection_id, model, workers=workers, progress=RichIngestProgress(bar)
            ).run()
    finally:
        dep.close()
    data = summary.as_dict()
    if as_json:
        print_json(data)
        return
    console.print(
        f"[green]collection {summary.collection!r} now holds {summary.to_model} embeddings[/]: "
        f"{summary.faces} faces from {summary.files} images ({summary.skipped} done before, "
        f"{summary.unreadable} unreadable), was {summary.from_model}"
    )


def delete(
    ctx: typer.Context,
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a collection with its files, faces, index entries and images (audited). Past
    searches keep their records."""
    from facesearch.deployment import Deployment
    from facesearch.gallery.collections import delete_operator_collection

    if not yes:
        typer.confirm(f"Delete collection {collection!r} and everything in it?", abort=True)
    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            done = delete_operator_collection(dep, s, collection)
    finally:
        dep.close()
    console.print(
        f"[green]deleted[/] collection {collection!r}: {done['files']} files, {done['faces']} faces"
    )


@index_app.command("rebuild")
def index_rebuild(ctx: typer.Context) -> None:
    """Rebuild the vector index from the database (the source of truth), every model in use.
    New segments are written beside the old ones and switched to at once, so a search (or a
    crash) meanwhile sees the old index whole."""
    from facesearch.deployment import Deployment
    from facesearch.store import faces

    dep = Deployment.open(state_of(ctx).settings())
    try:
        with dep.db.session() as s:
            model_ids = sorted(set(faces.model_ids(s)) | {dep.default_model_id})
        for model_id in model_ids:
            try:
                index = dep.new_index(model_id)
            except ValueError as exc:
                console_err.print(f"[yellow]skipped {model_id}:[/] {exc}")
                continue
            report = dep.sync_index(index, force=True)
            console.print(
                f"{model_id}: rebuilt {report.rebuilt} collection(s); "
                f"index holds {index.size()} vectors"
            )
    finally:
        dep.db.dispose()


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(ingest)
    app.command()(search)
    app.command()(verify)
    app.command()(stats)
    app.command()(reembed)
    app.command()(delete)
    app.add_typer(index_app, name="index")
    _ = console_err
