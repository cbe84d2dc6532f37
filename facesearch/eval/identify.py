"""The `eval identify` protocol (1:N identification, closed and open set).

Input: a folder per person (the folder name is the identity), images inside. Hidden files and
files that are not images are ignored; images are ordered by file name.

* Every person with two or more images is enrolled with their first image: the gallery.
* Their other images are mated probes (their mate is in the gallery).
* People with a single image are non-mated probes: distractor searches, whose correct answer is
  "nobody".

Reported: rank-1 and rank-10 over the mated probes (closed set), and TPIR at FPIR=0.01 (open set:
the threshold at which 1% of non-mated searches still return a candidate; TPIR is the share of
mated searches whose top candidate is the true mate at or above that threshold).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesearch import similarity
from facesearch.eval import metrics
from facesearch.eval.embedding import EvalError, embed_image_files
from facesearch.vision.formats import IMAGE_SUFFIXES

TARGET_FPIR = 0.01


@dataclass(frozen=True)
class IdentifySplit:
    gallery: tuple[tuple[str, Path], ...]
    mated: tuple[tuple[str, Path], ...]
    nonmated: tuple[tuple[str, Path], ...]

    def all_paths(self) -> list[Path]:
        return [p for _, p in self.gallery + self.mated + self.nonmated]


def person_images(root: Path) -> dict[str, list[Path]]:
    """Identity -> its image files sorted by file name (people without images are left out)."""
    if not root.is_dir():
        raise EvalError(f"image folder not found: {root}")
    people: dict[str, list[Path]] = {}
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        images = sorted(
            (
                f
                for f in folder.iterdir()
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES
            ),
            key=lambda f: f.name,
        )
        if images:
            people[folder.name] = images
    return people


def split_people(people: dict[str, list[Path]]) -> IdentifySplit:
    gallery: list[tuple[str, Path]] = []
    mated: list[tuple[str, Path]] = []
    nonmated: list[tuple[str, Path]] = []
    for name, images in sorted(people.items()):
        if len(images) >= 2:
            gallery.append((name, images[0]))
            mated.extend((name, image) for image in images[1:])
        else:
            nonmated.append((name, images[0]))
    return IdentifySplit(tuple(gallery), tuple(mated), tuple(nonmated))


@dataclass(frozen=True)
class IdentifyReport:
    rank1: float
    rank10: float
    tpir_at_fpir_0_01: float
    threshold: float
    gallery: int
    probes: int
    distractors: int
    no_face: int
    fallback_detected: int
    model_id: str
    runtime: str
    face: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank1": round(self.rank1, 6),
            "rank10": round(self.rank10, 6),
            "tpir_at_fpir_0.01": round(self.tpir_at_fpir_0_01, 6),
            "gallery": self.gallery,
            "probes": self.probes,
            "distractors": self.distractors,
            "fpir_threshold": round(self.threshold, 6),
            "no_face": self.no_face,
            "fallback_detected": self.fallback_detected,
            "model": self.model_id,
            "runtime": self.runtime,
            "face": self.face,
            "seconds": round(self.seconds, 2),
        }


def score_split(
    split: IdentifySplit,
    gallery: np.ndarray[Any, np.dtype[np.float32]],
    mated: np.ndarray[Any, np.dtype[np.float32]],
    nonmated: np.ndarray[Any, np.dtype[np.float32]],
) -> tuple[float, float, metrics.RateAtFalse]:
    """rank-1, rank-10 and TPIR@FPIR=0.01 from the embeddings of the three sets."""
    gallery_labels = np.array([name for name, _ in split.gallery])
    probe_labels = np.array([name for name, _ in split.mated])
    g = gallery.astype(np.float64)
    mated_sim = similarity.score_matrix(mated, g).astype(np.float64)
    nonmated_sim = similarity.score_matrix(nonmated, g).astype(np.float64)
    ranks = metrics.mate_ranks(mated_sim, probe_labels, gallery_labels)
    tpir = metrics.tpir_at_fpir(mated_sim, probe_labels, gallery_labels, nonmated_sim, TARGET_FPIR)
    return metrics.rank_k_rate(ranks, 1), metrics.rank_k_rate(ranks, 10), tpir


def evaluate_identify(
    images: Path,
    *,
    model_name: str = "dlib",
    detector: str = "hog",
    workers: int = 1,
    progress: bool = True,
    cache_dir: Path | None = None,
    face: str = "largest",
    fallback: str = "none",
) -> IdentifyReport:
    started = time.perf_counter()
    split = split_people(person_images(images))
    if not split.gallery:
        raise EvalError(f"{images}: no person has two or more images, so there is no gallery")
    if not split.nonmated:
        raise EvalError(
            f"{images}: no person has a single image, so there are no non-mated searches "
            "to set the open-set threshold on"
        )
    embedded = embed_image_files(
        split.all_paths(),
        model_name=model_name,
        detector=detector,
        workers=workers,
        progress=progress,
        description="identify",
        cache_dir=cache_dir,
        face=face,
        fallback=fallback,
    )
    n_gallery, n_mated = len(split.gallery), len(split.mated)
    vectors = embedded.embeddings
    rank1, rank10, tpir = score_split(
        split,
        vectors[:n_gallery],
        vectors[n_gallery : n_gallery + n_mated],
        vectors[n_gallery + n_mated :],
    )
    return IdentifyReport(
        rank1=rank1,
        rank10=rank10,
        tpir_at_fpir_0_01=tpir.rate,
        threshold=tpir.threshold,
        gallery=n_gallery,
        probes=n_mated,
        distractors=len(split.nonmated),
        no_face=embedded.no_face_count,
        fallback_detected=embedded.fallback_count,
        model_id=embedded.model_id,
        runtime=embedded.runtime,
        face=face,
        seconds=time.perf_counter() - started,
    )
