"""The `VectorIndex` contract, met alike by the embedded segment index and by Milvus (Lite here):
what ingest, search, deletion and `index.sync.reconcile` rely on, whichever backend is chosen."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from facesearch.crypto import Sealer
from facesearch.index.base import Hit, VectorIndex
from facesearch.index.milvus_index import MilvusIndex, connect
from facesearch.index.segments import SegmentIndex
from facesearch.index.sync import reconcile
from facesearch.index.synthetic import RealisticGallery
from facesearch.similarity import score_matrix

KEY = b"k" * 32
DIM = 128
Factory = Callable[[], VectorIndex]
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Milvus Lite for the module (each start costs seconds); tests keep apart by prefix."""
    client = connect(str(tmp_path_factory.mktemp("milvus") / "milvus.db"))
    yield client
    client.close()


@pytest.fixture(params=["segments", "milvus"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A function that opens the index as a new process would (same files / same Milvus)."""
    if request.param == "segments":
        return lambda: SegmentIndex(tmp_path, Sealer(KEY), "m", DIM)
    client = request.getfixturevalue("milvus")
    prefix = f"t{next(_prefixes)}"
    return lambda: MilvusIndex(client, "m", DIM, prefix=prefix, index_type="FLAT")


def _gallery(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = RealisticGallery(seed=seed)
    vecs = np.concatenate([b[1] for b in gen.gallery(n)])
    _, queries = gen.queries(12)
    return vecs, queries


def _ids(hits: list[list[Hit]]) -> list[list[int]]:
    return [[h.face_id for h in row] for row in hits]


def _same(a: list[list[Hit]], b: list[list[Hit]]) -> bool:
    """The same faces in the same order, scores equal to 1e-6."""
    return _ids(a) == _ids(b) and all(
        abs(x.score - y.score) < 1e-6 for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb)
    )


def _exact(vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    order = np.argsort(-score_matrix(queries, vecs), axis=1, kind="stable")[:, :k]
    return ids[order].tolist()


def test_search_is_exact_and_collections_are_kept_apart(opener: Factory) -> None:
    vecs, queries = _gallery(3000)
    index = opener()
    index.add(1, np.arange(1, 2001), vecs[:2000])
    index.add(2, np.arange(2001, 3001), vecs[2000:])
    index.save()
    hits = index.search(queries, 10, [1])
    assert _ids(hits) == _exact(vecs[:2000], np.arange(1, 2001), queries, 10)
    assert all(h.collection_id == 1 for row in hits for h in row)
    truth = score_matrix(queries, vecs)
    for qi, row in enumerate(hits):
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
        for h in row:
            assert abs(h.score - truth[qi, h.face_id - 1]) < 1e-6  # exact, not approximate
    both = index.search(queries, 10, [1, 2])
    assert _ids(both) == _exact(vecs, np.arange(1, 3001), queries, 10)
    assert {h.collection_id for row in both for h in row} == {1, 2}
    assert index.search(queries[:2], 5, [99]) == [[], []]
    assert index.search(queries[:1], 0, [1]) == [[]]


def test_add_is_idempotent_and_a_reopened_index_gives_the_same_results(opener: Factory) -> None:
    vecs, queries = _gallery(3000)
    index = opener()
    index.add(5, np.arange(1, 2001), vecs[:2000])
    index.save()
    index.add(5, np.arange(1501, 3001), vecs[1500:])  # 1501..2000 again: no duplicates
    assert index.state(5).count == 3000
    assert index.state(5).max_id == 3000
    before = index.search(queries, 10, [5])
    index.save()
    again = opener()
    assert again.collections() == [5]
    assert again.state(5).count == 3000 and again.size() == 3000
    assert _same(again.search(queries, 10, [5]), before)
    with pytest.raises(ValueError):
        again.add(5, np.arange(1, 3), np.zeros((2, DIM + 1), np.float32))


def test_remove_and_drop_take_faces_out_of_every_search_at_once(opener: Factory) -> None:
    vecs, _ = _gallery(2000)
    index = opener()
    index.add(2, np.arange(1, 1501), vecs[:1500])
    index.add(3, np.arange(1501, 2001), vecs[1500:])
    index.save()
    probe = vecs[[10, 700]]
    assert [row[0].face_id for row in index.search(probe, 1, [2])] == [11, 701]
    index.remove(2, [11, 701])
    gone = {11, 701}
    assert gone.isdisjoint(h.face_id for row in index.search(probe, 10, [2]) for h in row)
    assert gone.isdisjoint(h.face_id for row in opener().search(probe, 10, [2]) for h in row)
    assert index.state(2).count == 1498
    index.drop_collection(3)
    assert index.search(vecs[1600:1601], 5, [3]) == [[]]
    assert opener().collections() == [2]
    assert opener().state(3).count == 0


def test_rebuild_replaces_a_collection_from_streamed_chunks(opener: Factory) -> None:
    vecs, queries = _gallery(3000)
    index = opener()
    index.add(4, np.arange(1, 3001), vecs)
    index.add(6, np.arange(5001, 5101), vecs[:100])
    index.save()
    keep = np.arange(1, 3001)[::2]  # the database lost every other face
    index.rebuild_collection(
        4, ((keep[i : i + 500], vecs[keep[i : i + 500] - 1]) for i in range(0, 1500, 500))
    )
    assert index.state(4).count == 1500
    assert _ids(index.search(queries, 10, [4])) == _exact(vecs[keep - 1], keep, queries, 10)
    assert index.state(6).count == 100  # the other collection is untouched
    index.replace_collection(4, keep[:10], vecs[keep[:10] - 1])
    assert opener().state(4).count == 10


def test_reconcile_catches_up_rebuilds_and_drops(opener: Factory) -> None:
    """What the deployment does on first use: the database is the truth."""
    vecs, queries = _gallery(3000)
    db = {1: np.arange(1, 2001), 2: np.arange(2001, 3001)}
    index = opener()
    index.add(1, np.arange(1, 1201), vecs[:1200])  # a crash after 1200 of 2000 faces
    index.add(2, np.arange(2001, 3001), vecs[2000:])
    index.add(3, np.arange(4001, 4011), vecs[:10])  # a collection deleted since
    index.save()
    db[2] = db[2][db[2] != 2500]  # a face deleted while the index was not told

    def fetch(cid: int, after: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = db[cid][db[cid] > after]
        for i in range(0, ids.shape[0], 300):
            yield ids[i : i + 300], vecs[ids[i : i + 300] - 1]

    in_db = {cid: (int(ids.shape[0]), int(ids.max())) for cid, ids in db.items()}
    reopened = opener()
    report = reconcile(reopened, in_db, fetch, lambda cid, after: int((db[cid] > after).sum()))
    assert report.as_dict() == {"caught_up": 800, "rebuilt": 1, "dropped": 1}
    assert reopened.collections() == [1, 2]
    assert reopened.state(1).count == 2000 and reopened.state(2).count == 999
    all_ids = np.concatenate([db[1], db[2]])
    assert _ids(reopened.search(queries, 10, [1, 2])) == _exact(
        vecs[all_ids - 1], all_ids, queries, 10
    )
    again = reconcile(opener(), in_db, fetch, lambda cid, after: int((db[cid] > after).sum()))
    assert again.as_dict() == {"caught_up": 0, "rebuilt": 0, "dropped": 0}
