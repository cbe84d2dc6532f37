"""Both accuracy evaluations on LFW DevTrain, with timings, as one table.

    python bench/eval_lfw.py                     # ../shared/faces/lfw-devtrain, every core
    python bench/eval_lfw.py --workers 2 --cache /tmp/fs-eval-cache --json

Runs exactly what `facesearch eval pairs` and `facesearch eval identify` run (same functions).
With --cache, identify reuses the embeddings pairs computed (and a second run reuses all), so
its seconds then cover only the images not embedded before; the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from facesearch.config import load_settings
from facesearch.eval.identify import evaluate_identify
from facesearch.eval.pairs import evaluate_pairs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "faces" / "lfw-devtrain"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument(
        "--pairs", type=Path, default=None, help="pairs file (default: IMAGES/pairsDevTrain.txt)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--cache", type=Path, default=None, help="embedding cache folder shared by both evaluations"
    )
    parser.add_argument("--only", choices=("pairs", "identify"), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        print(
            f"LFW DevTrain not found at {args.images} (see ../shared/faces/README.md)",
            file=sys.stderr,
        )
        return 2
    settings = load_settings()
    common = dict(
        model_name=settings.model,
        detector=settings.detector,
        workers=args.workers,
        progress=not args.json,
        cache_dir=args.cache,
    )
    out: dict[str, object] = {
        "model": settings.model,
        "detector": settings.detector,
        "workers": args.workers,
        "cached": args.cache is not None,
    }
    if args.only in (None, "pairs"):
        pairs = evaluate_pairs(
            args.images, args.pairs or args.images / "pairsDevTrain.txt", **common
        )  # type: ignore[arg-type]
        out["pairs"] = pairs.as_dict()
    if args.only in (None, "identify"):
        identify = evaluate_identify(args.images, **common)  # type: ignore[arg-type]
        out["identify"] = identify.as_dict()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows: list[tuple[str, str]] = []
    if "pairs" in out:
        p = out["pairs"]
        assert isinstance(p, dict)
        rows += [
            ("pairs: accuracy (10-fold)", f"{p['accuracy']:.4f} ± {p['accuracy_std']:.4f}"),
            ("pairs: TAR @ FAR=1e-3", f"{p['tar_at_far_1e-3']:.4f}"),
            (
                "pairs: best threshold (all pairs)",
                f"{p['threshold']:.4f} (acc {p['threshold_accuracy']:.4f})",
            ),
            ("pairs: images / no_face", f"{p['images']} / {p['no_face']}"),
            ("pairs: seconds", f"{p['seconds']:.1f}"),
        ]
    if "identify" in out:
        i = out["identify"]
        assert isinstance(i, dict)
        rows += [
            ("identify: rank-1", f"{i['rank1']:.4f}"),
            ("identify: rank-10", f"{i['rank10']:.4f}"),
            (
                "identify: TPIR @ FPIR=0.01",
                f"{i['tpir_at_fpir_0.01']:.4f} (threshold {i['fpir_threshold']:.4f})",
            ),
            (
                "identify: gallery / probes / distractors",
                f"{i['gallery']} / {i['probes']} / {i['distractors']}",
            ),
            ("identify: no_face", str(i["no_face"])),
            (
                "identify: seconds",
                f"{i['seconds']:.1f}"
                + (" (embeddings cached by pairs reused)" if args.cache else ""),
            ),
        ]
    width = max(len(name) for name, _ in rows)
    print(f"LFW DevTrain, model {settings.model}/{settings.detector}, {args.workers} workers")
    print(f"| {'metric'.ljust(width)} | value")
    print(f"|-{'-' * width}-|------")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
