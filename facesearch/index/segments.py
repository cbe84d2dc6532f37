"""Embedded segment index: per model and collection, immutable sealed segments + a small tail.

Layout under `<index dir>/<model id>/c<collection id>/`:

- `seg-<seq>.seg`: one immutable segment. A sealed header (ids, PQ codes and the ranges of
  the 8-bit scalar codes), then the 8-bit codes in sealed blocks of `SQ_BLOCK` faces, then
  fixed-size sealed blocks of `BLOCK` float32 vectors; each block is sealed on its own
  (AES-256-GCM; associated data binds model, collection, segment and block), so a re-rank reads
  and opens only the blocks it needs and the float vectors never sit in RAM. A process that
  searches once (the CLI) opens the header and the code blocks of its short list only; the
  service (`warm`) holds every segment's 8-bit codes in RAM. Segments of the first format
  (`FSSEG01`: the 8-bit codes inside the header) are still read; compaction and `index
  rebuild` rewrite them.
- `manifest`: sealed JSON naming the live segments, each one's deleted ids (tombstones) and
  the collection's high-water mark (the highest face id sealed into a segment). It is replaced
  atomically (write, fsync, rename) after the segment files it names are on disk, so a crash
  anywhere leaves the previous manifest or the new one; files no manifest names are removed
  on the next open.

Adding goes to the in-memory tail (cost ~ the batch); `save` seals the tail into a new segment.
Removing adds tombstones; compaction runs off the search path and publishes its result
atomically: it rewrites segments with many tombstones, and folds the smallest segments into the
next bigger one once together they hold 1/`merge_factor` of its faces (size-tiered, up to
`segment_cap` faces a segment), so a collection filled by many saves stays in a few segments of
geometric sizes, one of them nearly all of it. Searches read an immutable snapshot (a tuple of
segment views + the tail) and never take the writer lock, so they never wait behind a save or a
compaction.

Search (see docs/decisions/0006-segment-index.md): a 4-bit product-quantisation code per face
(64 sub-spaces: 32 bytes, faiss IndexPQFastScan, trained per segment) is scanned in full for a
short list of `shortlist` faces per collection, shared out among its segments by their live
faces; their 8-bit scalar codes give near-exact distances from which the best `rerank` are
re-scored exactly from the sealed float vectors. Segments no larger than their share (the tail of
a small ingest) skip the PQ scan. The scans run on `search_threads` threads by a plan made once
per layout: the segments laid end to end and cut where the threads' equal shares end, so each
thread scans about as many codes. RAM per face: 8 (id) + 32 (PQ code) + 128 (scalar code) +
4 (the scalar code's weighted norm) = 172 bytes.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import struct
import threading
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from facesearch.crypto import Sealer
from facesearch.files import create_private, private_dirs
from facesearch.index.base import Hit, ShardState
from facesearch.similarity import scores_from_squared_distances

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

MAGIC = b"FSSEG02\n"
#: the first format: the 8-bit codes inside the sealed header (read, never written)
MAGIC_V1 = b"FSSEG01\n"
BLOCK = 16  # float vectors per sealed block
SQ_BLOCK = 64  # 8-bit codes per sealed block (8 KiB at 128 dimensions)
PQ_BITS = 4
PQ_TRAIN = 65_536  # training sample of a segment's PQ
#: segments smaller than this are scanned by their 8-bit codes only
MIN_PQ = 4096
#: the least short list of a segment, whatever its share of the collection
SHORTLIST_FLOOR = 256
#: compaction folds the smallest segments into the next bigger one once together they hold
#: 1/MERGE_FACTOR of its faces
MERGE_FACTOR = 8
#: compaction builds no segment of more faces than this (1 GiB of sealed float vectors)
SEGMENT_CAP = 1 << 21
#: a search that scans at least this many codes runs its segments in parallel threads
PARALLEL_FROM = 200_000
#: a search plan cuts no part of a segment's PQ scan smaller than this (a part costs a call)
PART_MIN = 65_536


def pq_subspaces(dim: int) -> int:
    """Sub-spaces of the PQ code: two dimensions each (64 for 128-d: 32 bytes a face)."""
    m = dim // 2
    while dim % m:
        m -= 1
    return m


def train_pq(vectors: F32) -> Any:
    n, dim = vectors.shape
    pq = faiss.IndexPQFastScan(dim, pq_subspaces(dim), PQ_BITS)
    sample = vectors
    if n > PQ_TRAIN:
        sample = vectors[np.random.default_rng(n).choice(n, PQ_TRAIN, replace=False)]
    pq.train(np.ascontiguousarray(sample))
    pq.add(vectors)
    return pq


def squared_l2(queries: F32, vectors: F32) -> F32:
    q = queries.astype(np.float32, copy=False)
    d = (q * q).sum(1)[:, None] - 2 * q @ vectors.T + (vectors * vectors).sum(1)[None, :]
    return np.asarray(np.maximum(d, 0), dtype=np.float32)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _strictly_ascending(ids: I64) -> bool:
    return ids.shape[0] < 2 or bool(np.all(ids[1:] > ids[:-1]))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with create_private(tmp) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


#: rows turned into 8-bit codes at a time (bounds the float temporary: 32 MiB at 128-d)
_CODE_SLICE = 65_536


def _write_sealed_blocks(
    fh: Any, rows: npt.NDArray[Any], block: int, sealer: Sealer, aad_prefix: bytes
) -> None:
    """Seal `rows` in blocks of `block` rows (the last one zero-padded), block `b` bound to
    `aad_prefix + b`, read straight from the array's memory (no copy of the whole), written a
    few MiB at a time."""
    n = rows.shape[0]
    if not n:
        return
    row_bytes = rows.shape[1] * rows.itemsize
    size = block * row_bytes
    raw = memoryview(np.ascontiguousarray(rows).data).cast("B")
    full = n // block
    pending: list[bytes] = []
    for b in range(full):
        pending.append(sealer.seal(raw[b * size : (b + 1) * size], aad_prefix + b"%d" % b))
        if len(pending) == 512:
            fh.write(b"".join(pending))
            pending.clear()
    if n % block:
        last = np.zeros((block, rows.shape[1]), rows.dtype)
        last[: n - full * block] = rows[full * block :]
        pending.append(sealer.seal(last.tobytes(), aad_prefix + b"%d" % full))
    fh.write(b"".join(pending))


class Segment:
    """One immutable sealed segment: ids and PQ codes in RAM, the 8-bit codes in RAM once
    `load_codes` ran (else read and opened per block of the rows asked for), float vectors in
    sealed blocks on disk."""

    def __init__(
        self,
        seq: int,
        path: Path,
        ids: I64,
        pq: Any,
        sq: U8 | None,
        lo: F32,
        step: F32,
        centre: F32,
        data_offset: int,
        sealer: Sealer,
        aad: bytes,
        sq_offset: int = 0,
    ) -> None:
        self.seq = seq
        self.path = path
        self.ids = ids
        self.lo = lo
        self.step = step
        self.step_squared = (step.astype(np.float64) ** 2).astype(np.float32)
        #: the 8-bit codes in RAM, with each code's Σ step²·c² (`_hold_codes`)
        self.sq: U8 | None = None
        self.sq_norms: F32 | None = None
        if sq is not None:
            self._hold_codes(sq)
        self.centre = centre
        self.dim = int(lo.shape[0])
        self.data_offset = data_offset
        self.block_bytes = BLOCK * self.dim * 4 + Sealer.OVERHEAD
        #: where the sealed blocks of 8-bit codes start (format 2; with `sq` None)
        self.sq_offset = sq_offset
        self.sq_block_bytes = SQ_BLOCK * self.dim + Sealer.OVERHEAD
        self._sealer = sealer
        self._aad = aad
        self._codes_lock = threading.Lock()
        self.pq = pq
        self._parts: list[tuple[int, int, Any]] | None = None
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def nbytes(self) -> int:
        pq = self.count * pq_subspaces(self.dim) * PQ_BITS // 8 if self.pq is not None else 0
        sq = self.sq.nbytes if self.sq is not None else 0
        norms = self.sq_norms.nbytes if self.sq_norms is not None else 0
        return int(self.ids.nbytes + pq + sq + norms)

    # -- writing -------------------------------------------------------------------------------
    @classmethod
    def write(
        cls, path: Path, seq: int, ids: I64, vectors: F32, sealer: Sealer, aad: bytes
    ) -> Segment:
        """Seal `vectors` (sorted by id) into a new segment file and open it."""
        n, dim = vectors.shape
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        centre = vectors.mean(axis=0).astype(np.float32) if n else np.zeros(dim, np.float32)
        pq = train_pq(vectors) if n >= MIN_PQ else None
        pq_bytes = faiss.serialize_index(pq) if pq is not None else np.zeros(0, np.uint8)
        lo = vectors.min(axis=0) if n else np.zeros(dim, np.float32)
        hi = vectors.max(axis=0) if n else np.ones(dim, np.float32)
        step = np.maximum((hi - lo) / 255.0, 1e-12).astype(np.float32)
        # 8-bit codes a slice at a time: no float temporary of the whole segment
        sq = np.empty((n, dim), np.uint8)
        for start in range(0, n, _CODE_SLICE):
            part = vectors[start : start + _CODE_SLICE] - lo
            part /= step
            np.rint(part, out=part)
            np.clip(part, 0, 255, out=part)
            sq[start : start + _CODE_SLICE] = part
        header = _header_parts(
            {"seq": seq, "count": n, "dim": dim, "sq_block": SQ_BLOCK},
            ids=ids,
            pq=pq_bytes,
            lo=lo.astype(np.float32),
            step=step,
            centre=centre,
        )
        header_len = Sealer.OVERHEAD + sum(len(p) for p in header)
        tmp = path.with_name(path.name + ".tmp")
        with create_private(tmp) as fh:
            fh.write(MAGIC + struct.pack("<Q", header_len))
            # streamed a MiB at a time: tens of MB at 1M faces, sealed while searches run
            if sealer.seal_into(fh, header, aad + b":header") != header_len:
                raise AssertionError("segment header length")
            del header, pq_bytes
            _write_sealed_blocks(fh, sq, SQ_BLOCK, sealer, aad + b":sq:")
            _write_sealed_blocks(fh, vectors, BLOCK, sealer, aad + b":")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        sq_offset = len(MAGIC) + 8 + header_len
        sq_blocks = (n + SQ_BLOCK - 1) // SQ_BLOCK
        data_offset = sq_offset + sq_blocks * (SQ_BLOCK * dim + Sealer.OVERHEAD)
        return cls(seq, path, ids, pq, sq, lo, step, centre, data_offset, sealer, aad, sq_offset)

    @classmethod
    def open(cls, path: Path, seq: int, sealer: Sealer, aad: bytes) -> Segment:
        """Open the segment's header: ids and PQ codes. The 8-bit codes of format 2 stay
        sealed on disk until asked for (`codes_at`, `load_codes`)."""
        with open(path, "rb") as fh:
            magic = fh.read(len(MAGIC))
            if magic not in (MAGIC, MAGIC_V1):
                raise ValueError(f"{path.name} is not a facesearch segment")
            (hlen,) = struct.unpack("<Q", fh.read(8))
            header = sealer.open(fh.read(hlen), aad + b":header")
        meta, arrays = _unpack_header(header)
        del header
        pq_bytes = arrays["pq"]
        pq = faiss.deserialize_index(pq_bytes) if pq_bytes.size else None
        del pq_bytes, arrays["pq"]
        if meta["seq"] != seq:
            raise ValueError(f"{path.name} holds segment {meta['seq']}, not {seq}")
        sq_offset = len(MAGIC) + 8 + hlen
        data_offset = sq_offset
        if magic == MAGIC:
            if int(meta.get("sq_block", 0)) != SQ_BLOCK:
                raise ValueError(f"{path.name}: unexpected code block size")
            n, dim = int(meta["count"]), int(meta["dim"])
            data_offset += ((n + SQ_BLOCK - 1) // SQ_BLOCK) * (SQ_BLOCK * dim + Sealer.OVERHEAD)
        return cls(
            seq,
            path,
            arrays["ids"],
            pq,
            arrays.get("sq"),  # format 1 only
            arrays["lo"],
            arrays["step"],
            arrays["centre"],
            data_offset,
            sealer,
            aad,
            sq_offset,
        )

    # -- reading -------------------------------------------------------------------------------
    def _code_block(self, b: int) -> U8:
        sealed = os.pread(self._fd, self.sq_block_bytes, self.sq_offset + b * self.sq_block_bytes)
        raw = self._sealer.open(sealed, self._aad + b":sq:%d" % b)
        return np.frombuffer(raw, np.uint8).reshape(SQ_BLOCK, self.dim)

    def load_codes(self) -> None:
        """Hold every 8-bit code in RAM (the service, which searches many times)."""
        with self._codes_lock:
            if self.sq is not None:
                return
            n = self.count
            out = np.empty((n, self.dim), np.uint8)
            for b in range((n + SQ_BLOCK - 1) // SQ_BLOCK):
                stop = min(n, (b + 1) * SQ_BLOCK)
                out[b * SQ_BLOCK : stop] = self._code_block(b)[: stop - b * SQ_BLOCK]
            self._hold_codes(out)

    def _hold_codes(self, sq: U8) -> None:
        """Keep `sq` in RAM with each code's Σ_j step_j²·c_j² (4 bytes a face), so that a
        search ranks its short list by one gather and one matrix-vector product."""
        norms = np.empty(sq.shape[0], np.float32)
        for start in range(0, sq.shape[0], _CODE_SLICE):  # no float copy of the whole segment
            part = sq[start : start + _CODE_SLICE].astype(np.float32)
            np.multiply(part, part, out=part)
            norms[start : start + _CODE_SLICE] = part @ self.step_squared
        self.sq_norms = norms
        self.sq = sq

    def codes_at(self, rows: npt.NDArray[np.int64]) -> U8:
        """The 8-bit codes at `rows`: from RAM, else read and opened per block of `SQ_BLOCK`."""
        sq = self.sq
        if sq is not None:
            return np.take(sq, rows, axis=0)
        out = np.empty((rows.shape[0], self.dim), np.uint8)
        if not rows.shape[0]:
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        blocks = ordered // SQ_BLOCK
        starts = np.flatnonzero(np.diff(blocks)) + 1
        bounds = zip([0, *starts.tolist()], [*starts.tolist(), ordered.shape[0]], strict=True)
        for start, stop in bounds:
            block = self._code_block(int(blocks[start]))
            out[order[start:stop]] = block[ordered[start:stop] % SQ_BLOCK]
        return out

    def vectors_at(self, rows: npt.NDArray[np.int64]) -> F32:
        """The exact float vectors at `rows`, read and opened block by block."""
        out = np.empty((rows.shape[0], self.dim), np.float32)
        blocks: dict[int, F32] = {}
        for i, row in enumerate(rows.tolist()):
            b = row // BLOCK
            block = blocks.get(b)
            if block is None:
                sealed = os.pread(
                    self._fd, self.block_bytes, self.data_offset + b * self.block_bytes
                )
                raw = self._sealer.open(sealed, self._aad + b":%d" % b)
                block = blocks[b] = np.frombuffer(raw, np.float32).reshape(BLOCK, self.dim)
            out[i] = block[row % BLOCK]
        return out

    def all_vectors(self, out: F32 | None = None) -> F32:
        n = self.count
        if out is None:
            out = np.empty((n, self.dim), np.float32)
        nblocks = (n + BLOCK - 1) // BLOCK
        with open(self.path, "rb") as fh:
            fh.seek(self.data_offset)
            for b in range(nblocks):
                raw = self._sealer.open(fh.read(self.block_bytes), self._aad + b":%d" % b)
                stop = min(n, (b + 1) * BLOCK)
                out[b * BLOCK : stop] = np.frombuffer(raw, np.float32).reshape(BLOCK, self.dim)[
                    : stop - b * BLOCK
                ]
        return out

    def approx_distances(self, query: F32, rows: npt.NDArray[np.int64]) -> F32:
        """Squared distances from the 8-bit codes (error ~ step/2 per dimension)."""
        # sum_j (lo_j + c_j step_j - q_j)^2 = sum_j step_j^2 (c_j - t_j)^2, t = (q - lo) / step
        t = (query - self.lo) / self.step
        sq, norms = self.sq, self.sq_norms
        if sq is not None and norms is not None:
            # = norm(c) - 2 c.(step^2 t) + sum_j step_j^2 t_j^2: one gather of the codes and
            # one matrix-vector product (the norms were computed when the codes came to RAM);
            # few numpy calls, as a search makes these calls on every part of every segment
            w = self.step_squared * t
            d = np.take(sq, rows, axis=0) @ (-2 * w)
            d += np.take(norms, rows)
            d += float(w @ t)
            return np.asarray(d, dtype=np.float32)
        # in place on one float copy of the codes, then one matrix-vector product
        codes = self.codes_at(rows).astype(np.float32)
        np.subtract(codes, t, out=codes)
        np.multiply(codes, codes, out=codes)
        return np.asarray(codes @ self.step_squared, dtype=np.float32)

    @property
    def block_rows(self) -> int:
        """Rows of one packed block of PQ codes: a part of the scan starts at a multiple."""
        return int(self.pq.bbs) if self.pq is not None else 1

    def cuts(self) -> tuple[int, ...] | None:
        """Where the PQ scan is cut now (None: not yet)."""
        parts = self._parts
        return None if parts is None else tuple(a for a, _, _ in parts[1:])

    def cut(self, at: tuple[int, ...] | None) -> list[tuple[int, int, Any]]:
        """The segment's PQ scan as contiguous parts `(start, stop, index)` split at the rows
        `at` (multiples of `block_rows`; None: as it is now cut). Each part is a fast-scan
        index over the same trained PQ holding the codes of its rows, so its distances are
        exactly the whole index's. Cut again only when `at` changes (a search plan of a new
        layout, `SegmentIndex._scan_plan`); the codes are moved, never copied for good, so RAM
        stays at one code per face."""
        if self.pq is None:
            return [(0, self.count, None)]
        with self._codes_lock:
            parts = self._parts
            if parts is not None and (at is None or self.cuts() == at):
                return parts
            whole: Any = self.pq
            n = self.count
            bbs = int(whole.bbs)
            block = bbs * int(whole.M2) // 2  # bytes of one packed block of `bbs` codes
            if parts is None:
                codes = faiss.AlignedTable_to_array(whole.codes)
            else:  # parts start at multiples of bbs: their packed blocks concatenate exactly
                codes = np.concatenate([faiss.AlignedTable_to_array(p.codes) for _, _, p in parts])
            cuts = [0, *(at or ()), n]
            new = []
            for start, stop in itertools.pairwise(cuts):
                part: Any = faiss.IndexPQFastScan(
                    whole.d, whole.M, whole.nbits, whole.metric_type, bbs
                )
                part.pq = whole.pq
                part.is_trained = True
                part.ntotal = stop - start
                part.ntotal2 = -(-(stop - start) // bbs) * bbs
                first = start // bbs * block
                faiss.copy_array_to_AlignedTable(
                    np.ascontiguousarray(codes[first : first + part.ntotal2 // bbs * block]),
                    part.codes,
                )
                new.append((start, stop, part))
            del codes
            if parts is None:  # the whole index is never searched: the parts hold its codes
                whole.codes.resize(0)
                whole.ntotal2 = 0
            self._parts = new  # a search still holding the old parts keeps them till it ends
            return new


def _header_parts(meta: dict[str, Any], **arrays: npt.NDArray[Any]) -> list[memoryview]:
    """A segment header as buffers over the arrays' own memory (sealed by `seal_into`)."""
    parts: list[memoryview] = []
    spec = []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        spec.append([name, arr.dtype.str, list(arr.shape)])
        parts.append(memoryview(arr.data).cast("B"))
    head = json.dumps({"meta": meta, "arrays": spec}).encode()
    return [memoryview(struct.pack("<I", len(head)) + head), *parts]


