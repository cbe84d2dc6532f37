"""The segment index: sealed immutable segments + tail, tombstones, compaction, crash safety."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from facesearch.crypto import Sealer
from facesearch.index import segments
from facesearch.index.segments import SegmentIndex
from facesearch.index.synthetic import RealisticGallery
from facesearch.similarity import score_matrix

KEY = b"k" * 32


def _gallery(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = RealisticGallery(seed=seed)
    vecs = np.concatenate([b[1] for b in gen.gallery(n)])
    _, queries = gen.queries(40)
    return vecs, queries


def _index(path: Path, **kw: int) -> SegmentIndex:
    return SegmentIndex(path, Sealer(KEY), "m", 128, **kw)


def _ids(hits: list[list[segments.Hit]]) -> list[list[int]]:
    return [[h.face_id for h in row] for row in hits]


def _exact(vecs: np.ndarray, queries: np.ndarray, k: int, ids: np.ndarray) -> list[list[int]]:
    order = np.argsort(-score_matrix(queries, vecs), axis=1, kind="stable")[:, :k]
    return ids[order].tolist()


def test_matches_exact_search_and_scores_are_exact(tmp_path: Path) -> None:
    vecs, queries = _gallery(30_000)
    ids = np.arange(1, 30_001)
    index = _index(tmp_path, shortlist=1000, rerank=40)
    index.rebuild_collection(1, [(ids[:15_000], vecs[:15_000]), (ids[15_000:], vecs[15_000:])])
    index.add(1, np.arange(30_001, 30_101), _gallery(100, seed=3)[0])  # a tail
    all_vecs = np.vstack([vecs, _gallery(100, seed=3)[0]])
    all_ids = np.arange(1, 30_101)
    hits = index.search(queries, 10, [1])
    truth = _exact(all_vecs, queries, 10, all_ids)
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_ids(hits), truth, strict=True)])
    assert found >= 0.99
    top = hits[0][0]
    exact = score_matrix(queries[:1], all_vecs[top.face_id - 1 : top.face_id])[0, 0]
    assert abs(top.score - exact) < 1e-5


def test_many_segments_share_the_short_list_and_find_what_one_segment_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index as ingest leaves it (many segments of unequal size) gives each segment its
    share of the short list, searches them on several threads, and still finds what exact
    search finds; threads change nothing in the answer."""
    vecs, queries = _gallery(64_000)
    ids = np.arange(1, 64_001)
    sizes = [32_000, 16_000, 8_000, 5_000, 3_000]  # what compaction leaves, roughly
    bounds = np.cumsum([0, *sizes])
    many = _index(tmp_path / "many", shortlist=1000, rerank=40, max_segments=8, merge_factor=0)
    for start, stop in itertools.pairwise(bounds):
        many.add(1, ids[start:stop], vecs[start:stop])
        many.save()
    assert len(many.segment_counts(1)) == len(sizes)
    tasks = many._scan_plan(many._get(1).snapshot.views).tasks  # type: ignore[union-attr]
    lists = [n for *_, n in tasks]
    assert lists[0] == 500 and lists[1] == 256 and sum(lists) < 2 * 1000
    truth = _exact(vecs[: bounds[-1]], queries, 10, ids[: bounds[-1]])
    monkeypatch.setattr(segments, "PARALLEL_FROM", 0)
    threaded = many.search(queries, 10, [1])
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(_ids(threaded), truth, strict=True)])
    assert found >= 0.99
    many.search_threads = 1
    assert many.search(queries, 10, [1]) == threaded
    many.wait()  # stops the threads; a later search starts them again
    many.search_threads = 2
    assert many.search(queries, 10, [1]) == threaded


