"""Metrics on synthetic scores whose answers are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facesearch.eval import metrics

# --------------------------------------------------------------------------- best threshold


def test_best_threshold_separable_scores_is_perfect_and_between_classes() -> None:
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    labels = [False, False, False, True, True, True]
    choice = metrics.best_threshold(scores, labels)
    assert choice.accuracy == 1.0
    assert 0.3 < choice.threshold < 0.7
    assert choice.threshold == pytest.approx(0.5)  # the midpoint between 0.3 and 0.7


def test_best_threshold_with_overlap_counts_errors() -> None:
    # one impostor (0.75) above two genuine (0.6, 0.7): the best cut misclassifies one pair
    scores = [0.1, 0.2, 0.75, 0.6, 0.7, 0.9, 0.95]
    labels = [False, False, False, True, True, True, True]
    choice = metrics.best_threshold(scores, labels)
    assert choice.accuracy == pytest.approx(6 / 7)
    assert metrics.accuracy_at(scores, labels, choice.threshold) == pytest.approx(6 / 7)


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.5
    scores = np.where(labels, rng.normal(0.7, 0.1, 300), rng.normal(0.5, 0.1, 300))
    choice = metrics.best_threshold(scores, labels)
    brute = max(metrics.accuracy_at(scores, labels, t) for t in np.unique(scores))
    assert choice.accuracy == pytest.approx(brute)
    assert metrics.accuracy_at(scores, labels, choice.threshold) == pytest.approx(brute)


def test_score_equal_to_threshold_is_accepted() -> None:
    assert metrics.accuracy_at([0.5, 0.4], [True, False], 0.5) == 1.0


def test_best_threshold_rejects_empty_and_mismatched() -> None:
    with pytest.raises(ValueError):
        metrics.best_threshold([], [])
    with pytest.raises(ValueError):
        metrics.best_threshold([0.1, 0.2], [True])
    with pytest.raises(ValueError):
        metrics.best_threshold([0.1, float("nan")], [True, False])


# --------------------------------------------------------------------------- k-fold


def test_kfold_uses_threshold_from_other_folds() -> None:
    # Fold 0 alone would be perfect at 0.55, but folds 1 and 2 put the cut at ~0.35, where fold
    # 0's impostor at 0.5 is accepted: fold 0 scores 1/2, the others 1.
    scores = np.array([0.5, 0.6, 0.3, 0.4, 0.3, 0.4])
    labels = np.array([False, True, False, True, False, True])
    folds = np.array([0, 0, 1, 1, 2, 2])
    result = metrics.kfold_accuracy(scores, labels, folds)
    assert result.fold_accuracies == pytest.approx((0.5, 1.0, 1.0))
    assert result.accuracy == pytest.approx(2.5 / 3)
    assert result.fold_thresholds[0] == pytest.approx(0.35)
    assert result.threshold_accuracy == pytest.approx(5 / 6)


def test_kfold_on_separable_scores_is_perfect() -> None:
    labels = np.array([True] * 50 + [False] * 50)
    scores = np.where(labels, 0.9, 0.2) + np.linspace(0, 0.05, 100)
    result = metrics.kfold_accuracy(scores, labels, metrics.stratified_folds(labels, 10))
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert 0.25 < result.threshold < 0.9


def test_kfold_needs_two_folds() -> None:
    with pytest.raises(ValueError, match="two folds"):
        metrics.kfold_accuracy([0.1, 0.9], [False, True], [0, 0])


def test_stratified_folds_are_contiguous_and_balanced() -> None:
    labels = np.array([True] * 1100 + [False] * 1100)
    folds = metrics.stratified_folds(labels, 10)
    for k in range(10):
        assert np.sum(folds[:1100] == k) == 110 and np.sum(folds[1100:] == k) == 110
    assert np.all(np.diff(folds[:1100]) >= 0) and np.all(np.diff(folds[1100:]) >= 0)
    uneven = metrics.stratified_folds(np.array([True] * 23 + [False] * 21), 10)
    counts = np.bincount(uneven[:23])
    assert counts.sum() == 23 and counts.max() - counts.min() <= 1
    with pytest.raises(ValueError):
        metrics.stratified_folds(np.array([True] * 3 + [False] * 30), 10)


# --------------------------------------------------------------------------- TAR @ FAR


def test_tar_at_far_allows_floor_far_times_impostors() -> None:
    impostors = np.linspace(0.0, 0.5, 1000)  # highest 0.5, second 0.4995 ...
    genuine = np.array([0.45, 0.4996, 0.49995, 0.6, 0.7])
    scores = np.concatenate([genuine, impostors])
    labels = np.array([True] * 5 + [False] * 1000)
    result = metrics.tar_at_far(scores, labels, 1e-3)  # one impostor may be accepted
    assert result.false_rate == pytest.approx(1e-3)
    assert result.threshold > impostors[-2]
    assert result.rate == pytest.approx(4 / 5)  # only 0.45 is below the second impostor
    strict = metrics.tar_at_far(scores, labels, 0.0)  # no impostor may be accepted
    assert strict.false_rate == 0.0 and strict.rate == pytest.approx(2 / 5)


def test_tar_at_far_ties_with_impostor_are_rejected() -> None:
    scores = [0.8, 0.5, 0.8, 0.1]
    labels = [True, True, False, False]
    result = metrics.tar_at_far(scores, labels, 0.0)
    assert result.false_rate == 0.0
    assert result.rate == 0.0  # the genuine 0.8 ties the impostor 0.8, so it is not accepted


def test_threshold_at_false_rate_everything_allowed() -> None:
    assert metrics.threshold_at_false_rate([0.1, 0.2], 1.0) == -math.inf
    with pytest.raises(ValueError):
        metrics.threshold_at_false_rate([], 0.1)


# --------------------------------------------------------------------------- identification


def _identification_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gallery = np.array(["a", "b", "c"])
    probes = np.array(["a", "b", "c", "a"])
    sim = np.array(
        [
            [0.9, 0.1, 0.2],  # a: rank 1
            [0.8, 0.7, 0.1],  # b: rank 2
            [0.5, 0.6, 0.4],  # c: rank 3
            [0.3, 0.3, 0.2],  # a: tie with b counts against the probe -> rank 2
        ]
    )
    return sim, probes, gallery


def test_mate_ranks_and_rank_k() -> None:
    sim, probes, gallery = _identification_case()
    ranks = metrics.mate_ranks(sim, probes, gallery)
    assert ranks.tolist() == [1, 2, 3, 2]
    assert metrics.rank_k_rate(ranks, 1) == 0.25
    assert metrics.rank_k_rate(ranks, 2) == 0.75
    assert metrics.rank_k_rate(ranks, 10) == 1.0


def test_mate_ranks_requires_one_mate_per_probe() -> None:
    with pytest.raises(ValueError, match="gallery mates"):
        metrics.mate_ranks(np.zeros((1, 2)), np.array(["z"]), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="shape"):
        metrics.mate_ranks(np.zeros((2, 2)), np.array(["a"]), np.array(["a", "b"]))


def test_tpir_at_fpir() -> None:
    gallery = np.array(["a", "b"])
    probes = np.array(["a", "b", "a", "b"])
    mated = np.array(
        [
            [0.995, 0.1],  # rank 1, high score: hit
            [0.2, 0.65],  # rank 1 but below the threshold: miss
            [0.3, 0.9],  # rank 2: miss whatever the threshold
            [0.1, 0.75],  # rank 1, above: hit
        ]
    )
    # 100 non-mated searches, top scores 0.00 .. 0.99 -> FPIR=0.01 allows one: threshold just
    # above 0.98, accepted only by 0.99.
    top = np.arange(100) / 100
    nonmated = np.stack([top, top / 2], axis=1)
    result = metrics.tpir_at_fpir(mated, probes, gallery, nonmated, 0.01)
    assert result.false_rate == pytest.approx(0.01)
    assert 0.98 < result.threshold <= 0.99
    assert result.rate == 0.25  # only 0.995 clears 0.98+

    nonmated_low = np.stack([top * 0.7, top * 0.1], axis=1)  # top scores 0 .. 0.693
    low = metrics.tpir_at_fpir(mated, probes, gallery, nonmated_low, 0.01)
    assert 0.685 < low.threshold <= 0.693
    assert low.rate == 0.5  # 0.995 and 0.75 hit; 0.65 below; the rank-2 probe never counts


def test_tpir_at_fpir_rejects_mismatched_gallery() -> None:
    with pytest.raises(ValueError, match="non-mated"):
        metrics.tpir_at_fpir(
            np.ones((1, 2)), np.array(["a"]), np.array(["a", "b"]), np.ones((3, 5)), 0.01
        )
