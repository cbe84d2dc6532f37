"""Removing a face from an index nobody has opened yet (the CLI, a fresh process) writes a
durable tombstone without opening the collection's segments, and no later reader sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch.crypto import Sealer
from facesearch.index.segments import SegmentIndex
from facesearch.index.synthetic import RealisticGallery

KEY = b"t" * 32


def _index(path: Path) -> SegmentIndex:
    return SegmentIndex(path, Sealer(KEY), "m", 128, tail_limit=200)


def _filled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    vecs = np.concatenate([b[1] for b in RealisticGallery(seed=3).gallery(700)])
    ids = np.arange(1, vecs.shape[0] + 1, dtype=np.int64)
    index = _index(path)
    for start in range(0, ids.shape[0], 150):
        index.add(7, ids[start : start + 150], vecs[start : start + 150])
    index.save()
    return ids, vecs


def test_cold_removal_opens_no_segment_and_holds_across_restarts(tmp_path: Path) -> None:
    ids, vecs = _filled(tmp_path)
    gone = [int(ids[10]), int(ids[400]), int(ids[-1])]

    cold = _index(tmp_path)
    before = cold.state(7).count
    cold.remove(7, gone)
    cs = cold._collections[7]
    assert not cs.loaded, "a tombstone must not open the segments"
    assert cold.state(7).count == before - 3

    for reader in (cold, _index(tmp_path)):  # the same process, then a new one
        hits = reader.search(vecs[[10, 400, ids.shape[0] - 1]], 5, [7])
        found = {h.face_id for row in hits for h in row}
        assert not found & set(gone)
        assert reader.state(7).count == before - 3

    # once a process has opened the segments, the tombstones live in them, not pending
    reopened = _index(tmp_path)
    reopened.warm()
    manifest = reopened._collections[7].read_manifest()
    assert manifest is not None and not manifest.get("pending_deleted")
    assert sum(len(s["deleted"]) for s in manifest["segments"]) == 3


def test_cold_removal_of_an_unknown_id_is_harmless(tmp_path: Path) -> None:
    ids, vecs = _filled(tmp_path)
    cold = _index(tmp_path)
    cold.remove(7, [10**9])
    hits = _index(tmp_path).search(vecs[:3], 1, [7])
    assert [row[0].face_id for row in hits] == [int(i) for i in ids[:3]]
    warm = _index(tmp_path)
    warm.warm()
    assert warm.state(7).count == ids.shape[0]