def test_a_big_segments_scan_cut_in_parts_gives_the_whole_scans_distances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vecs, queries = _gallery(40_000)
    index = _index(tmp_path, shortlist=500, rerank=40)
    index.rebuild_collection(1, [(np.arange(1, 40_001), vecs)])
    # a fresh process's view of it (the writer already cut it for its search plan)
    seg = _index(tmp_path)._get(1).snapshot.views[0].segment  # type: ignore[union-attr]
    whole_d, whole_rows = seg.pq.search(queries, 500)
    thirds = tuple(40_000 * i // 3 // seg.block_rows * seg.block_rows for i in (1, 2))
    parts = seg.cut(thirds)
    assert parts[0][0] == 0 and parts[-1][1] == 40_000
    assert all(parts[i][1] == parts[i + 1][0] for i in range(len(parts) - 1))
    assert all(a % 32 == 0 for a, _, _ in parts) and len(parts) == 3
    assert seg.pq.codes.size() == 0  # the whole index's codes are freed: one code per face
    again = seg.cut((8192, 24_576))  # cut elsewhere: the parts' codes are moved, same distances
    moved_d = np.concatenate([pq.search(queries, 500)[0] for _, _, pq in again], axis=1)
    moved_d.sort(axis=1)
    assert np.array_equal(moved_d[:, :500], whole_d)
    parts = seg.cut(thirds)
    found_d = np.concatenate([pq.search(queries, 500)[0] for _, _, pq in parts], axis=1)
    found_rows = np.concatenate([pq.search(queries, 500)[1] + a for a, _, pq in parts], axis=1)
    order = np.argsort(found_d, axis=1, kind="stable")[:, :500]
    assert np.array_equal(np.take_along_axis(found_d, order, axis=1), whole_d)
    same = np.mean(
        [
            len(set(a) & set(b)) / 500
            for a, b in zip(
                np.take_along_axis(found_rows, order, axis=1).tolist(),
                whole_rows.tolist(),
                strict=True,
            )
        ]
    )
    assert same > 0.97  # the rest are ties at the cut
    monkeypatch.setattr(segments, "PARALLEL_FROM", 0)
    truth = _exact(vecs, queries, 10, np.arange(1, 40_001))
    hits = _ids(index.search(queries, 10, [1]))
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, truth, strict=True)]) >= 0.99


