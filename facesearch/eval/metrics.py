"""Face recognition metrics on plain score arrays (numpy only, no model, no I/O).

Conventions, used everywhere in this module:

* A score is a similarity: higher means "more likely the same person" (for facesearch, the
  score of `facesearch.similarity`). A pair or a search is *accepted* at threshold `t`
  when its score is `>= t`.
* Verification (1:1): `labels[i]` is True for a genuine (same person) pair, False for an impostor
  pair. Accuracy is the fraction of pairs classified correctly at a threshold.
* TAR@FAR: the threshold is the lowest one at which at most `floor(far * impostors)` impostor
  pairs are accepted (ties are never split: an impostor score equal to the threshold counts as
  accepted); TAR is the fraction of genuine pairs accepted there.
* Closed-set identification (1:N): the rank of a mated probe is 1 + the number of non-mate gallery
  entries that score at least as high as its true mate (ties count against the probe).
* Open-set identification: FPIR is the fraction of non-mated probes whose top gallery score is
  accepted; TPIR is the fraction of mated probes whose rank-1 candidate is the true mate *and* is
  accepted. TPIR@FPIR=x uses the lowest threshold with FPIR <= x (same tie rule as TAR@FAR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def _scores(values: npt.ArrayLike, name: str = "scores") -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _labels(values: npt.ArrayLike, size: int) -> BoolArray:
    arr = np.asarray(values).reshape(-1)
    if arr.shape[0] != size:
        raise ValueError(f"{arr.shape[0]} labels for {size} scores")
    return arr.astype(bool)


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    accuracy: float


def best_threshold(scores: npt.ArrayLike, labels: npt.ArrayLike) -> ThresholdChoice:
    """The threshold that maximises verification accuracy on these pairs.

    Candidates are the midpoints between consecutive distinct scores (plus one below the lowest
    and one above the highest), so the choice never sits on a training score. When several
    neighbouring candidates are equally accurate, the middle one of the first such run is
    returned (deterministic, and away from both edges of the plateau).
    """
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    if s.shape[0] == 0:
        raise ValueError("no pairs to choose a threshold on")
    distinct = np.unique(s)  # sorted ascending
    candidates = np.concatenate(
        ([distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1e-6])
    )
    accuracies = _accuracies_at(s, y, candidates)
    first = int(np.argmax(accuracies))
    last = first
    while last + 1 < accuracies.shape[0] and accuracies[last + 1] == accuracies[first]:
        last += 1
    best = (first + last) // 2
    return ThresholdChoice(threshold=float(candidates[best]), accuracy=float(accuracies[best]))


def _accuracies_at(s: FloatArray, y: BoolArray, thresholds: FloatArray) -> FloatArray:
    """Accuracy at each threshold (ascending), in O((n + m) log n)."""
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    # genuine accepted: score >= t ; impostor rejected: score < t
    tp = pos.shape[0] - np.searchsorted(pos, thresholds, side="left")
    tn = np.searchsorted(neg, thresholds, side="left")
    out: FloatArray = (tp + tn).astype(np.float64) / s.shape[0]
    return out


def accuracy_at(scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float) -> float:
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    if s.shape[0] == 0:
        raise ValueError("no pairs")
    return float(np.mean((s >= threshold) == y))


@dataclass(frozen=True)
class KFoldResult:
    """k-fold verification accuracy: each fold is scored at the threshold that is best on the
    other folds. `threshold` is the best threshold on all pairs together (the one to deploy)."""

    accuracy: float
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    threshold: float
    threshold_accuracy: float


def kfold_accuracy(
    scores: npt.ArrayLike, labels: npt.ArrayLike, folds: npt.ArrayLike
) -> KFoldResult:
    """Mean accuracy over folds; `folds[i]` is the fold number of pair i (any integers).

    The per-fold accuracies are averaged unweighted, as the LFW protocol reports them.
    """
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    f = np.asarray(folds).reshape(-1)
    if f.shape[0] != s.shape[0]:
        raise ValueError(f"{f.shape[0]} fold numbers for {s.shape[0]} scores")
    fold_ids = np.unique(f)
    if fold_ids.shape[0] < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accuracies: list[float] = []
    thresholds: list[float] = []
    for fold in fold_ids:
        test = f == fold
        choice = best_threshold(s[~test], y[~test])
        thresholds.append(choice.threshold)
        accuracies.append(accuracy_at(s[test], y[test], choice.threshold))
    overall = best_threshold(s, y)
    return KFoldResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=tuple(accuracies),
        fold_thresholds=tuple(thresholds),
        threshold=overall.threshold,
        threshold_accuracy=overall.accuracy,
    )


def stratified_folds(labels: npt.ArrayLike, k: int = 10) -> IntArray:
    """Fold numbers for a single split: the genuine pairs and the impostor pairs are each cut,
    in file order, into k contiguous near-equal chunks, chunk j of both forming fold j. Contiguous
    chunks keep alphabetically neighbouring names (mostly the same people) in the same fold, which
    is how LFW's own folds are built."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    if k < 2:
        raise ValueError("k must be at least 2")
    out = np.empty(y.shape[0], dtype=np.int64)
    for mask in (y, ~y):
        idx = np.flatnonzero(mask)
        if 0 < idx.shape[0] < k:
            raise ValueError(f"{idx.shape[0]} pairs of one kind cannot fill {k} folds")
        out[idx] = (np.arange(idx.shape[0]) * k) // max(1, idx.shape[0])
    return out


