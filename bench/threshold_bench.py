"""What a score means for each model: false-match rate per comparison and the expected false
positive identification rate (FPIR) of an open-set search in a gallery of 1M unrelated faces.

    facesearch eval identify ../shared/faces/lfw-devtrain --model sface --cache /tmp/evalcache
    python bench/threshold_bench.py /tmp/evalcache/eval-embeddings-sface-*.npz [--people FILE]

Input: the embedding cache an `eval` run leaves (one embedding per image; the identity is the
image's folder). Every pair of images of two different people is an impostor comparison
(DevTrain: about 45 million). For a threshold t:

- FMR(t): the measured fraction of impostor comparisons scoring at least t;
- beyond the last measured impostor (FMR below about 1/45M) the upper tail is extrapolated with
  a peaks-over-threshold fit: above u, the 99.99th percentile of impostor scores, excesses are
  taken as exponential (a generalised Pareto tail with shape 0; its scale is the mean excess), so
  FMR(t) = FMR(u)·exp(−(t − u)/β);
- FPIR(t, N) = 1 − (1 − FMR(t))^N: the chance that a search for someone who is not in a gallery
  of N unrelated faces returns at least one candidate at or above t, taking comparisons as
  independent (real galleries hold look-alikes and duplicates, so treat it as a lower bound);
- FNIR(t): the fraction of mated probes of the identification protocol (`eval identify`: the
  first image of each person with two or more is the gallery, the others are probes) whose
  gallery image scores below t, i.e. people who are in the gallery and would not be raised.

The table is printed for the model's default threshold and for thresholds that keep FPIR at 1M
at 1 % and 10 %.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facesearch.similarity import score_matrix

F64 = npt.NDArray[np.float64]
GALLERY = 1_000_000


def load(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], list[str]]:
    with np.load(path, allow_pickle=False) as data:
        keys = [str(k).split("|", 1)[0] for k in data["keys"].tolist()]
        vectors = data["vectors"].astype(np.float32)
    people = [Path(k).parent.name for k in keys]
    names = {p: i for i, p in enumerate(sorted(set(people)))}
    return vectors, np.asarray([names[p] for p in people], dtype=np.int64), keys


def impostor_and_genuine(
    vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], chunk: int = 512
) -> tuple[F64, F64, int]:
    """All impostor scores above a floor (kept sorted) and every genuine score."""
    impostor_parts: list[F64] = []
    genuine_parts: list[F64] = []
    total_impostors = 0
    n = len(vectors)
    for start in range(0, n, chunk):
        block = score_matrix(vectors[start : start + chunk], vectors).astype(np.float64)
        rows = np.arange(start, min(start + chunk, n))
        upper = rows[:, None] < np.arange(n)[None, :]  # each pair once
        same = labels[rows][:, None] == labels[None, :]
        genuine_parts.append(block[upper & same])
        imp = block[upper & ~same]
        total_impostors += imp.size
        impostor_parts.append(imp[imp >= 0.25])  # the lower scores never matter here
    impostors = np.sort(np.concatenate(impostor_parts))
    return impostors, np.concatenate(genuine_parts), total_impostors


def fmr_at(t: float, impostors: F64, total: int, u: float, beta: float) -> float:
    """Measured where more than 100 impostors lie above t; beyond, the tail fit. (The highest
    DevTrain "impostor" scores are label errors of LFW, one person filed under two names —
    Joseph/Sepp Blatter, Doc/Glenn Rivers, Chyung Dai-chul/Dai Chul Chyung — and they are
    printed, not fitted.)"""
    above = total_above(t, impostors)
    if t <= u or above > 100:
        return above / total
    p_u = total_above(u, impostors) / total
    return p_u * math.exp(-(t - u) / beta)


def total_above(t: float, impostors: F64) -> int:
    return int(len(impostors) - np.searchsorted(impostors, t, side="left"))


def fpir(fmr: float, n: int = GALLERY) -> float:
    return -math.expm1(n * math.log1p(-fmr)) if fmr < 1 else 1.0


def threshold_for_fpir(target: float, impostors: F64, total: int, u: float, beta: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if fpir(fmr_at(mid, impostors, total, u, beta)) > target:
            lo = mid
        else:
            hi = mid
    return hi


def mated_scores(
    vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], keys: list[str]
) -> F64:
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    first: dict[int, int] = {}
    probes: list[tuple[int, int]] = []
    counts = np.bincount(labels)
    for i in order:
        person = int(labels[i])
        if counts[person] < 2:
            continue
        if person not in first:
            first[person] = i
        else:
            probes.append((i, first[person]))
    a = vectors[[p for p, _ in probes]]
    b = vectors[[g for _, g in probes]]
    return (1.0 - np.linalg.norm(a - b, axis=1) / 2.0).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache", type=Path, help="an eval embedding cache (.npz)")
    parser.add_argument("--threshold", type=float, help="the model's default threshold")
    args = parser.parse_args()
    vectors, labels, keys = load(args.cache)
    impostors, _genuine, total = impostor_and_genuine(vectors, labels)
    mated = mated_scores(vectors, labels, keys)
    u = float(np.quantile(impostors, 1 - 1e-4 * total / max(len(impostors), 1)))
    excess = impostors[impostors > u] - u
    beta = float(excess.mean()) if excess.size else 0.01
    print(f"{args.cache.name}: {len(vectors)} images, {labels.max() + 1} people")
    print(f"impostor comparisons {total:,}; mated probes {mated.size:,}")
    print(f"tail fit above u = {u:.4f} (99.99th percentile): exponential, scale {beta:.5f}")
    rows = []
    if args.threshold is not None:
        rows.append(("default", args.threshold))
    for target in (0.5, 0.10, 0.01):
        rows.append(
            (f"FPIR@1M = {target:.0%}", threshold_for_fpir(target, impostors, total, u, beta))
        )
    print()
    print(
        f"| {'threshold':<15} | {'score':>6} | {'FMR measured':>12} | {'FMR used':>10} "
        f"| {'false/1M':>9} | {'FPIR @ 1M':>9} | {'FNIR':>6} |"
    )
    print(f"|{'-' * 17}|{'-' * 8}|{'-' * 14}|{'-' * 12}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")
    for label, t in rows:
        measured = total_above(t, impostors) / total
        fitted = fmr_at(t, impostors, total, u, beta)
        fnmr = float((mated < t).mean())
        print(
            f"| {label:<15} | {t:6.4f} | {measured:12.3e} | {fitted:10.3e} "
            f"| {fitted * GALLERY:9.1f} | {fpir(fitted):9.4f} | {fnmr:6.4f} |"
        )
    print(f"\nhighest impostor score {impostors[-1]:.4f}")
    points = [round(x, 2) for x in np.arange(0.30, u, 0.05)]
    table = ", ".join(f"({p:.2f}, {total_above(p, impostors) / total:.4g})" for p in points)
    p_u = total_above(u, impostors) / total
    print(
        f"calibration (registry.FALSE_MATCH_RATES): points=({table}), u={u:.4f}, "
        f"fmr_u={p_u:.4g}, beta={beta:.5f}"
    )


if __name__ == "__main__":
    main()
