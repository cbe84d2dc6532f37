"""How two descriptors compare: one similarity score used everywhere (index, search, verify,
eval), so a threshold means the same thing in every place.

score = 1 − d / 2, clipped to [0, 1], where d is the Euclidean distance between descriptors in
the model's own space. For dlib's ResNet, trained with a metric loss on raw (un-normalised)
descriptors whose same-person distance threshold is 0.6, this is dlib's native metric (score 0.7
at d = 0.6); for unit-length descriptors (ArcFace family) it is a monotone function of cosine
similarity (d² = 2 − 2 cos). Higher is more similar; 1 means identical descriptors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def scores_from_squared_distances(squared: npt.NDArray[np.floating]) -> F32:
    distances = np.sqrt(np.maximum(np.asarray(squared, dtype=np.float64), 0.0))
    return np.clip(1.0 - distances / 2.0, 0.0, 1.0).astype(np.float32)


def squared_distances(queries: npt.ArrayLike, vectors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """All squared Euclidean distances, queries (q × d) against vectors (n × d) → q × n."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    sq = (q * q).sum(axis=1)[:, None] + (v * v).sum(axis=1)[None, :] - 2.0 * (q @ v.T)
    out: npt.NDArray[np.float64] = np.maximum(sq, 0.0)
    return out


def score_matrix(queries: npt.ArrayLike, vectors: npt.ArrayLike) -> F32:
    return scores_from_squared_distances(squared_distances(queries, vectors))


def paired_scores(a: npt.ArrayLike, b: npt.ArrayLike) -> F32:
    """Row-wise scores of two equally long lists of descriptors."""
    diff = np.atleast_2d(np.asarray(a, dtype=np.float64)) - np.atleast_2d(
        np.asarray(b, dtype=np.float64)
    )
    return scores_from_squared_distances((diff * diff).sum(axis=1))


def score(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(paired_scores(a, b)[0])
