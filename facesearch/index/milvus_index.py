"""Vectors on Milvus (Lite or a cluster) as a `VectorIndex` (docs/decisions/0013-milvus-index.md).

Per face model, two Milvus collections of the same schema, `<prefix>_<model>_a` and `_b`
(face id: INT64 primary key; the facesearch collection id: INT64 partition key; the float
vector, dimension from the model, metric L2), and one small `<prefix>_<model>_meta` collection
with a row per facesearch collection: which of the two sides serves it and its high-water mark.
A facesearch collection lives wholly in one side; a rebuild writes the other side and switches
by replacing that one meta row (one upsert: atomic), so a search never sees half a rebuild, and
a crash mid-rebuild leaves the old side serving (its leftovers are cleared by the next rebuild).

Milvus only proposes candidates: a search asks it for `shortlist` faces per query (more when k
is larger) with their float vectors, and the final scores are the exact ones of
`facesearch.similarity` computed here, ordered as `SegmentIndex` orders them (per collection by
squared distance then face id; across collections by score then face id), so a search gives the
same ids and scores as the embedded index wherever Milvus's short list holds the true top k.

Nothing here is sealed: Milvus holds the embeddings in plaintext (the doctor says so).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facesearch.errors import ConfigError
from facesearch.files import private_dirs
from facesearch.index.base import Hit, ShardState
from facesearch.similarity import scores_from_squared_distances

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

#: index types Milvus Lite builds (faiss inside) and a Milvus server builds alike
INDEX_TYPES = ("HNSW", "IVF_FLAT", "FLAT")
#: rows per insert request (well under gRPC's message limit at 512-d)
BATCH = 5000
#: ids per delete expression
DELETE_BATCH = 1000
#: the largest `limit` a Milvus search accepts
MAX_LIMIT = 16_384
#: How long a collection's face count is reused for the figures of a search (Milvus counts by
#: scanning: 5 s for 50k faces in Milvus Lite). Writes through this process refresh it at once;
#: faces other processes add show in the count within this many seconds.
COUNT_TTL = 30.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def is_server_uri(uri: str) -> bool:
    """Whether `uri` names a Milvus server (else a local Milvus Lite file)."""
    return uri.lower().startswith(("http://", "https://", "tcp://", "unix:"))


def connect(
    uri: str, *, token: str | None = None, ca_file: Path | None = None, timeout: float = 30.0
) -> Any:
    """A `pymilvus.MilvusClient`: Milvus Lite for a local `.db` path (started in this process),
    else the server at `uri`, authenticated by `token` ("user:password" or an API key), over TLS
    checked against `ca_file` when given."""
    from pymilvus import MilvusClient

    if not is_server_uri(uri):
        path = Path(uri).expanduser()
        if path.suffix != ".db":
            raise ConfigError(f"milvus_uri {uri!r}: a Milvus Lite file must end in .db")
        private_dirs(path.parent)
        client = MilvusClient(str(path))
        if path.is_dir():  # its files hold plaintext embeddings: only the owner may enter
            os.chmod(path, 0o700)
        return client
    kwargs: dict[str, Any] = {}
    if ca_file is not None:
        kwargs["server_pem_path"] = str(ca_file)
        kwargs["secure"] = True
    return MilvusClient(uri, token=token or "", timeout=timeout, **kwargs)


def collection_base(prefix: str, model_id: str) -> str:
    """The Milvus collection name stem of one model (Milvus names: letters, digits, _)."""
    if not _NAME.match(prefix):
        raise ConfigError(f"milvus_collection_prefix {prefix!r}: letters, digits and _ only")
    tag = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"{prefix}_{re.sub(r'[^0-9A-Za-z]', '_', model_id)[:64]}_{tag}"


def squared_l2(queries: F32, vectors: F32) -> F32:
    """Squared distances, computed exactly as the segment index computes them."""
    q = queries.astype(np.float32, copy=False)
    d = (q * q).sum(1)[:, None] - 2 * q @ vectors.T + (vectors * vectors).sum(1)[None, :]
    return np.asarray(np.maximum(d, 0), dtype=np.float32)


def _first(ids: I64, vectors: F32) -> tuple[I64, F32]:
    """Each id once (its first row), as the segment index keeps it."""
    _, first = np.unique(ids, return_index=True)
    first.sort()
    return ids[first], vectors[first]


class MilvusIndex:
    """The vectors of one face model in Milvus; safe to share between threads."""

    def __init__(
        self,
        client: Any,
        model_id: str,
        dim: int,
        *,
        prefix: str = "facesearch",
        index_type: str = "HNSW",
        shortlist: int = 256,
        hnsw_m: int = 32,
        hnsw_ef_construction: int = 256,
        hnsw_ef: int = 256,
        ivf_nlist: int = 1024,
        ivf_nprobe: int = 64,
    ) -> None:
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"milvus index type {index_type!r}: one of {', '.join(INDEX_TYPES)}")
        self.client = client
        self.model_id = model_id
        self.dim = dim
        self.index_type = index_type
        self.shortlist = shortlist
        self.hnsw_ef = hnsw_ef
        self.ivf_nprobe = ivf_nprobe
        self._build = (
            {"M": hnsw_m, "efConstruction": hnsw_ef_construction}
            if index_type == "HNSW"
            else {"nlist": ivf_nlist}
            if index_type == "IVF_FLAT"
            else {}
        )
        base = collection_base(prefix, model_id)
        self.sides = (f"{base}_a", f"{base}_b")
        self.meta = f"{base}_meta"
        self._lock = threading.RLock()
        self._dirty = False
        self._counts: dict[int, tuple[float, int]] = {}  # collection id -> (monotonic time, count)
        self._ensure()

    # -- schema ----------------------------------------------------------------------------------
    def _ensure(self) -> None:
        from pymilvus import DataType

        c = self.client
        for name in self.sides:
            if c.has_collection(name):
                self._check_dim(name)
                self._load(name)
                continue
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("collection_id", DataType.INT64, is_partition_key=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            params = c.prepare_index_params()
            params.add_index(
                "vector", index_type=self.index_type, metric_type="L2", params=self._build
            )
            c.create_collection(
                name, schema=schema, index_params=params, consistency_level="Strong"
            )
        if c.has_collection(self.meta):
            self._load(self.meta)
        else:
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("collection_id", DataType.INT64, is_primary=True)
            schema.add_field("side", DataType.INT64)
            schema.add_field("high_water", DataType.INT64)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field
            params = c.prepare_index_params()
            params.add_index("v", index_type="FLAT", metric_type="L2")
            c.create_collection(
                self.meta, schema=schema, index_params=params, consistency_level="Strong"
            )

    def _load(self, name: str) -> None:
        """Load a collection that is not (a Milvus restarted, a new process of Milvus Lite)."""
        state = str(self.client.get_load_state(name).get("state", ""))
        if "Loaded" not in state:
            self.client.load_collection(name)

    def _check_dim(self, name: str) -> None:
        for f in self.client.describe_collection(name).get("fields", []):
            if f.get("name") == "vector":
                dim = int(f.get("params", {}).get("dim", self.dim))
                if dim != self.dim:
                    raise ConfigError(
                        f"Milvus collection {name} holds {dim}-d vectors; model "
                        f"{self.model_id} computes {self.dim}-d ones"
                    )

    # -- the meta rows ---------------------------------------------------------------------------
    def _metas(self, cids: Iterable[int] | None = None) -> dict[int, tuple[int, int]]:
        """{collection id: (side, high water)} of the given collections (all when None)."""
        if cids is None:
            expr = "collection_id >= 0"
        else:
            wanted = sorted({int(c) for c in cids})
            if not wanted:
                return {}
            expr = f"collection_id in {wanted}"
        rows = self.client.query(
            self.meta,
            filter=expr,
            output_fields=["collection_id", "side", "high_water"],
            limit=MAX_LIMIT,
        )
        return {int(r["collection_id"]): (int(r["side"]), int(r["high_water"])) for r in rows}

    def _set_meta(self, cid: int, side: int, high_water: int) -> None:
        self._counts.pop(cid, None)
        row = {"collection_id": cid, "side": side, "high_water": high_water, "v": [0.0, 0.0]}
        self.client.upsert(self.meta, [row])

    def _count(self, side: int, cid: int) -> int:
        rows = self.client.query(
            self.sides[side], filter=f"collection_id == {cid}", output_fields=["count(*)"]
        )
        count = int(rows[0]["count(*)"]) if rows else 0
        self._counts[cid] = (time.monotonic(), count)
        return count

    def count(self, collection_id: int) -> int:
        cid = int(collection_id)
        cached = self._counts.get(cid)
        if cached is not None and time.monotonic() - cached[0] < COUNT_TTL:
            return cached[1]
        return self.state(cid).count

    def _purge(self, side: int, cid: int) -> None:
        self._counts.pop(cid, None)
        self.client.delete(self.sides[side], filter=f"collection_id == {cid}")

    def _write(self, side: int, cid: int, ids: I64, vectors: F32) -> None:
        self._counts.pop(cid, None)
        name = self.sides[side]
        for start in range(0, ids.shape[0], BATCH):
            rows = [
                {"id": int(i), "collection_id": cid, "vector": v}
                for i, v in zip(
                    ids[start : start + BATCH].tolist(),
                    vectors[start : start + BATCH],
                    strict=True,
                )
            ]
            self.client.upsert(name, rows)  # upsert: adding an id twice keeps it once
        self._dirty = True

    @staticmethod
    def _checked(dim: int, ids: I64, vectors: F32) -> tuple[I64, F32]:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"expected vectors of dimension {dim}")
        return ids, vectors

    # -- VectorIndex -----------------------------------------------------------------------------
    def add(self, collection_id: int, ids: I64, vectors: F32) -> None:
        ids, vectors = self._checked(self.dim, ids, vectors)
        if ids.size == 0:
            return
        ids, vectors = _first(ids, vectors)
        cid = int(collection_id)
        with self._lock:
            meta = self._metas([cid]).get(cid)
            if meta is None:  # a new collection: clear what a crashed run may have left
                self._purge(0, cid)
                self._purge(1, cid)
                meta = (0, 0)
            side, high = meta
            self._write(side, cid, ids, vectors)
            top = max(high, int(ids.max()))
            if top != high or high == 0:
                self._set_meta(cid, side, top)

    def remove(self, collection_id: int, ids: Sequence[int]) -> None:
        if not len(ids):
            return
        cid = int(collection_id)
        with self._lock:
            meta = self._metas([cid]).get(cid)
            if meta is None:
                return
            self._counts.pop(cid, None)
            drop = sorted({int(i) for i in ids})
            for start in range(0, len(drop), DELETE_BATCH):
                part = drop[start : start + DELETE_BATCH]
                self.client.delete(
                    self.sides[meta[0]], filter=f"collection_id == {cid} and id in {part}"
                )
            self._dirty = True

    def drop_collection(self, collection_id: int) -> None:
        cid = int(collection_id)
        with self._lock:
            self.client.delete(self.meta, ids=[cid])  # gone from searches at once
            self._purge(0, cid)
            self._purge(1, cid)
            self._dirty = True

    def replace_collection(self, collection_id: int, ids: I64, vectors: F32) -> None:
        self.rebuild_collection(collection_id, [(ids, vectors)])

    def rebuild_collection(self, collection_id: int, chunks: Iterable[tuple[I64, F32]]) -> None:
        """Write the collection into the side that does not serve it, then switch the meta row
        to it (atomic) and clear the old side."""
        cid = int(collection_id)
        with self._lock:
            meta = self._metas([cid]).get(cid)
            target = 1 - meta[0] if meta is not None else 0
            self._purge(target, cid)  # leftovers of a rebuild that crashed
            high = 0
            for ids, vectors in chunks:
                ids, vectors = self._checked(self.dim, ids, vectors)
                if not ids.size:
                    continue
                ids, vectors = _first(ids, vectors)
                self._write(target, cid, ids, vectors)
                high = max(high, int(ids.max()))
            self._set_meta(cid, target, high)  # the switch
            self._purge(1 - target, cid)
            self._dirty = True

    def warm(self) -> None:
        for name in (*self.sides, self.meta):
            self._load(name)

    def _search_params(self, limit: int) -> dict[str, Any]:
        if self.index_type == "HNSW":
            return {"metric_type": "L2", "params": {"ef": max(self.hnsw_ef, limit)}}
        if self.index_type == "IVF_FLAT":
            return {"metric_type": "L2", "params": {"nprobe": self.ivf_nprobe}}
        return {"metric_type": "L2", "params": {}}

    def search(self, queries: F32, k: int, collections: Sequence[int]) -> list[list[Hit]]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        nq = queries.shape[0]
        results: list[list[Hit]] = [[] for _ in range(nq)]
        if k <= 0 or not collections or nq == 0:
            return results
        by_side: dict[int, list[int]] = {}
        for cid, (side, _) in self._metas(collections).items():
            by_side.setdefault(side, []).append(cid)
        limit = min(max(self.shortlist, k), MAX_LIMIT)
        found: list[dict[int, tuple[int, list[float]]]] = [{} for _ in range(nq)]
        for side, cids in sorted(by_side.items()):
            answer = self.client.search(
                self.sides[side],
                data=queries.tolist(),
                limit=limit,
                filter=f"collection_id in {sorted(cids)}",
                output_fields=["collection_id", "vector"],
                search_params=self._search_params(limit),
            )
            for qi, hits in enumerate(answer):
                for hit in hits:
                    entity = hit["entity"]
                    found[qi].setdefault(
                        int(hit["id"]), (int(entity["collection_id"]), entity["vector"])
                    )
        for qi in range(nq):
            if not found[qi]:
                continue
            ids = np.fromiter(found[qi].keys(), dtype=np.int64, count=len(found[qi]))
            cids_of = np.asarray([c for c, _ in found[qi].values()], dtype=np.int64)
            vecs = np.asarray([v for _, v in found[qi].values()], dtype=np.float32)
            d_all = squared_l2(queries[qi : qi + 1], vecs)[0]
            hits_q: list[Hit] = []
            for cid in np.unique(cids_of).tolist():
                mask = cids_of == cid
                c_ids, c_d = ids[mask], d_all[mask]
                order = np.lexsort((c_ids, c_d))[:k]
                scores = scores_from_squared_distances(c_d[order])
                hits_q.extend(
                    Hit(int(f), float(s), int(cid))
                    for f, s in zip(c_ids[order], scores, strict=True)
                )
            results[qi] = sorted(hits_q, key=lambda h: (-h.score, h.face_id))[:k]
        return results

    def state(self, collection_id: int) -> ShardState:
        """Live count from Milvus; the high-water mark (the highest face id written) stands in
        for the highest live id, which Milvus cannot tell without a scan: `reconcile` then at
        worst asks the database for faces past it and finds none."""
        cid = int(collection_id)
        meta = self._metas([cid]).get(cid)
        if meta is None:
            return ShardState(0, 0)
        side, high = meta
        return ShardState(self._count(side, cid), high, high)

    def collections(self) -> list[int]:
        return sorted(self._metas())

    def size(self) -> int:
        return sum(self._count(side, cid) for cid, (side, _) in self._metas().items())

    def nbytes(self) -> int:
        """Bytes this process holds for the index: none (Milvus holds the vectors)."""
        return 0

    def save(self) -> None:
        """Ask Milvus to seal what was written (it is durable already: Milvus logs every write);
        sealed segments get their ANN index built."""
        with self._lock:
            if not self._dirty:
                return
            for name in self.sides:
                self.client.flush(name)
            self._dirty = False
