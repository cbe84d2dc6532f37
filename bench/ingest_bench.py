"""Ingest throughput: facesearch's pipeline vs the plain per-image dlib loop, same images, one run.

The baseline is what `face_recognition` does: for each image, in one process, load it, run the
HOG detector (upsample 1), the 5-point shape predictor and one descriptor call per face.
facesearch ingests the same files into a fresh data directory (decode + detect + embed in worker
processes, encrypted storage, index) with the configured model runtime(s).

    python bench/ingest_bench.py ../shared/faces/lfw-devtrain --limit 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image


def baseline(files: list[Path]) -> tuple[int, float]:
    from facesearch.vision.dlib_model import RECOGNITION_WEIGHTS, SHAPE_WEIGHTS, weights_path

    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(weights_path(SHAPE_WEIGHTS)))
    net = dlib.face_recognition_model_v1(str(weights_path(RECOGNITION_WEIGHTS)))
    faces = 0
    start = time.perf_counter()
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        for rect in detector(image, 1):
            net.compute_face_descriptor(image, shape(image, rect))
            faces += 1
    return faces, time.perf_counter() - start


def ours(files: list[Path], root: Path, model: str, detector: str | None) -> tuple[int, float]:
    from facesearch.config import load_settings
    from facesearch.deployment import Deployment, init_deployment
    from facesearch.gallery.collections import ensure_collection
    from facesearch.ingest.runner import FolderIngest

    work = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    try:
        staging = work / "images"
        for path in files:
            target = staging / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # ingest never follows links
        settings = load_settings(
            work / "home", key_file=work / "master.key", model=model, detector=detector
        )
        init_deployment(settings)
        dep = Deployment.open(settings)
        try:
            start = time.perf_counter()
            summary = FolderIngest(dep, ensure_collection(dep, "bench")).run(staging)
            return summary.faces, time.perf_counter() - start
        finally:
            dep.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="first N images (0 = all)")
    parser.add_argument("--models", default="sface", help="comma list: sface,dlib-onnx,dlib")
    parser.add_argument("--detector", default=None, help="default: each model's own")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    if args.limit:
        files = files[: args.limit]
    rows: list[tuple[str, int, float]] = []
    if not args.skip_baseline:
        faces, secs = baseline(files)
        rows.append(("per-image dlib loop (1 process)", faces, secs))
    for model in args.models.split(","):
        faces, secs = ours(files, args.images, model, args.detector)
        rows.append(
            (
                f"facesearch ingest, {model}/{args.detector or 'own detector'}, "
                f"{os.cpu_count()} workers",
                faces,
                secs,
            )
        )
    print(f"\n{len(files)} images from {args.images}, {os.cpu_count()} cores\n")
    print(f"| {'pipeline':55} | faces | seconds | images/s | faces/s |")
    print(f"|{'-' * 57}|-------|---------|----------|---------|")
    for name, faces, secs in rows:
        print(
            f"| {name:55} | {faces:5d} | {secs:7.1f} | {len(files) / secs:8.2f} | "
            f"{faces / secs:7.2f} |"
        )


if __name__ == "__main__":
    main()
