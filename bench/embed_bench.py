"""Embedding throughput (dlib vs ONNX Runtime), detector recall (HOG vs CenterFace), alignment
consistency, and optionally LFW DevTrain pairs accuracy for both runtimes. One run, side by side.

    python bench/embed_bench.py                 # throughput + recall (about 3 minutes on 2 cores)
    python bench/embed_bench.py --pairs         # also LFW DevTrain pairs accuracy (~6 more min)
    python bench/embed_bench.py --providers cuda --skip-dlib --skip-recall   # on a GPU machine

Needs ../shared/faces for real chips, recall and pairs (random chips are used for throughput
otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from facesearch import similarity
from facesearch.vision.decode import decode_image
from facesearch.vision.dlib_model import DEFAULT_THRESHOLD, DlibDetector, DlibFaceModel
from facesearch.vision.model import Detection
from facesearch.vision.onnx_model import OnnxFaceModel

FACES = Path(__file__).resolve().parents[1] / "../shared/faces"
SMALL_MULTI_PEOPLE = {  # labelled people per scene (small/SOURCES.md)
    "two_people.jpg": 2,
    "obama_and_biden.jpg": 2,
    "kit_with_rose.jpg": 2,
    "longoria-cooper.jpg": 2,
}


def load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).pixels


def real_chips(count: int) -> list[np.ndarray]:
    model = DlibFaceModel()
    chips: list[np.ndarray] = []
    if FACES.is_dir():
        files = sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))[::37][:count]
        for path in files:
            image = load(path)
            chips.append(model.align(image, model.centred_detection(image)))
    if len(chips) < count:
        rng = np.random.default_rng(0)
        chips += list(rng.integers(0, 256, (count - len(chips), 150, 150, 3), dtype=np.uint8))
    return chips


def throughput(args: argparse.Namespace) -> None:
    chips = real_chips(args.faces)
    print(
        f"\n## Embedding throughput ({args.faces} faces, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores)\n"
    )
    print("| batch | dlib faces/s | ONNX Runtime faces/s | speed-up |")
    print("|---|---|---|---|")
    dlib_model = None if args.skip_dlib else DlibFaceModel()
    for batch in args.batches:
        onnx_model = OnnxFaceModel(batch_size=batch, threads=args.threads, providers=args.providers)
        onnx_model.raw_embed(chips[:batch])  # session + warm-up
        start = time.perf_counter()
        onnx_model.raw_embed(chips)
        onnx_rate = len(chips) / (time.perf_counter() - start)
        dlib_rate = float("nan")
        if dlib_model is not None:
            dlib_model.raw_embed(chips[:1])
            dlib_chips = chips[: args.dlib_faces]
            start = time.perf_counter()
            for i in range(0, len(dlib_chips), batch):
                dlib_model.raw_embed(dlib_chips[i : i + batch])
            dlib_rate = len(dlib_chips) / (time.perf_counter() - start)
        print(
            f"| {batch} | {dlib_rate:.1f} | {onnx_rate:.1f} ({onnx_model.runtime}) | "
            f"{onnx_rate / dlib_rate:.1f}x |"
        )


def central(dets: list[Detection], width: int, height: int) -> Detection | None:
    for det in dets:
        cx = (det.box.left + det.box.right) / 2
        cy = (det.box.top + det.box.bottom) / 2
        if abs(cx - width / 2) < 0.2 * width and abs(cy - height / 2) < 0.2 * height:
            return det
    return None


def recall(args: argparse.Namespace) -> None:
    from facesearch.vision.centerface import CenterFaceDetector

    hog = DlibDetector("hog")
    cf = CenterFaceDetector(threads=args.threads)
    print("\n## Detector recall\n")
    print("| scene | labelled people | HOG faces | CenterFace faces |")
    print("|---|---|---|---|")
    for name, people in SMALL_MULTI_PEOPLE.items():
        image = load(FACES / "small_multi" / name)
        print(f"| {name} | {people} | {len(hog.detect(image))} | {len(cf.detect(image))} |")

    files = sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))
    step = max(1, len(files) // args.lfw_images)
    chosen = files[::step][: args.lfw_images]
    found = {"hog": 0, "centerface": 0}
    seconds = {"hog": 0.0, "centerface": 0.0}
    both: list[tuple[np.ndarray, Detection, Detection]] = []
    for path in chosen:
        image = load(path)
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        hd = central(hog.detect(image), w, h)
        t1 = time.perf_counter()
        cd = central(cf.detect(image), w, h)
        t2 = time.perf_counter()
        seconds["hog"] += t1 - t0
        seconds["centerface"] += t2 - t1
        found["hog"] += hd is not None
        found["centerface"] += cd is not None
        if hd is not None and cd is not None and len(both) < args.align_faces:
            both.append((image, hd, cd))
    n = len(chosen)
    print(f"\nLFW DevTrain, {n} images (every {step}th), the centred person found:\n")
    print("| detector | recall | ms/image |")
    print("|---|---|---|")
    for key in ("hog", "centerface"):
        print(
            f"| {key} | {found[key] / n:.4f} ({found[key]}/{n}) | {1000 * seconds[key] / n:.1f} |"
        )

    # Alignment consistency: the same face aligned from HOG and from CenterFace.
    model = OnnxFaceModel(threads=args.threads, providers=args.providers)
    hog_chips = [model.align(img, hd) for img, hd, _ in both]
    cf_chips = [cf.align(img, cd) for img, _, cd in both]
    sims = similarity.paired_scores(model.embed(hog_chips), model.embed(cf_chips))
    print(
        f"\nAlignment consistency on {len(both)} LFW faces found by both: score(HOG chip, "
        f"CenterFace chip) median {np.median(sims):.4f}, 5th percentile "
        f"{np.percentile(sims, 5):.4f}, min {sims.min():.4f} "
        f"(same-person threshold {DEFAULT_THRESHOLD})"
    )


def pairs(args: argparse.Namespace) -> None:
    lfw = FACES / "lfw-devtrain"
    lines = (lfw / "pairsDevTrain.txt").read_text().split("\n")[1:]
    items: list[tuple[str, str, bool]] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            name, i, j = parts
            items.append(
                (f"{name}/{name}_{int(i):04d}.jpg", f"{name}/{name}_{int(j):04d}.jpg", True)
            )
        elif len(parts) == 4:
            a, i, b, j = parts
            items.append((f"{a}/{a}_{int(i):04d}.jpg", f"{b}/{b}_{int(j):04d}.jpg", False))
    names = sorted({p for a, b, _ in items for p in (a, b)})
    dlib_model = DlibFaceModel()
    onnx_model = OnnxFaceModel(batch_size=32, threads=args.threads, providers=args.providers)
    chips = []
    for rel in names:
        image = load(lfw / rel)
        chips.append(dlib_model.align(image, dlib_model.centred_detection(image)))
    t0 = time.perf_counter()
    e_onnx = onnx_model.embed(chips)
    t1 = time.perf_counter()
    e_dlib = dlib_model.embed(chips)
    t2 = time.perf_counter()
    index = {rel: k for k, rel in enumerate(names)}
    same = np.array([s for _, _, s in items])
    print(
        f"\n## LFW DevTrain pairs ({len(items)} pairs, {len(names)} images, centred-box "
        f"protocol, score >= {DEFAULT_THRESHOLD})\n"
    )
    print("| runtime | accuracy | best-threshold accuracy | embed seconds |")
    print("|---|---|---|---|")
    for label, emb, secs in (("dlib", e_dlib, t2 - t1), ("onnxruntime", e_onnx, t1 - t0)):
        left = np.array([index[a] for a, _, _ in items])
        right = np.array([index[b] for _, b, _ in items])
        sims = similarity.paired_scores(emb[left], emb[right])
        acc = float(np.mean((sims >= DEFAULT_THRESHOLD) == same))
        best = max(float(np.mean((sims >= t) == same)) for t in np.unique(sims))
        print(f"| {label} | {acc:.4f} | {best:.4f} | {secs:.1f} |")
    raw_diff = float(
        np.abs(onnx_model.raw_embed(chips[:200]) - dlib_model.raw_embed(chips[:200])).max()
    )
    print(f"\nmax |onnx - dlib| raw descriptor difference on the first 200 of them: {raw_diff:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--providers", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--faces", type=int, default=256, help="faces per ONNX measurement")
    parser.add_argument("--dlib-faces", type=int, default=64, help="faces per dlib measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--lfw-images", type=int, default=1000)
    parser.add_argument("--align-faces", type=int, default=300)
    parser.add_argument("--skip-dlib", action="store_true")
    parser.add_argument("--skip-recall", action="store_true")
    parser.add_argument("--pairs", action="store_true", help="LFW DevTrain pairs accuracy")
    args = parser.parse_args()
    throughput(args)
    if FACES.is_dir() and not args.skip_recall:
        recall(args)
    if FACES.is_dir() and args.pairs:
        pairs(args)


if __name__ == "__main__":
    main()
