"""What only the Milvus backend has to prove: the rebuild switch is atomic (also under kill -9),
an ANN short list still ends in exact scores, and Milvus holds the embeddings in plaintext (what
the doctor tells the operator), unlike the sealed segment files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facesearch.errors import ConfigError
from facesearch.index.milvus_index import MilvusIndex, connect
from facesearch.index.synthetic import RealisticGallery
from facesearch.similarity import score_matrix

DIM = 128


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    path = tmp_path_factory.mktemp("milvus") / "milvus.db"
    client = connect(str(path))
    yield client, path
    client.close()


def _gallery(n: int) -> tuple[np.ndarray, np.ndarray]:
    gen = RealisticGallery(seed=0)
    vecs = np.concatenate([b[1] for b in gen.gallery(n)])
    return vecs, gen.queries(10)[1]


def _ids(hits: list[list[Any]]) -> list[list[int]]:
    return [[h.face_id for h in row] for row in hits]


def test_a_search_during_a_rebuild_sees_the_old_contents_until_the_switch(
    lite: tuple[Any, Path],
) -> None:
    vecs, queries = _gallery(2000)
    index = MilvusIndex(lite[0], "m", DIM, prefix="rebuild", index_type="FLAT")
    index.add(1, np.arange(1, 2001), vecs)
    before = _ids(index.search(queries, 10, [1]))
    seen: list[list[list[int]]] = []

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, 1000, 250):  # the rebuilt collection keeps faces 1..1000
            seen.append(_ids(index.search(queries, 10, [1])))
            yield np.arange(start + 1, start + 251), vecs[start : start + 250]
        seen.append(_ids(index.search(queries, 10, [1])))

    index.rebuild_collection(1, chunks())
    assert len(seen) == 5 and all(s == before for s in seen)
    after = _ids(index.search(queries, 10, [1]))
    assert all(fid <= 1000 for row in after for fid in row) and after != before
    assert index.state(1).count == 1000


def test_failed_rebuild_leaves_the_old_contents_and_the_next_one_clears_its_leftovers(
    lite: tuple[Any, Path],
) -> None:
    vecs, queries = _gallery(2000)
    index = MilvusIndex(lite[0], "m", DIM, prefix="failed", index_type="FLAT")
    index.add(1, np.arange(1, 2001), vecs)
    before = index.search(queries, 10, [1])

    def broken() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield np.arange(1, 501), vecs[:500]
        raise OSError("the database went away")

    with pytest.raises(OSError):
        index.rebuild_collection(1, broken())
    assert index.search(queries, 10, [1]) == before and index.state(1).count == 2000
    index.rebuild_collection(1, [(np.arange(1, 301), vecs[:300])])
    assert index.state(1).count == 300
    assert index._count(0, 1) + index._count(1, 1) == 300  # nothing left on the other side


_CHILD = textwrap.dedent(
    """
    import os, sys, numpy as np
    from facesearch.index.milvus_index import MilvusIndex, connect
    from facesearch.index.synthetic import RealisticGallery
    vecs = np.concatenate([b[1] for b in RealisticGallery(seed=0).gallery(2000)])
    index = MilvusIndex(connect(sys.argv[1]), "m", 128, index_type="FLAT")
    index.add(1, np.arange(1, 2001), vecs)
    index.save()
    def chunks():
        yield np.arange(1, 1001), vecs[:1000]
        os.kill(os.getpid(), 9)
    index.rebuild_collection(1, chunks())
    """
)


def test_kill_9_during_a_rebuild_leaves_the_old_side_serving(tmp_path: Path) -> None:
    vecs, queries = _gallery(2000)
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env)
    assert proc.returncode == -9
    client = connect(str(path))  # Milvus Lite reopens after its process was killed
    try:
        index = MilvusIndex(client, "m", DIM, index_type="FLAT")
        assert index.state(1).count == 2000  # the half-written side is not served
        truth = np.argsort(-score_matrix(queries, vecs), axis=1, kind="stable")[:, :10] + 1
        assert _ids(index.search(queries, 10, [1])) == truth.tolist()
        index.rebuild_collection(1, [(np.arange(1, 2001), vecs)])  # what reconcile does next
        assert index._count(0, 1) + index._count(1, 1) == 2000
    finally:
        client.close()


def test_an_hnsw_short_list_ends_in_exact_scores(lite: tuple[Any, Path]) -> None:
    vecs, queries = _gallery(3000)
    index = MilvusIndex(lite[0], "m", DIM, prefix="hnsw", index_type="HNSW", shortlist=100)
    index.add(1, np.arange(1, 3001), vecs)
    index.save()
    truth = score_matrix(queries, vecs)
    hits = index.search(queries, 10, [1])
    exact = np.argsort(-truth, axis=1, kind="stable")[:, :10] + 1
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_ids(hits), exact, strict=True)])
    assert found >= 0.95
    for qi, row in enumerate(hits):
        assert len(row) == 10
        assert all(abs(h.score - truth[qi, h.face_id - 1]) < 1e-6 for h in row)


def test_milvus_holds_embeddings_in_plaintext_unlike_the_segment_files(
    lite: tuple[Any, Path],
) -> None:
    """The doctor's `milvus.plaintext_embeddings`: the raw float32 bytes of the descriptors lie
    in Milvus's files (tests/index/test_segments.py shows the segment files hold none)."""
    vecs, _ = _gallery(500)
    client, path = lite
    index = MilvusIndex(client, "m", DIM, prefix="plain", index_type="FLAT")
    index.add(1, np.arange(1, 501), vecs)
    index.save()
    blob = b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())
    assert all(row.tobytes()[:64] in blob for row in vecs[::50])
    assert path.stat().st_mode & 0o077 == 0  # so facesearch lets only its own user in


def test_an_existing_collection_of_another_dimension_is_refused(lite: tuple[Any, Path]) -> None:
    MilvusIndex(lite[0], "m", DIM, prefix="dims", index_type="FLAT")
    with pytest.raises(ConfigError, match="128-d"):
        MilvusIndex(lite[0], "m", 512, prefix="dims", index_type="FLAT")
    with pytest.raises(ConfigError):
        MilvusIndex(lite[0], "m", DIM, prefix="bad-prefix")


def test_the_count_a_search_reports_is_cached_and_refreshed_by_writes(
    lite: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Milvus counts by scanning (seconds for tens of thousands of faces in Milvus Lite): a
    search's gallery size comes from a short-lived cache that this process's writes refresh."""
    vecs, _ = _gallery(300)
    index = MilvusIndex(lite[0], "m", DIM, prefix="counts", index_type="FLAT")
    index.add(4, np.arange(1, 201), vecs[:200])
    assert index.count(4) == 200
    queries: list[str] = []
    real = index.client.query

    def counting(*args: Any, **kwargs: Any) -> Any:
        queries.append(str(kwargs.get("output_fields")))
        return real(*args, **kwargs)

    monkeypatch.setattr(index.client, "query", counting)
    assert [index.count(4) for _ in range(5)] == [200] * 5
    assert not [q for q in queries if "count(*)" in q]  # answered from the cache
    index.add(4, np.arange(201, 301), vecs[200:])
    assert index.count(4) == 300  # this process wrote: counted again
    index.remove(4, [1, 2, 3])
    assert index.count(4) == 297
    assert index.state(4).count == 297  # the reconcile path always counts
    index.drop_collection(4)
    assert index.count(4) == 0
