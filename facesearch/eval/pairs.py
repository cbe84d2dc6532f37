"""LFW pairs files and the `eval pairs` protocol (1:1 verification).

Format (whitespace separated, LFW uses tabs):

* header ``N``: one split, N genuine pairs then N impostor pairs;
  header ``F N``: F folds (LFW's pairs.txt has 10), each N genuine pairs then N impostor pairs;
* a genuine pair is ``name i j``, an impostor pair ``name1 i name2 j``;
* the image of ``name i`` is ``IMAGES/name/name_{i:04d}.jpg``.

Accuracy protocol. With folds, each fold is scored at the threshold that is best on the other
folds and the fold accuracies are averaged (how LFW View 2 results are reported). A single
split is cut into 10 folds the way LFW cuts its own: genuine and impostor pairs each in 10
contiguous chunks in file order, so fold j holds the j-th tenth of both; then the same 10-fold
cross-validation applies (fewer folds when the split has fewer than 10 pairs of a kind).
The threshold reported (and the one to deploy) is the best threshold on all pairs together.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facesearch import similarity
from facesearch.eval import metrics
from facesearch.eval.embedding import EvalError, embed_image_files

#: Folds a single split is cut into for cross-validated accuracy.
SINGLE_SPLIT_FOLDS = 10
TARGET_FAR = 1e-3


class PairsFormatError(EvalError):
    """The pairs file does not follow the LFW format."""


@dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int
    fold: int
    line: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2

    def paths(self, images: Path) -> tuple[Path, Path]:
        return image_path(images, self.name1, self.index1), image_path(
            images, self.name2, self.index2
        )


@dataclass(frozen=True)
class PairsFile:
    pairs: tuple[Pair, ...]
    #: Folds as given in the file; 1 for a single split.
    folds: int
    per_fold: int


def image_path(images: Path, name: str, index: int) -> Path:
    return images / name / f"{name}_{index:04d}.jpg"


def _int(token: str, what: str, where: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise PairsFormatError(f"{where}: {what} must be an integer, got {token!r}") from None
    return value


def parse_pairs(text: str, source: str = "pairs file") -> PairsFile:
    """Parse an LFW pairs file. Blank lines are ignored; every other problem is an error that
    names the line."""
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, tokens) for n, tokens in lines if tokens]
    if not lines:
        raise PairsFormatError(f"{source} is empty")
    header_no, header = lines[0]
    where = f"{source}, line {header_no}"
    if len(header) == 1:
        folds, per_fold = 1, _int(header[0], "the pair count", where)
    elif len(header) == 2:
        folds = _int(header[0], "the fold count", where)
        per_fold = _int(header[1], "the pair count", where)
    else:
        raise PairsFormatError(
            f"{where}: the header must be 'N' (one split) or 'FOLDS N', got {' '.join(header)!r}"
        )
    if folds < 1 or per_fold < 1:
        raise PairsFormatError(f"{where}: the fold and pair counts must be positive")
    body = lines[1:]
    expected = folds * per_fold * 2
    if len(body) != expected:
        shape = f"{per_fold} genuine + {per_fold} impostor pairs" + (
            f" in each of {folds} folds" if folds > 1 else ""
        )
        raise PairsFormatError(
            f"{source}: the header promises {shape} ({expected} lines), found {len(body)}"
        )
    pairs: list[Pair] = []
    for k, (line_no, tokens) in enumerate(body):
        where = f"{source}, line {line_no}"
        fold, offset = divmod(k, 2 * per_fold)
        want_same = offset < per_fold
        if len(tokens) == 3:
            name1 = name2 = tokens[0]
            i = _int(tokens[1], "an image number", where)
            j = _int(tokens[2], "an image number", where)
        elif len(tokens) == 4:
            name1, name2 = tokens[0], tokens[2]
            i = _int(tokens[1], "an image number", where)
            j = _int(tokens[3], "an image number", where)
            if name1 == name2:
                raise PairsFormatError(
                    f"{where}: an impostor pair names the same person twice ({name1})"
                )
        else:
            raise PairsFormatError(
                f"{where}: expected 'name i j' or 'name1 i name2 j', got {' '.join(tokens)!r}"
            )
        if i < 0 or j < 0:
            raise PairsFormatError(f"{where}: image numbers must not be negative")
        if (name1 == name2) != want_same:
            kind = "a genuine ('name i j')" if want_same else "an impostor ('name1 i name2 j')"
            raise PairsFormatError(
                f"{where}: expected {kind} pair here (fold {fold + 1}, pair {offset + 1})"
            )
        pairs.append(Pair(name1, i, name2, j, fold, line_no))
    return PairsFile(pairs=tuple(pairs), folds=folds, per_fold=per_fold)


def read_pairs(path: Path) -> PairsFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"pairs file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read the pairs file {path}: {exc}") from None
    return parse_pairs(text, source=str(path))


def referenced_images(pairs: Sequence[Pair], images: Path) -> list[Path]:
    """The distinct images the pairs use, in order of first use; EvalError if any is missing."""
    seen: dict[Path, Pair] = {}
    for pair in pairs:
        for path in pair.paths(images):
            seen.setdefault(path, pair)
    missing = [(path, pair) for path, pair in seen.items() if not path.is_file()]
    if missing:
        shown = "; ".join(f"{path} (line {pair.line})" for path, pair in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise EvalError(
            f"{len(missing)} image(s) named in the pairs file are missing: {shown}{more}"
        )
    return list(seen)


@dataclass(frozen=True)
class PairsReport:
    pairs: int
    folds: int
    fold_protocol: str
    accuracy: float
    accuracy_std: float
    fold_accuracies: tuple[float, ...]
    threshold: float
    threshold_accuracy: float
    tar_at_far_1e_3: float
    tar_threshold: float
    images: int
    no_face: int
    fallback_detected: int
    model_id: str
    runtime: str
    face: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": round(self.accuracy, 6),
            "accuracy_std": round(self.accuracy_std, 6),
            "tar_at_far_1e-3": round(self.tar_at_far_1e_3, 6),
            "no_face": self.no_face,
            "fallback_detected": self.fallback_detected,
            "pairs": self.pairs,
            "threshold": round(self.threshold, 6),
            "threshold_accuracy": round(self.threshold_accuracy, 6),
            "tar_threshold": round(self.tar_threshold, 6),
            "folds": self.folds,
            "fold_protocol": self.fold_protocol,
            "fold_accuracies": [round(a, 6) for a in self.fold_accuracies],
            "images": self.images,
            "model": self.model_id,
            "runtime": self.runtime,
            "face": self.face,
            "seconds": round(self.seconds, 2),
        }


def score_pairs(
    parsed: PairsFile, scores: np.ndarray[Any, np.dtype[np.float64]]
) -> tuple[metrics.KFoldResult, metrics.RateAtFalse, str]:
    """Cross-validated accuracy and TAR@FAR=1e-3 for scores in pair order."""
    labels = np.array([p.same for p in parsed.pairs], dtype=bool)
    if parsed.folds > 1:
        folds = np.array([p.fold for p in parsed.pairs], dtype=np.int64)
        protocol = f"{parsed.folds} folds from the file; threshold chosen on the other folds"
    else:
        k = min(SINGLE_SPLIT_FOLDS, parsed.per_fold)
        if k < 2:
            raise EvalError(
                "a single split needs at least 2 genuine and 2 impostor pairs to cross-validate "
                "the threshold"
            )
        folds = metrics.stratified_folds(labels, k)
        protocol = (
            f"single split cut into {k} stratified contiguous folds; "
            "threshold chosen on the other folds"
        )
    kfold = metrics.kfold_accuracy(scores, labels, folds)
    tar = metrics.tar_at_far(scores, labels, TARGET_FAR)
    return kfold, tar, protocol


def evaluate_pairs(
    images: Path,
    pairs_file: Path,
    *,
    model_name: str = "dlib",
    detector: str = "hog",
    workers: int = 1,
    progress: bool = True,
    cache_dir: Path | None = None,
    face: str = "largest",
    fallback: str = "none",
) -> PairsReport:
    started = time.perf_counter()
    if not images.is_dir():
        raise EvalError(f"image folder not found: {images}")
    parsed = read_pairs(pairs_file)
    paths = referenced_images(parsed.pairs, images)
    embedded = embed_image_files(
        paths,
        model_name=model_name,
        detector=detector,
        workers=workers,
        progress=progress,
        description="pairs",
        cache_dir=cache_dir,
        face=face,
        fallback=fallback,
    )
    rows = embedded.rows()
    left = np.array([rows[p.paths(images)[0]] for p in parsed.pairs])
    right = np.array([rows[p.paths(images)[1]] for p in parsed.pairs])
    vectors = embedded.embeddings.astype(np.float64)
    scores = similarity.paired_scores(vectors[left], vectors[right]).astype(np.float64)
    kfold, tar, protocol = score_pairs(parsed, scores)
    return PairsReport(
        pairs=len(parsed.pairs),
        folds=parsed.folds,
        fold_protocol=protocol,
        accuracy=kfold.accuracy,
        accuracy_std=kfold.accuracy_std,
        fold_accuracies=kfold.fold_accuracies,
        threshold=kfold.threshold,
        threshold_accuracy=kfold.threshold_accuracy,
        tar_at_far_1e_3=tar.rate,
        tar_threshold=tar.threshold,
        images=len(paths),
        no_face=embedded.no_face_count,
        fallback_detected=embedded.fallback_count,
        model_id=embedded.model_id,
        runtime=embedded.runtime,
        face=face,
        seconds=time.perf_counter() - started,
    )