def _pack_header(meta: dict[str, Any], **arrays: npt.NDArray[Any]) -> bytes:
    return b"".join(_header_parts(meta, **arrays))


def _unpack_header(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    (hlen,) = struct.unpack_from("<I", data)
    head = json.loads(data[4 : 4 + hlen])
    offset = 4 + hlen
    arrays: dict[str, Any] = {}
    for name, dtype, shape in head["arrays"]:
        dt = np.dtype(dtype)
        size = int(np.prod(shape)) * dt.itemsize
        view = np.frombuffer(data, dt, count=int(np.prod(shape)), offset=offset).reshape(shape)
        # the PQ index is copied by faiss as it is deserialised: a view spares one copy
        arrays[name] = view if name == "pq" else view.copy()
        offset += size
    return head["meta"], arrays


def _gather(ids: list[I64], vectors: list[F32], dim: int) -> tuple[I64, F32]:
    """Concatenate chunks into one array, freeing each chunk as it is copied (the peak is the
    whole plus one chunk, not twice the whole)."""
    total = sum(int(i.shape[0]) for i in ids)
    out_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    out = np.empty((total, dim), np.float32)
    at = 0
    vectors.reverse()
    while vectors:
        part = vectors.pop()
        out[at : at + part.shape[0]] = part
        at += part.shape[0]
        del part
    ids.clear()
    return out_ids, out


#: one part of a search's scan: (view, start row, stop row, PQ index or None, short list)
ScanTask = tuple[int, int, int, Any, int]


@dataclass(frozen=True)
class ScanPlan:
    """The parts one search scans and, per thread, the parts it scans (`_scan_plan`)."""

    tasks: list[ScanTask]
    bundles: list[list[int]]


@dataclass(frozen=True)
class SegmentView:
    """A segment with the ids deleted from it (sorted): immutable, replaced on every delete."""

    segment: Segment
    deleted: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def live(self) -> int:
        return self.segment.count - int(self.deleted.shape[0])

    def live_mask(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        if not self.deleted.shape[0]:
            return np.ones(rows.shape[0], bool)
        ids = self.segment.ids[rows]
        pos = np.searchsorted(self.deleted, ids)
        pos = np.minimum(pos, self.deleted.shape[0] - 1)
        return np.asarray(self.deleted[pos] != ids)

    def holds(self, ids: I64) -> npt.NDArray[np.bool_]:
        """Which of `ids` are live in this segment."""
        seg_ids = self.segment.ids
        if not seg_ids.shape[0]:
            return np.zeros(ids.shape[0], bool)
        pos = np.minimum(np.searchsorted(seg_ids, ids), seg_ids.shape[0] - 1)
        found = seg_ids[pos] == ids
        if self.deleted.shape[0]:
            found &= ~np.isin(ids, self.deleted)
        return np.asarray(found)


@dataclass(frozen=True)
class Snapshot:
    """What one collection holds at one moment: immutable, published atomically."""

    views: tuple[SegmentView, ...] = ()
    tail_ids: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    tail_vectors: F32 | None = None
    high_water: int = 0

    @property
    def count(self) -> int:
        return sum(v.live for v in self.views) + int(self.tail_ids.shape[0])

    def max_id(self) -> int:
        """The highest live face id."""
        best = int(self.tail_ids.max()) if self.tail_ids.shape[0] else 0
        for view in self.views:
            ids, deleted = view.segment.ids, view.deleted
            if deleted.shape[0]:
                # ids are sorted and unique: among the last (tombstones + 1) at least one is
                # live, so the cost follows the tombstones, not the segment
                ids = ids[-(deleted.shape[0] + 1) :]
                ids = ids[~np.isin(ids, deleted)]
            if ids.shape[0]:
                best = max(best, int(ids[-1]))
        return best


class CollectionSegments:
    """The segments and tail of one collection; writers serialise on `lock`, readers don't."""

    def __init__(self, owner: SegmentIndex, collection_id: int) -> None:
        self.owner = owner
        self.collection_id = collection_id
        self.directory = owner.directory / f"c{collection_id}"
        self.lock = threading.RLock()
        self.compacting = threading.Lock()
        self.snapshot = Snapshot(tail_vectors=np.zeros((0, owner.dim), np.float32))
        self.next_seq = 1
        self.dirty = False
        self.loaded = False
        self._manifest: dict[str, Any] | None = None
        #: the search plans of the latest layouts (the one being published and the one
        #: before it, which searches in flight still read), by layout
        self.scan_plans: dict[Any, ScanPlan] = {}

    # -- persistence ---------------------------------------------------------------------------
    def _aad(self, what: str) -> bytes:
        return f"index:{self.owner.model_id}:{self.collection_id}:{what}".encode()

    def seg_path(self, seq: int) -> Path:
        return self.directory / f"seg-{seq:08d}.seg"

    def read_manifest(self) -> dict[str, Any] | None:
        if self._manifest is None:
            path = self.directory / "manifest"
            if not path.exists():
                return None
            self._manifest = json.loads(
                self.owner.sealer.open(path.read_bytes(), self._aad("manifest"))
            )
        return self._manifest

    def load(self) -> None:
        """Open the segments the manifest names (on first use) and remove any orphan file."""
        with self.lock:
            if self.loaded:
                return
            manifest = self.read_manifest()
            views: list[SegmentView] = []
            if manifest is not None:
                for entry in manifest["segments"]:
                    seq = int(entry["seq"])
                    seg = Segment.open(
                        self.seg_path(seq), seq, self.owner.sealer, self._aad(f"seg:{seq}")
                    )
                    deleted = np.asarray(entry.get("deleted", []), dtype=np.int64)
                    views.append(SegmentView(seg, np.sort(deleted)))
                self.next_seq = int(manifest["next_seq"])
                pending = np.asarray(manifest.get("pending_deleted", []), dtype=np.int64)
                if pending.shape[0]:  # tombstones written before the segments were opened
                    views = [
                        SegmentView(v.segment, np.union1d(v.deleted, pending[v.holds(pending)]))
                        for v in views
                    ]
            named = {self.seg_path(v.segment.seq).name for v in views} | {"manifest"}
            if self.directory.exists() and not self.owner.read_only:
                for path in self.directory.iterdir():
                    if path.name not in named:
                        path.unlink(missing_ok=True)
            self.snapshot = Snapshot(
                tuple(views),
                self.snapshot.tail_ids,
                self.snapshot.tail_vectors,
                int(manifest["high_water"]) if manifest else 0,
            )
            self.loaded = True
            if manifest is not None and manifest.get("pending_deleted"):
                # the tombstones now sit in their segments (in memory only when read-only)
                self.write_manifest(self.snapshot)

    def remove_unloaded(self, drop: I64) -> bool:
        """Tombstone `drop` without opening a segment: the ids go to the manifest's
        `pending_deleted` (durable at once) and into the segments on the next load. True when
        done so; False when the collection is loaded (the caller removes in memory)."""
        with self.lock:
            if self.loaded or self.owner.read_only:
                return False
            manifest = self.read_manifest()
            if manifest is None:
                return True
            before = np.asarray(manifest.get("pending_deleted", []), dtype=np.int64)
            pending = np.union1d(before, drop)
            added = int(pending.shape[0] - before.shape[0])
            if not added:
                return True
            doc = dict(manifest)
            doc["pending_deleted"] = pending.tolist()
            doc["count"] = max(0, int(manifest["count"]) - added)
            self._manifest = doc
            _write_atomic(
                self.directory / "manifest",
                self.owner.sealer.seal(json.dumps(doc).encode(), self._aad("manifest")),
            )
            return True

    def write_manifest(self, snap: Snapshot) -> None:
        private_dirs(self.directory)
        doc = {
            "version": 1,
            "model_id": self.owner.model_id,
            "collection_id": self.collection_id,
            "next_seq": self.next_seq,
            "high_water": snap.high_water,
            "count": snap.count - int(snap.tail_ids.shape[0]),
            "max_id": Snapshot(snap.views).max_id(),
            "segments": [
                {
                    "seq": v.segment.seq,
                    "count": v.segment.count,
                    "deleted": v.deleted.tolist(),
                }
                for v in snap.views
            ],
        }
        self._manifest = doc
        if self.owner.read_only:
            return
        _write_atomic(
            self.directory / "manifest",
            self.owner.sealer.seal(json.dumps(doc).encode(), self._aad("manifest")),
        )

    def new_segment(self, ids: I64, vectors: F32) -> Segment:
        """Write a segment (under the writer lock only to take its number)."""
        with self.lock:
            seq = self.next_seq
            self.next_seq += 1
        private_dirs(self.directory)
        ids = np.asarray(ids, np.int64)
        if not _strictly_ascending(ids):
            order = np.argsort(ids, kind="stable")
            ids, vectors = ids[order], vectors[order]  # a copy only when out of order
        return Segment.write(
            self.seg_path(seq),
            seq,
            np.ascontiguousarray(ids, dtype=np.int64),
            np.ascontiguousarray(vectors, dtype=np.float32),
            self.owner.sealer,
            self._aad(f"seg:{seq}"),
        )

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> ShardState:
        if not self.loaded:
            manifest = self.read_manifest()
            if manifest is None:
                return ShardState(0, 0)
            tail = self.snapshot.tail_ids
            count = int(manifest["count"]) + int(tail.shape[0])
            max_id = max(int(manifest["max_id"]), int(tail.max()) if tail.shape[0] else 0)
            return ShardState(count, max_id, int(manifest["high_water"]))
        snap = self.snapshot
        return ShardState(snap.count, snap.max_id(), snap.high_water)


class SegmentIndex:
    """The segment index of one model: one `CollectionSegments` per collection."""

    def __init__(
        self,
        directory: Path,
        sealer: Sealer,
        model_id: str,
        dim: int,
        *,
        shortlist: int = 3000,
        rerank: int = 40,
        tail_limit: int = 8192,
        max_segments: int = 8,
        merge_factor: int = MERGE_FACTOR,
        segment_cap: int = SEGMENT_CAP,
        background_compaction: bool = False,
        read_only: bool = False,
        search_threads: int | None = None,
    ) -> None:
        self.directory = directory / model_id
        #: threads one search spreads its segments' scans over (default: the cores, up to 4)
        self.search_threads = (
            search_threads if search_threads is not None else min(4, os.cpu_count() or 1)
        )
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        #: another process writes this index (the service holds its writer lock): this one reads
        #: the sealed segments and keeps its own changes in memory, never touching a file
        self.read_only = read_only
        self.sealer = sealer
        self.model_id = model_id
        self.dim = dim
        self.shortlist = shortlist
        self.rerank = rerank
        self.tail_limit = tail_limit
        self.max_segments = max_segments
        #: fold the smallest segments into the next bigger one once together they hold
        #: 1/merge_factor of its faces (0: never; `max_segments` alone then bounds the count)
        self.merge_factor = merge_factor
        #: compaction builds no segment of more faces than this (a rebuild may)
        self.segment_cap = segment_cap
        self.background_compaction = background_compaction
        self._lock = threading.RLock()
        self._collections: dict[int, CollectionSegments] = {}
        self._threads: list[threading.Thread] = []
        if self.directory.exists():
            for path in sorted(self.directory.glob("c*")):
                if path.is_dir() and path.name[1:].isdigit():
                    cs = CollectionSegments(self, int(path.name[1:]))
                    try:
                        if cs.read_manifest() is None:
                            if not read_only:
                                shutil.rmtree(path, ignore_errors=True)
                            continue
                    except Exception as exc:  # unreadable: rebuilt from the database
                        log.warning("ignoring unreadable index manifest %s: %s", path, exc)
                        continue
                    self._collections[cs.collection_id] = cs
            for path in self.directory.glob("*.trash") if not read_only else ():
                shutil.rmtree(path, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------
    def _get(self, collection_id: int, *, create: bool = False) -> CollectionSegments | None:
        with self._lock:
            cs = self._collections.get(collection_id)
            if cs is None and create:
                cs = self._collections[collection_id] = CollectionSegments(self, collection_id)
                cs.loaded = True
        if cs is not None and not cs.loaded:
            try:
                cs.load()
            except Exception as exc:
                log.warning(
                    "index of collection %s unreadable (%s): starting it empty", collection_id, exc
                )
                cs.snapshot = Snapshot(tail_vectors=np.zeros((0, self.dim), np.float32))
                cs.loaded = True
                cs._manifest = None
        return cs

    def open_collections(self, collection_ids: Sequence[int]) -> None:
        """Open these collections' segments (headers only) ahead of a search."""
        for cid in collection_ids:
            self._get(cid)

    def warm(self) -> None:
        """Open every collection's segments now, their 8-bit codes in RAM (the service does
        this at start-up; a process that searches once reads only its short list's codes)."""
        for cid in self.collections():
            cs = self._get(cid)
            if cs is not None:
                for view in cs.snapshot.views:
                    view.segment.load_codes()
                self._plan_ahead(cs)  # the first search finds its plan made

    # -- VectorIndex ---------------------------------------------------------------------------
    def add(self, collection_id: int, ids: I64, vectors: F32) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}")
        if ids.size == 0:
            return
        cs = self._get(collection_id, create=True)
        assert cs is not None
        with cs.lock:
            snap = cs.snapshot
            _, first = np.unique(ids, return_index=True)
            keep = np.zeros(ids.shape[0], bool)
            keep[first] = True
            keep &= ~np.isin(ids, snap.tail_ids)
            for view in snap.views:
                keep &= ~view.holds(ids)
            ids, vectors = ids[keep], vectors[keep]
            if not ids.size:
                return
            assert snap.tail_vectors is not None
            cs.snapshot = Snapshot(
                snap.views,
                np.concatenate([snap.tail_ids, ids]),
                np.concatenate([snap.tail_vectors, vectors]),
                snap.high_water,
            )
            cs.dirty = True
            if cs.snapshot.tail_ids.shape[0] >= self.tail_limit:
                self._seal_tail(cs)

    def _seal_tail(self, cs: CollectionSegments) -> None:
        """Seal the tail into a new segment and publish a manifest naming it."""
        if self.read_only:
            return  # the tail stays in memory
        with cs.lock:
            snap = cs.snapshot
            if snap.tail_ids.shape[0]:
                assert snap.tail_vectors is not None
                seg = cs.new_segment(snap.tail_ids, snap.tail_vectors)
                new = Snapshot(
                    (*snap.views, SegmentView(seg)),
                    np.zeros(0, np.int64),
                    np.zeros((0, self.dim), np.float32),
                    max(snap.high_water, int(seg.ids[-1])),
                )
            else:
                new = snap
            self._plan_ahead(cs, new)
            cs.write_manifest(new)
            cs.snapshot = new
            cs.dirty = False

    def remove(self, collection_id: int, ids: Sequence[int]) -> None:
        with self._lock:
            cs = self._collections.get(collection_id)
        if cs is None or not len(ids):
            return
        drop = np.unique(np.asarray(list(ids), dtype=np.int64))
        if cs.remove_unloaded(drop):
            return  # a cold index (the CLI): no segment is opened for a tombstone
        cs = self._get(collection_id)
        assert cs is not None
        with cs.lock:
            snap = cs.snapshot
            views = []
            for view in snap.views:
                hit = drop[view.holds(drop)]
                views.append(
                    SegmentView(view.segment, np.union1d(view.deleted, hit)) if hit.size else view
                )
            keep = ~np.isin(snap.tail_ids, drop)
            assert snap.tail_vectors is not None
            new = Snapshot(
                tuple(views), snap.tail_ids[keep], snap.tail_vectors[keep], snap.high_water
            )
            cs.snapshot = new
            if any(a is not b for a, b in zip(views, snap.views, strict=True)):
                cs.write_manifest(new)  # tombstones are durable at once
        self._maybe_compact(cs)

    def drop_collection(self, collection_id: int) -> None:
        with self._lock:
            cs = self._collections.pop(collection_id, None)
        directory = self.directory / f"c{collection_id}"
        if cs is not None:
            with cs.lock:
                cs.snapshot = Snapshot(tail_vectors=np.zeros((0, self.dim), np.float32))
        if directory.exists() and not self.read_only:
            trash = directory.with_name(directory.name + ".trash")
            shutil.rmtree(trash, ignore_errors=True)
            directory.replace(trash)
            _fsync_dir(self.directory)
            shutil.rmtree(trash, ignore_errors=True)

    def replace_collection(self, collection_id: int, ids: I64, vectors: F32) -> None:
        self.rebuild_collection(collection_id, [(ids, vectors)])

    def rebuild_collection(
        self, collection_id: int, chunks: Iterable[tuple[I64, F32]], *, segment_size: int = 0
    ) -> None:
        """Replace a collection's contents by `chunks` (ids ascending across chunks). New
        segments are written first; one manifest switch publishes them all."""
        with self._lock:  # the old segments are never opened: they are only replaced
            cs = self._collections.get(collection_id)
            if cs is None:
                cs = self._collections[collection_id] = CollectionSegments(self, collection_id)
        if self.read_only:
            self._rebuild_in_memory(cs, chunks)
            return
        if not cs.loaded:
            try:
                manifest = cs.read_manifest()
            except Exception:  # unreadable: replaced all the same
                manifest = None
            if manifest is not None:
                cs.next_seq = max(cs.next_seq, int(manifest["next_seq"]))
        limit = segment_size or 1 << 62
        segs: list[Segment] = []
        pend_ids: list[I64] = []
        pend_vecs: list[F32] = []
        pending = 0
        for ids, vectors in chunks:
            if not len(ids):
                continue
            pend_ids.append(np.asarray(ids, np.int64))
            pend_vecs.append(np.asarray(vectors, np.float32))
            pending += len(ids)
            if pending >= limit:
                segs.append(cs.new_segment(np.concatenate(pend_ids), np.concatenate(pend_vecs)))
                pend_ids, pend_vecs, pending = [], [], 0
        if pending:
            all_ids, all_vecs = _gather(pend_ids, pend_vecs, self.dim)
            if not _strictly_ascending(all_ids):
                _, first = np.unique(all_ids, return_index=True)  # sorted, each id once
                all_ids, all_vecs = all_ids[first], all_vecs[first]
            segs.append(cs.new_segment(all_ids, all_vecs))
            del all_vecs
        with cs.lock:
            high = max((int(s.ids[-1]) for s in segs if s.count), default=0)
            new = Snapshot(
                tuple(SegmentView(s) for s in segs),
                np.zeros(0, np.int64),
                np.zeros((0, self.dim), np.float32),
                high,
            )
            self._plan_ahead(cs, new)
            cs.write_manifest(new)
            cs.snapshot = new
            cs.dirty = False
            cs.loaded = True
            named = {s.path.name for s in segs} | {"manifest"}
            for path in cs.directory.iterdir():
                if path.name not in named:
                    path.unlink(missing_ok=True)

    def _rebuild_in_memory(self, cs: CollectionSegments, chunks: Iterable[tuple[I64, F32]]) -> None:
        """A read-only index's rebuild: the whole collection in the (exactly searched) tail."""
        parts = [(np.asarray(i, np.int64), np.asarray(v, np.float32)) for i, v in chunks if len(i)]
        ids = np.concatenate([i for i, _ in parts]) if parts else np.zeros(0, np.int64)
        vecs = (
            np.concatenate([v for _, v in parts]) if parts else np.zeros((0, self.dim), np.float32)
        )
        ids, first = np.unique(ids, return_index=True)
        with cs.lock:
            high = int(ids[-1]) if ids.shape[0] else 0
            cs.snapshot = Snapshot((), ids, np.ascontiguousarray(vecs[first]), high)
            cs.loaded = True

    def search(self, queries: F32, k: int, collections: Sequence[int]) -> list[list[Hit]]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        nq = queries.shape[0]
        results: list[list[Hit]] = [[] for _ in range(nq)]
        if k <= 0:
            return results
        for collection_id in collections:
            cs = self._get(collection_id)
            if cs is None:
                continue
            snap = cs.snapshot  # one atomic read: later writes do not change it
            for qi, hits in enumerate(self._search_snapshot(cs, snap, queries, k)):
                results[qi].extend(Hit(int(fid), float(s), collection_id) for fid, s in hits)
        return [sorted(hits, key=lambda h: (-h.score, h.face_id))[:k] for hits in results]

    def _scan_plan(self, views: Sequence[SegmentView]) -> ScanPlan:
        """What one search scans, and on which thread: `(view, start, stop, PQ index or None,
        short list)` per part of every segment, and the parts of each thread's bundle.

        Balance: the segments are laid end to end (largest first, those without PQ last) and
        cut where the threads' equal shares of all faces end, so every thread scans about as
        many codes whatever the layout compaction left (a cut leaves no part under `PART_MIN`
        faces: a part costs a call). A segment with no cut of its own keeps the cut it has.

        The short list is shared out by the parts' live faces: a face's rank by PQ distance
        within a part is about its rank in the whole collection times the part's share of it,
        so a share of the list finds what one segment of the whole collection with the whole
        list would (a floor, never above the list itself, keeps small parts safe). The cost of
        a search stays that of one list, however many segments compaction left."""
        sizes = [v.segment.count for v in views]
        total = sum(sizes)
        threads = max(1, self.search_threads if total >= PARALLEL_FROM else 1)
        order = sorted(range(len(views)), key=lambda i: (views[i].segment.pq is None, -sizes[i]))
        scanned = sum(n for n, v in zip(sizes, views, strict=True) if v.segment.pq is not None)
        ends = [scanned * t // threads for t in range(1, threads)]
        # a cut within 1% of the faces of where it would go stays: a small save moves the ends
        # a little, and cutting a big segment's codes again costs more than the imbalance
        slack = scanned // 100
        live_total = sum(v.live for v in views) or 1
        floor = min(self.shortlist, max(SHORTLIST_FLOOR, self.rerank))
        tasks: list[ScanTask] = []
        bundles: list[list[int]] = [[] for _ in range(threads)]
        loads = [0] * threads
        offset = 0
        for vi in order:
            view, n = views[vi], sizes[vi]
            seg = view.segment
            bbs = seg.block_rows
            cuts = tuple(
                c
                for c in ((end - offset) // bbs * bbs for end in ends)
                if PART_MIN <= c <= n - PART_MIN
            )
            now = seg.cuts()
            keep = (
                now is not None
                and len(now) == len(cuts)
                and all(abs(a - b) <= slack for a, b in zip(now, cuts, strict=True))
            )
            for start, stop, pq in seg.cut(None if keep or not cuts else cuts):
                live = view.live * (stop - start) / max(1, n)
                share = max(floor, math.ceil(self.shortlist * live / live_total))
                if pq is not None:  # the thread whose share holds the part's middle
                    t = min(threads - 1, (offset + (start + stop) // 2) * threads // scanned)
                else:  # no PQ (a small segment): ranked whole, by the least loaded thread
                    t = loads.index(min(loads))
                bundles[t].append(len(tasks))
                loads[t] += stop - start
                tasks.append((vi, start, stop, pq, min(stop - start, share)))
            offset += n
        return ScanPlan(tasks, [b for b in bundles if b])

    def _plan_for(self, cs: CollectionSegments, views: Sequence[SegmentView]) -> ScanPlan:
        """The scan plan of this layout: made once per layout (a save, a compaction, a delete
        changes it), by the writer right after it publishes one when the codes are in RAM."""
        key = (self.search_threads, tuple((v.segment.seq, v.live) for v in views))
        plan = cs.scan_plans.get(key)
        if plan is None:
            plan = self._scan_plan(views)
            plans = dict(itertools.islice(reversed(cs.scan_plans.items()), 1))  # the latest
            plans[key] = plan
            cs.scan_plans = plans  # replaced whole: a reader never sees it half changed
        return plan

    def _plan_ahead(self, cs: CollectionSegments, snap: Snapshot | None = None) -> None:
        """Make a layout's plan (and cut its segments) before it is published, so no search
        waits for it (when every segment's codes are in RAM: the service)."""
        views = [v for v in (snap or cs.snapshot).views if v.segment.count]
        if views and all(v.segment.sq is not None for v in views):
            self._plan_for(cs, views)

    def _part_candidates(
        self,
        view: SegmentView,
        start: int,
        stop: int,
        pq: Any,
        n: int,
        queries: F32,
        keep: int,
    ) -> list[tuple[npt.NDArray[np.int64], F32]]:
        """Per query: rows of the part (at most `keep`) and their 8-bit distances."""
        seg = view.segment
        short = None
        if pq is not None and stop - start > n:
            _, found = pq.search(queries, n)
            short = np.asarray(found, dtype=np.int64)
        every = np.arange(start, stop, dtype=np.int64) if short is None else None
        out: list[tuple[npt.NDArray[np.int64], F32]] = []
        for qi in range(queries.shape[0]):
            if short is None:
                assert every is not None
                rows = every
            else:
                rows = short[qi]
                if rows[-1] < 0:  # fewer than n found (never, with n below the part's size)
                    rows = rows[rows >= 0]
                if start:
                    rows = rows + start
            if view.deleted.shape[0]:
                rows = rows[view.live_mask(rows)]
            if not rows.size:
                out.append((rows, np.zeros(0, np.float32)))
                continue
            d = seg.approx_distances(queries[qi], rows)
            if d.shape[0] > keep:
                top = np.argpartition(d, keep - 1)[:keep]
                rows, d = rows[top], d[top]
            out.append((rows, d))
        return out

    def _pool(self) -> ThreadPoolExecutor | None:
        if self.search_threads < 2:
            return None
        with self._lock:
            if self._executor is None or self._executor_pid != os.getpid():  # (a forked child)
                self._executor_pid = os.getpid()
                self._executor = ThreadPoolExecutor(
                    self.search_threads,
                    thread_name_prefix="index-search",
                    initializer=faiss.omp_set_num_threads,  # one core per segment scan
                    initargs=(1,),
                )
            return self._executor

    def _search_snapshot(
        self, cs: CollectionSegments, snap: Snapshot, queries: F32, k: int
    ) -> list[list[tuple[int, float]]]:
        nq = queries.shape[0]
        out: list[list[tuple[int, float]]] = [[] for _ in range(nq)]
        views = [v for v in snap.views if v.segment.count]
        rerank = max(self.rerank, k)
        plan = self._plan_for(cs, views)
        tasks, bundles = plan.tasks, plan.bundles or [[]]  # (no segment: the tail alone)
        pool = self._pool() if len(bundles) > 1 else None

        def scan(picked: list[int]) -> list[list[tuple[npt.NDArray[np.int64], F32]]]:
            return [
                self._part_candidates(views[vi], start, stop, pq, n, queries, rerank)
                for vi, start, stop, pq, n in (tasks[i] for i in picked)
            ]

        per_task: list[list[tuple[npt.NDArray[np.int64], F32]]] = [[] for _ in tasks]
        # the calling thread scans the first bundle while the pool scans the others (faiss and
        # numpy's loops release the GIL)
        futures = [pool.submit(scan, b) for b in bundles[1:]] if pool is not None else []
        for picked, scanned in zip(
            bundles, [scan(bundles[0]), *(f.result() for f in futures)], strict=True
        ):
            for i, candidates in zip(picked, scanned, strict=True):
                per_task[i] = candidates
        task_view = [vi for vi, *_ in tasks]
        for qi in range(nq):
            q = queries[qi]
            cand_d: list[F32] = []
            cand_v: list[int] = []
            cand_r: list[npt.NDArray[np.int64]] = []
            for vi, found in zip(task_view, per_task, strict=True):
                rows, d = found[qi]
                if not rows.size:
                    continue
                cand_d.append(d)
                cand_r.append(rows)
                cand_v.extend([vi] * rows.shape[0])
            exact_ids: list[I64] = []
            exact_d: list[F32] = []
            if cand_d:
                d_all = np.concatenate(cand_d)
                r_all = np.concatenate(cand_r)
                v_all = np.asarray(cand_v)
                if d_all.shape[0] > rerank:
                    top = np.argpartition(d_all, rerank - 1)[:rerank]
                    r_all, v_all = r_all[top], v_all[top]
                for vi in np.unique(v_all).tolist():
                    seg = views[vi].segment
                    rows = np.sort(r_all[v_all == vi])
                    vecs = seg.vectors_at(rows)
                    exact_ids.append(seg.ids[rows])
                    exact_d.append(squared_l2(q[None, :], vecs)[0])
            if snap.tail_ids.shape[0]:
                assert snap.tail_vectors is not None
                exact_ids.append(snap.tail_ids)
                exact_d.append(squared_l2(q[None, :], snap.tail_vectors)[0])
            if not exact_ids:
                continue
            ids_all = np.concatenate(exact_ids)
            d_all = np.concatenate(exact_d)
            order = np.lexsort((ids_all, d_all))[:k]
            scores = scores_from_squared_distances(d_all[order])
            out[qi] = [(int(f), float(s)) for f, s in zip(ids_all[order], scores, strict=True)]
        return out

    def state(self, collection_id: int) -> ShardState:
        cs = self._collections.get(collection_id)
        return cs.state() if cs is not None else ShardState(0, 0)

    def count(self, collection_id: int) -> int:
        return self.state(collection_id).count

    def collections(self) -> list[int]:
        return sorted(self._collections)

    def size(self) -> int:
        return sum(self.state(cid).count for cid in self.collections())

    def nbytes(self) -> int:
        total = 0
        for cs in list(self._collections.values()):
            snap = cs.snapshot
            total += sum(v.segment.nbytes() + v.deleted.nbytes for v in snap.views)
            total += snap.tail_ids.nbytes + (
                snap.tail_vectors.nbytes if snap.tail_vectors is not None else 0
            )
        return int(total)

    def save(self) -> None:
        """Seal every dirty tail into a segment; then compact where segments pile up."""
        if self.read_only:
            return
        for cs in list(self._collections.values()):
            if cs.dirty:
                self._seal_tail(cs)
            self._maybe_compact(cs)

    # -- compaction ----------------------------------------------------------------------------
    def _plan(self, snap: Snapshot) -> list[SegmentView]:
        views = list(snap.views)
        heavy = [v for v in views if v.deleted.shape[0] > max(16, v.segment.count // 4)]
        if heavy:
            return heavy
        # size-tiered folding: ascending by size, the smallest j segments fold into the next
        # one once they hold 1/merge_factor of its faces (the most that qualify at once), so
        # sizes stay a geometric series: a collection of N faces keeps about
        # log_F(N / a save's faces) segments, one of them nearly all of it (docs/decisions/0006)
        open_ = sorted((v for v in views if v.live < self.segment_cap), key=lambda v: v.live)
        fold = 0
        total = 0
        for j, view in enumerate(open_):
            grown = j and self.merge_factor and total * self.merge_factor >= view.live
            if grown and total + view.live <= self.segment_cap:
                fold = j + 1
            total += view.live
        if fold:
            return open_[:fold]
        if len(views) <= self.max_segments:
            return []
        by_size = sorted(views, key=lambda v: v.live)
        return by_size[: len(views) - self.max_segments // 2 + 1]

    def _maybe_compact(self, cs: CollectionSegments) -> None:
        if self.read_only or not cs.loaded or not self._plan(cs.snapshot):
            return
        if self.background_compaction:
            thread = threading.Thread(
                target=self._compact_in_background,
                args=(cs.collection_id,),
                name="index-compaction",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        else:
            self.compact(cs.collection_id)

    def _compact_in_background(self, collection_id: int) -> None:
        # one core for the merge's faiss work (PQ training and encoding): the other stays
        # with the searches (OpenMP's thread count is this thread's own)
        faiss.omp_set_num_threads(1)
        self.compact(collection_id)

    def wait(self) -> None:
        """Wait for background compactions and stop the search threads (close does; a later
        search starts them again)."""
        for thread in list(self._threads):
            thread.join()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def compact(self, collection_id: int) -> bool:
        """Merge what `_plan` picks into one segment, off the search path; returns whether it
        changed anything. Deletes that arrive meanwhile are carried over at the switch."""
        if self.read_only:
            return False
        cs = self._get(collection_id)
        if cs is None or not cs.compacting.acquire(blocking=False):
            return False
        try:
            picked = self._plan(cs.snapshot)
            if not picked:
                return False
            # in order of their first ids: segments cover disjoint runs of ids (a save seals
            # the faces after the last), so the merged ids come out ascending, with no sort copy
            order = sorted(picked, key=lambda v: int(v.segment.ids[0]) if v.segment.count else 0)
            keeps = [~np.isin(v.segment.ids, v.deleted) for v in order]
            ids = np.concatenate([v.segment.ids[k] for v, k in zip(order, keeps, strict=True)])
            vectors = np.empty((ids.shape[0], self.dim), np.float32)
            at = 0
            for view, keep in zip(order, keeps, strict=True):  # one segment's floats at a time
                n = int(keep.sum())
                if n == view.segment.count:  # nothing deleted: opened straight into place
                    view.segment.all_vectors(out=vectors[at : at + n])
                else:
                    vectors[at : at + n] = view.segment.all_vectors()[keep]
                at += n
            merged = cs.new_segment(ids, vectors)
            del vectors
            seqs = {v.segment.seq for v in picked}
            with cs.lock:
                snap = cs.snapshot
                late: list[I64] = []  # deleted from a picked segment while we merged
                for view in snap.views:
                    if view.segment.seq in seqs:
                        late.append(view.deleted)
                late_ids = np.unique(np.concatenate(late)) if late else np.zeros(0, np.int64)
                late_ids = late_ids[np.isin(late_ids, merged.ids)]
                kept = [v for v in snap.views if v.segment.seq not in seqs]
                new = Snapshot(
                    (*kept, SegmentView(merged, late_ids)) if merged.count else tuple(kept),
                    snap.tail_ids,
                    snap.tail_vectors,
                    snap.high_water,
                )
                self._plan_ahead(cs, new)
                cs.write_manifest(new)
                cs.snapshot = new
            for seq in seqs:
                cs.seg_path(seq).unlink(missing_ok=True)
            if not merged.count:
                merged.path.unlink(missing_ok=True)
            return True
        finally:
            cs.compacting.release()

    def segment_counts(self, collection_id: int) -> list[int]:
        cs = self._get(collection_id)
        return [v.live for v in cs.snapshot.views] if cs is not None else []


def drop_collection_files(index_dir: Path, model_id: str, collection_id: int) -> None:
    """Remove one collection's segments from disk without opening the index (a process that
    has not loaded it deletes a collection)."""
    directory = index_dir / model_id / f"c{collection_id}"
    if directory.exists():
        trash = directory.with_name(directory.name + ".trash")
        shutil.rmtree(trash, ignore_errors=True)
        directory.replace(trash)
        shutil.rmtree(trash, ignore_errors=True)
