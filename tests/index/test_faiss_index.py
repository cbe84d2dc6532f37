"""The sharded FAISS index: exact when small, approximate + exact re-rank when large."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facesearch.crypto import Sealer
from facesearch.index.faiss_index import FaissIndex
from facesearch.similarity import score, score_matrix


def _clustered(n: int, dim: int = 128, clusters: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vecs = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32)


def _exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-score_matrix(queries, vectors), axis=1, kind="stable")[:, :k]


def test_small_shards_are_exact_and_collections_are_kept_apart(tmp_path: Path) -> None:
    index = FaissIndex(tmp_path, Sealer(os.urandom(32)), "m", 128, exact_limit=10_000)
    vecs = _clustered(3000)
    index.add(1, np.arange(1, 2001), vecs[:2000])
    index.add(2, np.arange(2001, 3001), vecs[2000:])
    queries = vecs[:20] + 0.01
    hits = index.search(queries, 5, [1])
    truth = _exact(vecs[:2000], queries, 5) + 1
    assert [[h.face_id for h in row] for row in hits] == truth.tolist()
    assert all(h.collection_id == 1 for row in hits for h in row)
    both = index.search(vecs[2500:2501], 1, [1, 2])
    assert both[0][0].face_id == 2501 and both[0][0].collection_id == 2


def test_large_shard_recall_and_persistence(tmp_path: Path) -> None:
    sealer = Sealer(os.urandom(32))
    index = FaissIndex(tmp_path, sealer, "m", 128, exact_limit=5_000, nprobe=32)
    vecs = _clustered(30_000)
    ids = np.arange(1, 30_001)
    index.add(7, ids, vecs)
    queries = _clustered(100, seed=5)
    hits = index.search(queries, 10, [7])
    truth = _exact(vecs, queries, 10) + 1
    recall = np.mean(
        [
            len({h.face_id for h in row} & set(t)) / 10
            for row, t in zip(hits, truth.tolist(), strict=True)
        ]
    )
    assert recall >= 0.9
    # Scores are exact (re-ranked): they equal the similarity of the true vectors.
    top = hits[0][0]
    assert abs(top.score - score(vecs[top.face_id - 1], queries[0])) < 1e-5
    index.remove(7, [top.face_id])
    assert top.face_id not in {h.face_id for h in index.search(queries[:1], 10, [7])[0]}
    index.save()
    reloaded = FaissIndex(tmp_path, sealer, "m", 128, exact_limit=5_000, nprobe=32)
    assert reloaded.state(7).count == 29_999
    assert [h.face_id for h in reloaded.search(queries[1:2], 10, [7])[0]] == [
        h.face_id for h in index.search(queries[1:2], 10, [7])[0]
    ]


def test_an_index_file_under_another_key_is_ignored_not_trusted(tmp_path: Path) -> None:
    index = FaissIndex(tmp_path, Sealer(os.urandom(32)), "m", 128)
    index.add(1, np.arange(1, 11), _clustered(10))
    index.save()
    other = FaissIndex(tmp_path, Sealer(os.urandom(32)), "m", 128)
    assert other.size() == 0  # unreadable shard → rebuilt from the database by the caller
