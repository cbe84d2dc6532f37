"""YuNet (tiled, the sface model's default) against dlib HOG: recall on small_multi, LFW DevTrain
and a composed 1920 x 1080 crowd; detection + embedding throughput; ONNX Runtime settings for
SFace. Prints Markdown tables.

    python bench/detector_bench.py                  # everything, about 3 minutes on 2 cores
    python bench/detector_bench.py --lfw-step 9     # more DevTrain images (slower: HOG)
    python bench/detector_bench.py --skip-hog --skip-tuning

Needs ../shared/faces and the YuNet/SFace files (python -m facesearch.vision.model_files fetch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facesearch.vision.decode import decode_image
from facesearch.vision.model import Detection, FaceModel, RGBImage
from facesearch.vision.pipeline import analyse, embed_faces
from facesearch.vision.registry import build_model
from tests.vision.crowd import compose_crowd, matched

FACES = Path(__file__).resolve().parents[1] / "../shared/faces"
SMALL_MULTI_PEOPLE = {  # labelled people per scene (small/SOURCES.md)
    "two_people.jpg": 2,
    "obama_and_biden.jpg": 2,
    "kit_with_rose.jpg": 2,
    "longoria-cooper.jpg": 2,
}
Detector = Callable[[RGBImage], list[Detection]]


def load(path: Path) -> RGBImage:
    return decode_image(path.read_bytes()).pixels


def detectors(args: argparse.Namespace) -> dict[str, Detector]:
    from facesearch.vision.yunet import YuNetDetector

    found: dict[str, Detector] = {"yunet (tiled)": YuNetDetector(threads=args.threads).detect}
    if not args.skip_hog:
        from facesearch.vision.dlib_model import DlibDetector

        found["dlib hog"] = DlibDetector("hog").detect
    return found


def recall(args: argparse.Namespace) -> None:
    print("\n## Detector recall\n")
    print(
        "| detector | small_multi people found | small_multi faces | DevTrain images with a "
        "face | DevTrain ms/image | crowd 1920x1080 (16 faces, 20-35 px) | crowd s/image |"
    )
    print("|---|---|---|---|---|---|---|")
    lfw = sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))[:: args.lfw_step]
    lfw_images = [load(p) for p in lfw]
    crowds = [compose_crowd(FACES / "lfw-devtrain", count=16, seed=s) for s in args.crowd_seeds]
    for name, detect in detectors(args).items():
        people = total_people = faces = 0
        for scene, labelled in SMALL_MULTI_PEOPLE.items():
            n = len(detect(load(FACES / "small_multi" / scene)))
            people += min(n, labelled)
            total_people += labelled
            faces += n
        started = time.perf_counter()
        with_face = sum(bool(detect(image)) for image in lfw_images)
        lfw_ms = (time.perf_counter() - started) / len(lfw_images) * 1000
        hits, extra = [], 0
        started = time.perf_counter()
        for image, truth in crowds:
            boxes = [d.box.as_list() for d in detect(image)]
            hits.append(matched(truth, boxes))  # type: ignore[arg-type]
            extra += len(boxes) - hits[-1]
        crowd_s = (time.perf_counter() - started) / len(crowds)
        crowd = " + ".join(f"{h}/16" for h in hits) + (f" ({extra} other)" if extra else "")
        print(
            f"| {name} | {people}/{total_people} | {faces} | {with_face}/{len(lfw_images)} "
            f"({with_face / len(lfw_images):.3f}) | {lfw_ms:.0f} | {crowd} | {crowd_s:.2f} |"
        )
    print(
        f"\nDevTrain: every {args.lfw_step}th image ({len(lfw_images)}); crowd seeds "
        f"{args.crowd_seeds}."
    )


def throughput(args: argparse.Namespace) -> None:
    files = sorted(
        p for p in (FACES / "small").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    files += sorted((FACES / "small_multi").glob("*.jpg"))
    images = [load(p) for p in files]
    lfw = [load(p) for p in sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))[::97][:100]]
    print(
        f"\n## Detection + alignment + embedding ({args.threads} threads, {os.cpu_count()} cores)\n"
    )
    print("| model (detector) | images | faces | s | faces/s | LFW 250x250 images/s |")
    print("|---|---|---|---|---|---|")
    names = ["sface"] + ([] if args.skip_hog else ["dlib-onnx"])
    for name in names:
        model: FaceModel = build_model(name, threads=args.threads, providers="cpu")
        analyse(model, images[0])  # load the sessions
        embed_faces(model, analyse(model, images[0]))
        started = time.perf_counter()
        faces = 0
        for image in images:
            found = analyse(model, image)
            faces += len(embed_faces(model, found))
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        for image in lfw:
            embed_faces(model, analyse(model, image, centred_fallback=True))
        lfw_rate = len(lfw) / (time.perf_counter() - started)
        print(
            f"| {name} ({model.detector_name}) | {len(images)} | {faces} | {seconds:.1f} | "
            f"{faces / seconds:.1f} | {lfw_rate:.1f} |"
        )


def tuning(args: argparse.Namespace) -> None:
    """SFace embedding rate by graph optimisation level, intra-op threads and batch size."""
    import onnxruntime as ort

    from facesearch.vision.model_files import SFACE, verified_bytes
    from facesearch.vision.sface import batched_graph

    graph, _ = batched_graph(verified_bytes(SFACE))
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (64, 3, 112, 112)).astype(np.float32)
    print("\n## SFace on ONNX Runtime: faces/s (64 chips)\n")
    print("| optimisation | threads | batch 1 | batch 8 | batch 32 |")
    print("|---|---|---|---|---|")
    for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"):
        for threads in (1, 2):
            options = ort.SessionOptions()
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            session.run(None, {"data": chips[:8]})
            rates = []
            for batch in (1, 8, 32):
                started = time.perf_counter()
                for i in range(0, len(chips), batch):
                    session.run(None, {"data": chips[i : i + batch]})
                rates.append(len(chips) / (time.perf_counter() - started))
            print(f"| {level} | {threads} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lfw-step", type=int, default=19, help="every Nth DevTrain image")
    parser.add_argument("--crowd-seeds", type=int, nargs="+", default=[8, 1, 2])
    parser.add_argument("--skip-hog", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-tuning", action="store_true")
    args = parser.parse_args()
    if not FACES.is_dir():
        raise SystemExit(f"needs the shared face photos at {FACES}")
    if not args.skip_recall:
        recall(args)
    if not args.skip_throughput:
        throughput(args)
    if not args.skip_tuning:
        tuning(args)


if __name__ == "__main__":
    main()