# --------------------------------------------------------------------------- rates at a fixed
# false-accept budget


@dataclass(frozen=True)
class RateAtFalse:
    """A true rate at the lowest threshold whose false rate is within budget."""

    rate: float
    threshold: float
    false_rate: float


def threshold_at_false_rate(negatives: npt.ArrayLike, target: float) -> float:
    """The lowest threshold at which at most floor(target * n) negative scores are accepted
    (a score is accepted when >= threshold). Returns -inf when every negative may be accepted."""
    neg = np.sort(_scores(negatives, "negative scores"))[::-1]  # descending
    if neg.shape[0] == 0:
        raise ValueError("no negative scores")
    if not 0 <= target <= 1:
        raise ValueError("the false rate must be in [0, 1]")
    allowed = math.floor(target * neg.shape[0] + 1e-9)
    if allowed >= neg.shape[0]:
        return float("-inf")
    # Accept strictly above the (allowed+1)-th highest negative: ties with it are rejected too.
    return float(np.nextafter(neg[allowed], np.inf))


def tar_at_far(scores: npt.ArrayLike, labels: npt.ArrayLike, far: float) -> RateAtFalse:
    s = _scores(scores)
    y = _labels(labels, s.shape[0])
    if not y.any():
        raise ValueError("no genuine pairs")
    threshold = threshold_at_false_rate(s[~y], far)
    return RateAtFalse(
        rate=float(np.mean(s[y] >= threshold)),
        threshold=threshold,
        false_rate=float(np.mean(s[~y] >= threshold)),
    )


# --------------------------------------------------------------------------- identification


def mate_ranks(
    similarities: npt.ArrayLike, probe_labels: npt.ArrayLike, gallery_labels: npt.ArrayLike
) -> IntArray:
    """Rank (1-based) of each probe's true mate in the gallery; `similarities` is probes x gallery.
    Every probe must have exactly one gallery entry with its label."""
    sim = np.asarray(similarities, dtype=np.float64)
    probes = np.asarray(probe_labels).reshape(-1)
    gallery = np.asarray(gallery_labels).reshape(-1)
    if sim.ndim != 2 or sim.shape != (probes.shape[0], gallery.shape[0]):
        raise ValueError(
            f"similarities of shape {sim.shape} for {probes.shape[0]} probes "
            f"and {gallery.shape[0]} gallery entries"
        )
    is_mate = probes[:, None] == gallery[None, :]
    mates_per_probe = is_mate.sum(axis=1)
    if np.any(mates_per_probe != 1):
        bad = int(np.flatnonzero(mates_per_probe != 1)[0])
        raise ValueError(
            f"probe {bad} ({probes[bad]!r}) has {int(mates_per_probe[bad])} gallery mates; "
            "each mated probe needs exactly one"
        )
    mate_scores = sim[is_mate]  # row-major: one per probe, in probe order
    beaten = ((sim >= mate_scores[:, None]) & ~is_mate).sum(axis=1)
    ranks: IntArray = (beaten + 1).astype(np.int64)
    return ranks


def rank_k_rate(ranks: npt.ArrayLike, k: int) -> float:
    r = np.asarray(ranks).reshape(-1)
    if r.shape[0] == 0:
        raise ValueError("no mated probes")
    return float(np.mean(r <= k))


def tpir_at_fpir(
    mated_similarities: npt.ArrayLike,
    probe_labels: npt.ArrayLike,
    gallery_labels: npt.ArrayLike,
    nonmated_similarities: npt.ArrayLike,
    fpir: float,
) -> RateAtFalse:
    """Open-set TPIR at the lowest threshold whose FPIR (non-mated searches that return any
    candidate, i.e. whose top score is accepted) is at most `fpir`."""
    sim = np.asarray(mated_similarities, dtype=np.float64)
    ranks = mate_ranks(sim, probe_labels, gallery_labels)
    probes = np.asarray(probe_labels).reshape(-1)
    gallery = np.asarray(gallery_labels).reshape(-1)
    mate_scores = sim[probes[:, None] == gallery[None, :]]
    nonmated = np.asarray(nonmated_similarities, dtype=np.float64)
    if nonmated.ndim != 2 or nonmated.shape[0] == 0 or nonmated.shape[1] != gallery.shape[0]:
        raise ValueError(f"non-mated similarities of shape {nonmated.shape} do not fit the gallery")
    top_nonmated = nonmated.max(axis=1)
    threshold = threshold_at_false_rate(top_nonmated, fpir)
    hits = (ranks == 1) & (mate_scores >= threshold)
    return RateAtFalse(
        rate=float(np.mean(hits)),
        threshold=threshold,
        false_rate=float(np.mean(top_nonmated >= threshold)),
    )
