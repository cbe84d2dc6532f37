"""Embedded vector index on FAISS, one shard per collection, sealed on disk.

A shard keeps the exact float32 vectors (sorted by face id) and, once it outgrows
`exact_limit`, an approximate IVF index (Euclidean, 8-bit scalar quantisation) that proposes a
short list (k x rerank_factor) which is then re-ranked exactly. Scores are those of
`facesearch.similarity`. Small shards are searched exactly.
Searching several collections merges the shards' hits. Shards are written encrypted with the
deployment's index key, so the index directory reveals no embedding without the key file.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from facesearch.crypto import Sealer
from facesearch.files import private_dirs
from facesearch.index.base import Hit, ShardState
from facesearch.similarity import scores_from_squared_distances, squared_distances

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _nlist_for(n: int) -> int:
    return int(min(65536, max(64, 2 ** round(np.log2(max(1.0, np.sqrt(n)))))))


class FaissShard:
    def __init__(self, dim: int, exact_limit: int, nprobe: int, rerank_factor: int) -> None:
        self.dim = dim
        self.exact_limit = exact_limit
        self.nprobe = nprobe
        self.rerank_factor = rerank_factor
        self.ids: I64 = np.zeros(0, dtype=np.int64)
        self.vectors: F32 = np.zeros((0, dim), dtype=np.float32)
        self.approx: Any = None
        self.trained_on = 0

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def add(self, ids: I64, vectors: F32) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if ids.size == 0:
            return
        if np.isin(ids, self.ids).any():
            keep = ~np.isin(ids, self.ids)
            ids, vectors = ids[keep], vectors[keep]
            if ids.size == 0:
                return
        all_ids = np.concatenate([self.ids, ids])
        all_vecs = np.concatenate([self.vectors, vectors])
        if (self.count and ids.min() <= self.ids[-1]) or not np.all(np.diff(ids) > 0):
            order = np.argsort(all_ids, kind="stable")
            all_ids, all_vecs = all_ids[order], all_vecs[order]
        self.ids, self.vectors = all_ids, np.ascontiguousarray(all_vecs)
        if self.approx is not None:
            self.approx.add_with_ids(vectors, ids)
        self._maybe_train()

    def _maybe_train(self) -> None:
        n = self.count
        if n <= self.exact_limit:
            self.approx = None
            self.trained_on = 0
            return
        if self.approx is not None and n <= 4 * self.trained_on:
            return
        nlist = _nlist_for(n)
        quantizer = faiss.IndexFlatL2(self.dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2
        )
        rng = np.random.default_rng(0)
        sample_size = min(n, 64 * nlist)
        sample = self.vectors[rng.choice(n, size=sample_size, replace=False)]
        index.train(sample)
        index.add_with_ids(self.vectors, self.ids)
        self.approx = index
        self.trained_on = n

    def remove(self, ids: Sequence[int]) -> None:
        drop = np.asarray(list(ids), dtype=np.int64)
        keep = ~np.isin(self.ids, drop)
        self.ids, self.vectors = self.ids[keep], np.ascontiguousarray(self.vectors[keep])
        if self.approx is not None:
            self.approx.remove_ids(faiss.IDSelectorBatch(drop))
            if self.count <= self.exact_limit:
                self.approx = None
                self.trained_on = 0

    def search(self, queries: F32, k: int) -> tuple[F32, I64]:
        """Top k per query as (scores, ids), best first; scores from facesearch.similarity."""
        nq = queries.shape[0]
        if self.count == 0 or k <= 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        k = min(k, self.count)
        if self.approx is None:
            dist = squared_distances(queries, self.vectors)
            top = np.argpartition(dist, k - 1, axis=1)[:, :k]
            top_dist = np.take_along_axis(dist, top, axis=1)
            order = np.argsort(top_dist, axis=1, kind="stable")
            rows = np.take_along_axis(top, order, axis=1)
            best = np.take_along_axis(top_dist, order, axis=1)
            return scores_from_squared_distances(best), self.ids[rows]
        self.approx.nprobe = self.nprobe
        short = min(self.count, k * self.rerank_factor)
        _, cand = self.approx.search(queries, short)
        out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        for qi in range(nq):
            cids = cand[qi][cand[qi] >= 0]
            if cids.size == 0:
                continue
            rows = np.searchsorted(self.ids, cids)
            exact = squared_distances(queries[qi], self.vectors[rows])[0]
            kk = min(k, exact.size)
            order = np.argsort(exact, kind="stable")[:kk]
            out_scores[qi, :kk] = scores_from_squared_distances(exact[order])
            out_ids[qi, :kk] = cids[order]
        return out_scores, out_ids

    def nbytes(self) -> int:
        size = self.ids.nbytes + self.vectors.nbytes
        if self.approx is not None:
            # codes (1 byte/dim) + ids (8 bytes) per vector, plus the coarse centroids
            size += self.approx.ntotal * (self.dim + 8) + self.approx.nlist * self.dim * 4
        return int(size)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        approx = (
            faiss.serialize_index(self.approx) if self.approx is not None else np.zeros(0, np.uint8)
        )
        np.savez(
            buf,
            ids=self.ids,
            vectors=self.vectors,
            approx=approx,
            trained_on=np.int64(self.trained_on),
        )
        return buf.getvalue()

    def load_bytes(self, data: bytes) -> None:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            self.ids = npz["ids"].astype(np.int64)
            self.vectors = np.ascontiguousarray(npz["vectors"], dtype=np.float32)
            approx = npz["approx"]
            self.trained_on = int(npz["trained_on"])
        self.approx = faiss.deserialize_index(approx) if approx.size else None


class FaissIndex:
    """Sharded FAISS index for one model, persisted as sealed files under `directory`."""

    def __init__(
        self,
        directory: Path,
        sealer: Sealer,
        model_id: str,
        dim: int,
        *,
        exact_limit: int = 20_000,
        nprobe: int = 32,
        rerank_factor: int = 10,
    ) -> None:
        self.directory = directory / model_id
        self._sealer = sealer
        self.model_id = model_id
        self.dim = dim
        self.exact_limit = exact_limit
        self.nprobe = nprobe
        self.rerank_factor = rerank_factor
        self._shards: dict[int, FaissShard] = {}
        self._dirty: set[int] = set()
        self._lock = threading.RLock()
        self._load()

    def _new_shard(self) -> FaissShard:
        return FaissShard(self.dim, self.exact_limit, self.nprobe, self.rerank_factor)

    def _path(self, collection_id: int) -> Path:
        return self.directory / f"collection-{collection_id}.idx"

    def _aad(self, collection_id: int) -> bytes:
        return f"index:{self.model_id}:{collection_id}".encode()

    def _load(self) -> None:
        if not self.directory.exists():
            return
        for path in sorted(self.directory.glob("collection-*.idx")):
            collection_id = int(path.stem.split("-", 1)[1])
            shard = self._new_shard()
            try:
                shard.load_bytes(self._sealer.open(path.read_bytes(), self._aad(collection_id)))
            except Exception as exc:  # an unreadable shard is rebuilt from the database
                log.warning("ignoring unreadable index shard %s: %s", path.name, exc)
                continue
            self._shards[collection_id] = shard

    def add(self, collection_id: int, ids: I64, vectors: F32) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}")
        with self._lock:
            shard = self._shards.setdefault(collection_id, self._new_shard())
            shard.add(ids, vectors)
            self._dirty.add(collection_id)

    def remove(self, collection_id: int, ids: Sequence[int]) -> None:
        with self._lock:
            shard = self._shards.get(collection_id)
            if shard is not None and ids:
                shard.remove(ids)
                self._dirty.add(collection_id)

    def drop_collection(self, collection_id: int) -> None:
        with self._lock:
            self._shards.pop(collection_id, None)
            self._dirty.discard(collection_id)
            self._path(collection_id).unlink(missing_ok=True)

    def replace_collection(self, collection_id: int, ids: I64, vectors: F32) -> None:
        with self._lock:
            shard = self._new_shard()
            shard.add(ids, vectors)
            self._shards[collection_id] = shard
            self._dirty.add(collection_id)

    def rebuild_collection(self, collection_id: int, chunks: Iterable[tuple[I64, F32]]) -> None:
        parts = list(chunks)
        ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        vecs = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, self.dim))
        self.replace_collection(collection_id, ids, vecs.astype(np.float32))

    def warm(self) -> None:
        pass

    def search(self, queries: F32, k: int, collections: Sequence[int]) -> list[list[Hit]]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        results: list[list[Hit]] = [[] for _ in range(queries.shape[0])]
        with self._lock:
            for collection_id in collections:
                shard = self._shards.get(collection_id)
                if shard is None:
                    continue
                scores, ids = shard.search(queries, k)
                for qi in range(queries.shape[0]):
                    results[qi].extend(
                        Hit(int(fid), float(s), collection_id)
                        for s, fid in zip(scores[qi], ids[qi], strict=True)
                        if fid >= 0
                    )
        return [sorted(hits, key=lambda h: (-h.score, h.face_id))[:k] for hits in results]

    def state(self, collection_id: int) -> ShardState:
        shard = self._shards.get(collection_id)
        if shard is None or shard.count == 0:
            return ShardState(0, 0)
        return ShardState(shard.count, int(shard.ids[-1]))

    def count(self, collection_id: int) -> int:
        return self.state(collection_id).count

    def collections(self) -> list[int]:
        return sorted(self._shards)

    def size(self) -> int:
        return sum(s.count for s in self._shards.values())

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self._shards.values())

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            private_dirs(self.directory)
            for collection_id in sorted(self._dirty):
                shard = self._shards.get(collection_id)
                if shard is None:
                    continue
                sealed = self._sealer.seal(shard.to_bytes(), self._aad(collection_id))
                tmp = self._path(collection_id).with_suffix(".tmp")
                tmp.write_bytes(sealed)
                tmp.replace(self._path(collection_id))
            self._dirty.clear()
