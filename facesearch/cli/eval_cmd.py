"""`facesearch eval pairs` and `facesearch eval identify`: accuracy on labelled face sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from facesearch.cli.common import console, console_err, print_json, state_of
from facesearch.errors import FacesearchError

eval_app = typer.Typer(
    name="eval",
    help="Measure recognition accuracy on labelled images (LFW pairs, identification).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Embedding processes (default: the workers setting)."),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Folder that keeps embeddings between runs (reused for unchanged files).",
    ),
]
FaceOption = Annotated[
    str,
    typer.Option(
        "--face",
        help="Which detected face an image contributes: 'largest', or 'central' (nearest the "
        "image centre, for datasets cropped around the labelled person such as LFW).",
    ),
]
FallbackOption = Annotated[
    str | None,
    typer.Option(
        "--fallback-detector",
        help="Second detector tried on images where the configured one finds no face: cnn "
        "(dlib's MMOD CNN, slower and more sensitive), hog, centerface, or none. Images no "
        "detector finds are embedded from a centred box and counted in no_face. Default: cnn "
        "for the dlib models, none for sface (YuNet retries at a lower score threshold itself).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Face model to evaluate (dlib, dlib-onnx, sface; default: the model setting), with "
        "its own default detector unless it is the configured model.",
    ),
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
]


def _face(value: str) -> str:
    from facesearch.eval.embedding import FACE_CHOICES

    if value not in FACE_CHOICES:
        raise typer.BadParameter(f"expected one of: {', '.join(FACE_CHOICES)}", param_hint="--face")
    return value


def _fallback(value: str | None, model: str) -> str:
    from facesearch.eval.embedding import FALLBACK_CHOICES

    dlib = model.startswith("dlib")
    if value is None:
        return "cnn" if dlib else "none"
    if not dlib and value != "none":
        raise typer.BadParameter(
            f"the {model} model has no fallback detector (its detector retries at a lower score "
            "threshold); use none",
            param_hint="--fallback-detector",
        )
    if value not in FALLBACK_CHOICES:
        raise typer.BadParameter(
            f"expected one of: {', '.join(FALLBACK_CHOICES)}", param_hint="--fallback-detector"
        )
    return value


def _embedding_options(
    ctx: typer.Context,
    *,
    workers: int | None,
    progress: bool,
    as_json: bool,
    cache: Path | None,
    face: str,
    fallback: str | None,
    model: str | None = None,
) -> dict[str, Any]:
    """The options both evaluations pass to `embed_image_files`."""
    from facesearch.vision.registry import available_models, default_detector

    settings = state_of(ctx).settings()
    name = model or settings.model
    if name not in available_models():
        raise typer.BadParameter(
            f"expected one of: {', '.join(available_models())}", param_hint="--model"
        )
    return {
        "model_name": name,
        "detector": settings.detector if name == settings.model else default_detector(name),
        "workers": workers or settings.worker_count,
        "progress": progress and not as_json,
        "cache_dir": cache,
        "face": _face(face),
        "fallback": _fallback(fallback, name),
    }


def _print_report(title: str, rows: list[tuple[str, str]], report: Any) -> None:
    """A metrics table: the evaluation's own rows, then what every evaluation reports."""
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in [
        *rows,
        ("faces found only by the fallback detector", str(report.fallback_detected)),
        ("images without a face (centred box)", str(report.no_face)),
        ("model", report.model_id),
        ("runtime", report.runtime),
        ("face used", report.face),
        ("seconds", f"{report.seconds:.1f}"),
    ]:
        table.add_row(name, value)
    console.print(table)


def _fail(exc: FacesearchError) -> typer.Exit:
    console_err.print("[bold red]error:[/]", escape(str(exc)), soft_wrap=True)
    return typer.Exit(2)


@eval_app.command("pairs")
def pairs_command(
    ctx: typer.Context,
    images: Annotated[Path, typer.Argument(help="Image root: IMAGES/name/name_0001.jpg.")],
    pairs_file: Annotated[Path, typer.Argument(metavar="PAIRS", help="LFW-format pairs file.")],
    as_json: JsonOption = False,
    workers: WorkersOption = None,
    cache: CacheOption = None,
    face: FaceOption = "central",
    fallback: FallbackOption = None,
    progress: ProgressOption = True,
    model: ModelOption = None,
) -> None:
    """Verification accuracy (10-fold), TAR at FAR=1e-3 and faceless images on LFW pairs.

    With a folds header each fold is scored at the threshold best on the other folds; a single
    split is cut into 10 stratified contiguous folds and scored the same way. Images where the
    detector finds no face get a second detector (--fallback-detector); images no detector finds
    are embedded from a centred box (LFW protocol) and counted in no_face.
    """
    from facesearch.eval.pairs import evaluate_pairs

    options = _embedding_options(
        ctx,
        workers=workers,
        progress=progress,
        as_json=as_json,
        cache=cache,
        face=face,
        fallback=fallback,
        model=model,
    )
    try:
        report = evaluate_pairs(images, pairs_file, **options)
    except FacesearchError as exc:
        raise _fail(exc) from exc
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(
        f"LFW pairs: {pairs_file.name}",
        [
            ("accuracy", f"{report.accuracy:.4f} ± {report.accuracy_std:.4f}"),
            ("TAR @ FAR=1e-3", f"{report.tar_at_far_1e_3:.4f}"),
            ("best threshold (all pairs)", f"{report.threshold:.4f}"),
            ("pairs", str(report.pairs)),
            ("images", str(report.images)),
        ],
        report,
    )
    console.print(f"[dim]{report.fold_protocol}[/]")


@eval_app.command("identify")
def identify_command(
    ctx: typer.Context,
    images: Annotated[Path, typer.Argument(help="A folder per person, images inside.")],
    as_json: JsonOption = False,
    workers: WorkersOption = None,
    cache: CacheOption = None,
    face: FaceOption = "central",
    fallback: FallbackOption = None,
    progress: ProgressOption = True,
    model: ModelOption = None,
) -> None:
    """Rank-1, rank-10 and open-set TPIR at FPIR=0.01 on a folder-per-person tree.

    The gallery holds the first image (by file name) of each person with two or more images;
    their other images are mated probes; people with one image are non-mated probes.
    """
    from facesearch.eval.identify import evaluate_identify

    options = _embedding_options(
        ctx,
        workers=workers,
        progress=progress,
        as_json=as_json,
        cache=cache,
        face=face,
        fallback=fallback,
        model=model,
    )
    try:
        report = evaluate_identify(images, **options)
    except FacesearchError as exc:
        raise _fail(exc) from exc
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(
        f"Identification: {images}",
        [
            ("rank-1", f"{report.rank1:.4f}"),
            ("rank-10", f"{report.rank10:.4f}"),
            ("TPIR @ FPIR=0.01", f"{report.tpir_at_fpir_0_01:.4f}"),
            ("threshold at FPIR=0.01", f"{report.threshold:.4f}"),
            (
                "gallery / probes / distractors",
                f"{report.gallery} / {report.probes} / {report.distractors}",
            ),
        ],
        report,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
