"""The segment index against exact search on a realistic gallery: match recall, recall@10,
single-query latency, RAM per face; with the alternatives it was chosen against.

    python bench/segment_bench.py --faces 1000000                  # the segment index only
    python bench/segment_bench.py --faces 200000 --alternatives    # + exact, IVF-SQ8, HNSW, ...

The gallery comes from `facesearch.index.synthetic.RealisticGallery` (identity sizes 1-3 with
a long tail, centres over the whole space, photo noise calibrated on SFace/LFW). MATCH RECALL:
of the gallery faces that exact search returns in its top 10 with a score at or above the
threshold (SFace: 0.43), the fraction the index returns too. Latency: one query at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from facesearch.crypto import Sealer
from facesearch.index.faiss_index import FaissShard
from facesearch.index.segments import SegmentIndex
from facesearch.index.synthetic import RealisticGallery
from facesearch.similarity import scores_from_squared_distances

K = 10
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def exact_top(vectors: F32, queries: F32, k: int) -> tuple[F32, I64]:
    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    d, rows = index.search(queries, k)
    return scores_from_squared_distances(d), rows.astype(np.int64) + 1  # face id = row + 1


def measure(
    name: str,
    search: Callable[[F32], I64],
    queries: F32,
    truth_ids: I64,
    truth_scores: F32,
    threshold: float,
    ram: float,
) -> dict[str, object]:
    lat = []
    found: list[I64] = []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q[None, :]))
        lat.append(time.perf_counter() - t)
    matched = total = 0
    r10 = []
    for got, ids, scores in zip(found, truth_ids, truth_scores, strict=True):
        got_set = set(got.tolist())
        above = ids[scores >= threshold]
        total += above.shape[0]
        matched += sum(1 for i in above.tolist() if i in got_set)
        r10.append(len(got_set & set(ids.tolist())) / len(ids))
    lat_ms = np.asarray(lat) * 1000
    return {
        "structure": name,
        "match_recall": round(matched / max(1, total), 4),
        "matches": total,
        "recall_at_10": round(float(np.mean(r10)), 4),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
        "ram_bytes_per_face": round(ram, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--threshold", type=float, default=0.43)
    ap.add_argument("--shortlist", type=int, nargs="*", default=[1000])
    ap.add_argument("--rerank", type=int, default=40)
    ap.add_argument("--alternatives", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--layout",
        choices=("rebuild", "ingest"),
        default="rebuild",
        help="rebuild: one segment (index rebuild); ingest: chunks of 10,000 added and saved as "
        "ingest commits them, leaving the segments compaction makes",
    )
    ap.add_argument(
        "--segment-size",
        type=int,
        default=None,
        help="with --layout rebuild: segments of at most this many faces (the layout folding "
        "settles in for a collection above the index's segment cap, 2,097,152 faces)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="search threads (default: the index's own)"
    )
    args = ap.parse_args()
    faiss.omp_set_num_threads(min(2, os.cpu_count() or 1))

    gen = RealisticGallery(seed=args.seed)
    t = time.perf_counter()
    blocks = list(gen.gallery(args.faces))
    vectors = np.concatenate([b[1] for b in blocks])
    del blocks
    _, queries = gen.queries(args.queries)
    ids = np.arange(1, args.faces + 1, dtype=np.int64)
    print(
        f"gallery of {args.faces} faces, {gen.sizes.shape[0]} identities "
        f"({time.perf_counter() - t:.1f} s)",
        file=sys.stderr,
    )
    t = time.perf_counter()
    truth_scores, truth_ids = exact_top(vectors, queries, K)
    print(
        f"exact truth {time.perf_counter() - t:.1f} s; queries with a match: "
        f"{int((truth_scores[:, 0] >= args.threshold).sum())}/{args.queries}",
        file=sys.stderr,
    )
    rows: list[dict[str, object]] = []

    with tempfile.TemporaryDirectory() as tmp:
        for shortlist in args.shortlist:
            index = SegmentIndex(
                Path(tmp),
                Sealer(os.urandom(32)),
                f"m{shortlist}",
                vectors.shape[1],
                shortlist=shortlist,
                rerank=args.rerank,
                search_threads=args.threads,
            )
            t = time.perf_counter()
            if args.layout == "rebuild":
                index.rebuild_collection(
                    1,
                    (
                        (ids[i : i + 100_000], vectors[i : i + 100_000])
                        for i in range(0, args.faces, 100_000)
                    ),
                    segment_size=args.segment_size or 0,
                )
            else:
                for i in range(0, args.faces, 10_000):
                    index.add(1, ids[i : i + 10_000], vectors[i : i + 10_000])
                    index.save()
            build = time.perf_counter() - t
            segments = index.segment_counts(1)

            def seg_search(q: F32, index: SegmentIndex = index) -> I64:
                return np.asarray([h.face_id for h in index.search(q, K, [1])[0]])

            row = measure(
                f"PQ64x4 fast scan, shortlist {shortlist}, SQ8 -> exact top {args.rerank}",
                seg_search,
                queries,
                truth_ids,
                truth_scores,
                args.threshold,
                index.nbytes() / args.faces,
            )
            row["build_s"] = round(build, 1)
            row["segments"] = len(segments)
            row["segment_sizes"] = sorted(segments, reverse=True)[:8]
            row["threads"] = index.search_threads
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    if args.alternatives:
        flat = faiss.IndexFlatL2(vectors.shape[1])
        flat.add(vectors)
        rows.append(
            measure(
                "exact float32 scan (faiss IndexFlatL2)",
                lambda q: flat.search(q, K)[1][0] + 1,
                queries,
                truth_ids,
                truth_scores,
                args.threshold,
                512,
            )
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
        del flat
        shard = FaissShard(vectors.shape[1], exact_limit=1000, nprobe=32, rerank_factor=10)
        shard.add(ids, vectors)
        rows.append(
            measure(
                "IVF-SQ8 nprobe 32, re-rank 100 (previous FaissShard)",
                lambda q: shard.search(q, K)[1][0],
                queries,
                truth_ids,
                truth_scores,
                args.threshold,
                shard.nbytes() / args.faces,
            )
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
        del shard
        for nprobe in (64, 256):
            nlist = 1024 if args.faces <= 300_000 else 4096
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(vectors.shape[1]), vectors.shape[1], nlist)
            ivf.train(vectors[:: max(1, args.faces // (50 * nlist))])
            ivf.add(vectors)
            ivf.nprobe = nprobe
            rows.append(
                measure(
                    f"IVF-Flat nlist {nlist} nprobe {nprobe}",
                    lambda q, ivf=ivf: ivf.search(q, K)[1][0] + 1,
                    queries,
                    truth_ids,
                    truth_scores,
                    args.threshold,
                    520,
                )
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
            del ivf
        hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 16)
        hnsw.hnsw.efConstruction = 80
        t = time.perf_counter()
        hnsw.add(vectors)
        print(f"hnsw build {time.perf_counter() - t:.0f} s", file=sys.stderr)
        for ef in (64, 256):
            hnsw.hnsw.efSearch = ef
            rows.append(
                measure(
                    f"HNSW M16 efSearch {ef}",
                    lambda q: hnsw.search(q, K)[1][0] + 1,
                    queries,
                    truth_ids,
                    truth_scores,
                    args.threshold,
                    512 + 16 * 8 * 1.1,
                )
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
        del hnsw

    print("| structure | match recall | recall@10 | p50 ms | p99 ms | RAM B/face |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['structure']} | {r['match_recall']} ({r['matches']} matches) | "
            f"{r['recall_at_10']} | {r['p50_ms']} | {r['p99_ms']} | {r['ram_bytes_per_face']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"faces": args.faces, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