def test_every_thread_scans_about_as_many_faces_whatever_the_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big segment and the small ones beside it: the plan cuts the big one where the two
    threads' equal shares end, and cuts it again when a save changes the layout; the answers
    are those of one thread, and of exact search."""
    monkeypatch.setattr(segments, "PART_MIN", 4096)
    monkeypatch.setattr(segments, "PARALLEL_FROM", 0)
    vecs, queries = _gallery(66_000)
    ids = np.arange(1, 66_001)
    index = _index(tmp_path, shortlist=1000, rerank=40, merge_factor=0, search_threads=2)
    for start, stop in [(0, 48_000), (48_000, 54_000), (54_000, 59_000)]:
        index.add(1, ids[start:stop], vecs[start:stop])
        index.save()

    def loads() -> list[int]:
        cs = index._get(1)
        assert cs is not None
        plan = index._plan_for(cs, cs.snapshot.views)
        return [sum(plan.tasks[i][2] - plan.tasks[i][1] for i in b) for b in plan.bundles]

    def check(n: int) -> None:
        assert len(loads()) == 2 and max(loads()) - min(loads()) <= 64, loads()
        threaded = index.search(queries, 10, [1])
        truth = _exact(vecs[:n], queries, 10, ids[:n])
        same = [len(set(a) & set(b)) / 10 for a, b in zip(_ids(threaded), truth, strict=True)]
        assert np.mean(same) >= 0.99
        index.search_threads = 1  # one thread keeps the parts as they are: the same answer
        assert index.search(queries, 10, [1]) == threaded
        index.search_threads = 2

    check(59_000)
    big = index._get(1).snapshot.views[0].segment  # type: ignore[union-attr]
    first_cut = [a for a, _, _ in big.cut(None)]
    index.add(1, ids[59_000:], vecs[59_000:])
    index.save()  # a new layout: the big segment is cut elsewhere
    check(66_000)
    assert [a for a, _, _ in big.cut(None)] != first_cut
    assert sum(stop - start for start, stop, _ in big.cut(None)) == 48_000
    moved = big.cuts()
    index.add(1, np.arange(70_001, 70_201), vecs[:200])  # a small save: within 1%, no new cut
    index.save()
    assert big.cuts() == moved
    assert index.search(vecs[:1], 1, [1])[0][0].face_id in {1, 70_001}


def test_add_is_idempotent_and_save_reopen_gives_the_same_results(tmp_path: Path) -> None:
    vecs, queries = _gallery(6000)
    index = _index(tmp_path)
    index.add(5, np.arange(1, 4001), vecs[:4000])
    index.save()
    index.add(5, np.arange(3001, 6001), vecs[3000:])  # 3001..4000 again: no duplicates
    assert index.state(5).count == 6000
    before = _ids(index.search(queries, 10, [5]))
    index.save()
    again = _index(tmp_path)
    assert again.state(5).count == 6000 and again.state(5).high_water == 6000
    assert _ids(again.search(queries, 10, [5])) == before


def test_saves_fold_into_few_segments_of_geometric_sizes(tmp_path: Path) -> None:
    """A collection filled by many saves (one ingest run each) stays in a few segments, one of
    them nearly all of it: the smaller ones fold into the next bigger one once together they
    hold 1/8 of it. Searches find what exact search finds at every step."""
    vecs, queries = _gallery(40_000)
    ids = np.arange(1, 40_001)
    index = _index(tmp_path, shortlist=1000, rerank=40)
    most = 0
    for start in range(0, 40_000, 2000):
        index.add(1, ids[start : start + 2000], vecs[start : start + 2000])
        index.save()
        sizes = sorted(index.segment_counts(1))
        assert sum(sizes) == start + 2000
        assert all(8 * sum(sizes[:j]) < sizes[j] for j in range(1, len(sizes))), sizes
        most = max(most, len(sizes))
    assert most <= 3
    assert max(index.segment_counts(1)) >= 0.85 * 40_000
    truth = _exact(vecs, queries, 10, ids)
    for searched in (index, _index(tmp_path)):
        hits = _ids(searched.search(queries, 10, [1]))
        found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hits, truth, strict=True)])
        assert found >= 0.99
    on_disk = sorted(p.name for p in (tmp_path / "m" / "c1").iterdir())
    assert len(on_disk) == len(index.segment_counts(1)) + 1  # merged-away files are gone


def test_compaction_builds_no_segment_over_the_cap(tmp_path: Path) -> None:
    vecs, _ = _gallery(6000)
    index = _index(tmp_path, segment_cap=2500)
    for start in range(0, 6000, 500):
        index.add(1, np.arange(start + 1, start + 501), vecs[start : start + 500])
        index.save()
    sizes = index.segment_counts(1)
    assert sum(sizes) == 6000 and max(sizes) <= 2500


def test_deletes_leave_every_segment_and_search_at_once(tmp_path: Path) -> None:
    vecs, _ = _gallery(9000)
    index = _index(tmp_path, max_segments=100, merge_factor=0)
    for start in range(0, 9000, 3000):  # three segments and a tail
        index.add(2, np.arange(start + 1, start + 3001), vecs[start : start + 3000])
        index.save()
    index.add(3, np.arange(20_001, 20_011), vecs[:10])
    probe = vecs[[10, 3010, 6010]]  # one face of each segment, searched for by itself
    assert [row[0].face_id for row in index.search(probe, 1, [2])] == [11, 3011, 6011]
    index.remove(2, [11, 3011, 6011])
    assert 11 not in {h.face_id for row in index.search(probe, 10, [2]) for h in row}
    assert {11, 3011, 6011}.isdisjoint(
        h.face_id for row in _index(tmp_path).search(probe, 10, [2]) for h in row
    )  # tombstones are durable at once
    index.drop_collection(3)
    assert index.search(vecs[:1], 5, [3]) == [[]]
    assert not (tmp_path / "m" / "c3").exists()
    assert _index(tmp_path).collections() == [2]


def test_a_search_during_compaction_returns_what_it_returned_before(tmp_path: Path) -> None:
    vecs, queries = _gallery(12_000)
    index = _index(tmp_path, max_segments=4, merge_factor=0)
    index.max_segments = 100
    for start in range(0, 12_000, 1000):
        index.add(4, np.arange(start + 1, start + 1001), vecs[start : start + 1000])
        index.save()
    index.remove(4, [5, 6, 7])
    assert len(index.segment_counts(4)) == 12
    before = _ids(index.search(queries, 10, [4]))
    index.max_segments = 4
    seen: list[list[list[int]]] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            seen.append(_ids(index.search(queries, 10, [4])))

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        assert index.compact(4)
    finally:
        stop.set()
        thread.join()
    assert len(index.segment_counts(4)) < 12
    assert seen and all(s == before for s in seen)
    assert _ids(index.search(queries, 10, [4])) == before
    assert _ids(_index(tmp_path).search(queries, 10, [4])) == before
    assert sorted(p.name for p in (tmp_path / "m" / "c4").iterdir()) == sorted(
        [f"seg-{v.segment.seq:08d}.seg" for v in index._get(4).snapshot.views] + ["manifest"]
    )


def test_the_index_directory_holds_no_plaintext_vector(tmp_path: Path) -> None:
    vecs, _ = _gallery(5000)
    index = _index(tmp_path)
    index.add(1, np.arange(1, 5001), vecs)
    index.save()
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for row in vecs[::250]:
        assert row.tobytes()[:64] not in blob
        assert row.astype(np.float16).tobytes()[:32] not in blob
    other = SegmentIndex(tmp_path, Sealer(os.urandom(32)), "m", 128)
    assert other.size() == 0  # another key opens nothing


_CHILD = textwrap.dedent(
    """
    import os, sys, numpy as np
    from pathlib import Path
    from facesearch.crypto import Sealer
    from facesearch.index.segments import SegmentIndex
    from facesearch.index import segments
    from facesearch.index.synthetic import RealisticGallery
    path, step = Path(sys.argv[1]), sys.argv[2]
    vecs = np.concatenate([b[1] for b in RealisticGallery(seed=0).gallery(12000)])
    index = SegmentIndex(path, Sealer(b"k" * 32), "m", 128, max_segments=100, merge_factor=0)
    if step == "ingest":
        for start in range(0, 12000, 1000):
            index.add(1, np.arange(start + 1, start + 1001), vecs[start : start + 1000])
            index.save()
            if start == 6000:
                os.kill(os.getpid(), 9)
    elif step == "compact":
        real = segments._write_atomic
        def crash(p, data):
            if p.name == "manifest":
                os.kill(os.getpid(), 9)
            real(p, data)
        index.max_segments = 2
        segments._write_atomic = crash
        index.compact(1)
    elif step == "rebuild":
        segments._write_atomic = lambda p, d: os.kill(os.getpid(), 9)
        index.rebuild_collection(1, [(np.arange(1, 12001), vecs)])
    """
)


def _run_killed(path: Path, step: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), step], env=env)
    assert proc.returncode == -9


def _resume(path: Path, vecs: np.ndarray) -> SegmentIndex:
    """What reconcile does: catch up from the high-water mark with what the database holds."""
    index = _index(path, max_segments=100, merge_factor=0)
    after = index.state(1).catch_up_from
    index.add(1, np.arange(after + 1, 12_001), vecs[after:])
    index.save()
    return index


def test_kill_9_during_ingest_compaction_and_rebuild_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    vecs, queries = _gallery(12_000)
    clean = _index(tmp_path / "clean")
    clean.add(1, np.arange(1, 12_001), vecs)
    want = _ids(clean.search(queries, 10, [1]))

    crashed = tmp_path / "crashed"
    _run_killed(crashed, "ingest")  # killed after 7 of 12 chunks were sealed
    assert _index(crashed).state(1).high_water == 7000
    index = _resume(crashed, vecs)
    assert index.state(1).count == 12_000
    assert _ids(index.search(queries, 10, [1])) == want

    _run_killed(crashed, "compact")  # merged segment written, manifest never switched
    index = _index(crashed, max_segments=100, merge_factor=0)
    assert len(index.segment_counts(1)) == 8 and index.state(1).count == 12_000  # 7 + resume
    assert _ids(index.search(queries, 10, [1])) == want
    assert len(list((crashed / "m" / "c1").iterdir())) == 9  # orphan removed

    _run_killed(crashed, "rebuild")
    index = _resume(crashed, vecs)
    assert index.state(1).count == 12_000
    assert _ids(index.search(queries, 10, [1])) == want


def test_a_rebuild_from_uneven_unordered_chunks_reopens_to_exactly_its_vectors(
    tmp_path: Path,
) -> None:
    """Chunks of any size (not multiples of the sealed block sizes, an empty one, ids out of
    order and repeated) are sealed whole: a fresh process reads back every vector exactly."""
    vecs, _ = _gallery(5_003)
    ids = np.arange(1, 5_004)
    shuffled = np.random.default_rng(1).permutation(5_003)
    chunks = [(ids[shuffled[a:b]], vecs[shuffled[a:b]]) for a, b in [(0, 1_001), (1_001, 1_001)]]
    chunks += [(ids[shuffled[1_001:]], vecs[shuffled[1_001:]]), (ids[:7], vecs[:7])]  # repeats
    index = _index(tmp_path)
    index.rebuild_collection(1, chunks)
    index.rebuild_collection(2, [])  # an emptied collection
    reopened = _index(tmp_path)
    reopened.warm()
    assert reopened.count(1) == 5_003 and reopened.count(2) == 0
    (view,) = reopened._get(1).snapshot.views  # type: ignore[union-attr]
    np.testing.assert_array_equal(view.segment.ids, ids)
    np.testing.assert_array_equal(view.segment.all_vectors(), vecs)
    top = reopened.search(vecs[[4_999]], 1, [1, 2])[0][0]
    assert top.face_id == 5_000 and top.score > 0.999


def test_index_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Segments, manifests and their directories are 0600/0700 like the blobs, even under a
    permissive umask (ciphertext all the same, but nothing for another account to copy)."""
    old = os.umask(0o022)
    try:
        index = _index(tmp_path / "index")
        vecs, _ = _gallery(300)
        index.rebuild_collection(1, [(np.arange(1, 301), vecs)])
        index.add(1, np.arange(301, 311), vecs[:10])
        index.save()
    finally:
        os.umask(old)
    paths = list((tmp_path / "index").rglob("*"))
    assert any(p.name.endswith(".seg") for p in paths) and any(p.name == "manifest" for p in paths)
    for p in paths:
        assert p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600), p
