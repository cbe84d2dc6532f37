"""What one search in a fresh process opens of a segment: the header (ids, PQ codes) and the
sealed blocks its short list needs, never every face's codes or vectors; same results as a
warmed index; segments of the first format still read."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesearch.crypto import Sealer
from facesearch.index import segments
from facesearch.index.segments import SegmentIndex
from facesearch.index.synthetic import RealisticGallery

KEY = b"k" * 32
N = 20_000


@dataclass(frozen=True)
class CountingSealer(Sealer):
    """A Sealer that records what it opens: (associated data, plaintext bytes)."""

    opened: list[tuple[bytes, int]] = field(default_factory=list, compare=False)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        raw = super().open(sealed, aad)
        self.opened.append((aad, len(raw)))
        return raw

    def code_blocks(self) -> int:
        return sum(1 for aad, _ in self.opened if b":sq:" in aad)

    def bytes(self) -> int:
        return sum(n for _, n in self.opened)


def _gallery(n: int) -> tuple[np.ndarray, np.ndarray]:
    gen = RealisticGallery(seed=1)
    vecs = np.concatenate([b[1] for b in gen.gallery(n)])
    _, queries = gen.queries(8)
    return vecs, queries


def _hits(index: SegmentIndex, queries: np.ndarray) -> list[list[tuple[int, float]]]:
    return [[(h.face_id, h.score) for h in row] for row in index.search(queries, 10, [1])]


def _built(path: Path, vecs: np.ndarray) -> None:
    index = SegmentIndex(path, Sealer(KEY), "m", 128)
    index.rebuild_collection(1, [(np.arange(1, N + 1), vecs)])


def test_a_fresh_search_opens_its_short_lists_codes_not_the_whole_segment(tmp_path: Path) -> None:
    vecs, queries = _gallery(N)
    _built(tmp_path, vecs)
    # a short list much smaller than the segment, as at 1M faces (1,000 of 1,000,000)
    warm = SegmentIndex(tmp_path, Sealer(KEY), "m", 128, shortlist=64, rerank=10)
    warm.warm()
    want = _hits(warm, queries[:1])

    sealer = CountingSealer(KEY)
    cold = SegmentIndex(tmp_path, sealer, "m", 128, shortlist=64, rerank=10)
    assert _hits(cold, queries[:1]) == want  # same candidates, same exact scores
    header = N * 8 + N * 32  # ids + PQ codes (and a little faiss framing)
    # the short list's codes (64 faces: at most as many blocks of SQ_BLOCK) and 10 float
    # blocks: a bound set by the short list, not by N (every face's 8-bit codes: N * 128 bytes)
    assert 0 < sealer.code_blocks() <= 64
    assert sealer.bytes() - header < 64 * segments.SQ_BLOCK * 128 + 16 * segments.BLOCK * 512
    assert sealer.bytes() < header + N * 128 // 2
    assert max(n for _, n in sealer.opened) < header * 1.1  # no one read of codes or vectors
    view = cold._get(1).snapshot.views[0]  # type: ignore[union-attr]
    assert view.segment.sq is None  # the codes stayed sealed on disk

    cold.warm()  # the service: every code in RAM, then searches open only re-rank blocks
    assert view.segment.sq is not None and view.segment.nbytes() == N * (8 + 32 + 128 + 4)
    sealer.opened.clear()
    assert _hits(cold, queries) == _hits(warm, queries)
    assert sealer.code_blocks() == 0 and sealer.opened


def test_many_probe_faces_and_small_segments_give_the_warm_results(tmp_path: Path) -> None:
    vecs, queries = _gallery(N)
    index = SegmentIndex(tmp_path, Sealer(KEY), "m", 128, max_segments=100, merge_factor=0)
    index.rebuild_collection(1, [(np.arange(1, N - 999), vecs[: N - 1000])])
    index.add(1, np.arange(N - 999, N - 299), vecs[N - 1000 : N - 300])  # a segment < MIN_PQ
    index.save()
    index.add(1, np.arange(N - 299, N + 1), vecs[N - 300 :])  # in the tail of this process
    index.remove(1, [3, 5, N - 500])
    index.save()  # the tail sealed: this process holds every segment's codes in RAM
    want = _hits(index, queries)
    cold = SegmentIndex(tmp_path, Sealer(KEY), "m", 128, max_segments=100, merge_factor=0)
    assert cold.state(1).count == N - 3
    assert _hits(cold, queries) == want
    assert 3 not in {f for row in want for f, _ in row}


def _write_v1(path: Path, seq: int, ids: np.ndarray, vecs: np.ndarray, aad: bytes) -> None:
    """A segment file of the first format (FSSEG01): the 8-bit codes inside the header."""
    sealer = Sealer(KEY)
    n, dim = vecs.shape
    pq = segments.train_pq(vecs)
    lo, hi = vecs.min(axis=0), vecs.max(axis=0)
    step = np.maximum((hi - lo) / 255.0, 1e-12).astype(np.float32)
    sq = np.clip(np.rint((vecs - lo) / step), 0, 255).astype(np.uint8)
    header = segments._pack_header(
        {"seq": seq, "count": n, "dim": dim},
        ids=ids,
        pq=segments.faiss.serialize_index(pq),
        sq=sq,
        lo=lo.astype(np.float32),
        step=step,
        centre=vecs.mean(axis=0).astype(np.float32),
    )
    sealed = sealer.seal(header, aad + b":header")
    padded = np.zeros((((n + 15) // 16) * 16, dim), np.float32)
    padded[:n] = vecs
    raw = padded.tobytes()
    size = 16 * dim * 4
    with open(path, "wb") as fh:
        fh.write(segments.MAGIC_V1 + struct.pack("<Q", len(sealed)) + sealed)
        for b in range(padded.shape[0] // 16):
            fh.write(sealer.seal(raw[b * size : (b + 1) * size], aad + b":%d" % b))


def test_segments_of_the_first_format_are_read_and_compacted_into_the_new(tmp_path: Path) -> None:
    vecs, queries = _gallery(N)
    _built(tmp_path / "new", vecs)
    want = _hits(SegmentIndex(tmp_path / "new", Sealer(KEY), "m", 128), queries)

    old = SegmentIndex(tmp_path / "old", Sealer(KEY), "m", 128)
    old.rebuild_collection(1, [(np.arange(1, N + 1), vecs)])  # manifest and one segment
    (seg_path,) = (tmp_path / "old" / "m" / "c1").glob("seg-*.seg")
    seq = int(seg_path.stem.split("-")[1])
    _write_v1(seg_path, seq, np.arange(1, N + 1, dtype=np.int64), vecs, b"index:m:1:seg:%d" % seq)
    assert seg_path.read_bytes()[:8] == b"FSSEG01\n"

    reopened = SegmentIndex(tmp_path / "old", Sealer(KEY), "m", 128)
    got = _hits(reopened, queries)
    assert [[f for f, _ in row] for row in got] == [[f for f, _ in row] for row in want]
    assert np.allclose([s for row in got for _, s in row], [s for row in want for _, s in row])
    # heavy tombstones: compaction (inline outside the service) rewrites it in the new format
    reopened.remove(1, list(range(1, N // 3)))
    (merged,) = (tmp_path / "old" / "m" / "c1").glob("seg-*.seg")
    assert merged.read_bytes()[:8] == segments.MAGIC
    again = SegmentIndex(tmp_path / "old", Sealer(KEY), "m", 128)
    assert again.state(1).count == N - (N // 3 - 1)
