"""FaissIndex on synthetic clustered face-like vectors: build time, latency, recall, memory.

    python bench/index_bench.py                      # 100k and 1M
    python bench/index_bench.py --sizes 100000 --queries 200 --nprobe 32

Vectors are 128-d unit vectors drawn around Gaussian cluster centres (one cluster ~ one
person; n/100 clusters, clamped to 1,000..10,000), which is harder for an IVF index than
uniform noise and closer to real galleries. Queries are fresh draws from the same clusters.
Recall@10 is measured against exact inner-product search (faiss IndexFlatIP).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from facesearch.crypto import Sealer
from facesearch.index.faiss_index import FaissIndex

DIM = 128
K = 10
COLLECTION = 1

F32 = npt.NDArray[np.float32]


def clustered(
    n: int, clusters: int, spread: float, rng: np.random.Generator, centres: F32 | None = None
) -> tuple[F32, F32]:
    """n unit vectors around `clusters` random unit centres; returns (vectors, centres)."""
    if centres is None:
        centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, DIM), dtype=np.float32)
    step = 200_000
    for start in range(0, n, step):
        stop = min(n, start + step)
        labels = rng.integers(0, centres.shape[0], size=stop - start)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32)
        block = centres[labels] + noise * (spread / np.sqrt(DIM))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:stop] = block
    return out, centres


def bench_size(n: int, args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(args.seed)
    clusters = int(min(10_000, max(1_000, n // 100)))
    t = time.perf_counter()
    vectors, centres = clustered(n, clusters, args.spread, rng)
    queries, _ = clustered(args.queries, clusters, args.spread, rng, centres)
    gen_s = time.perf_counter() - t
    ids = np.arange(1, n + 1, dtype=np.int64)

    with tempfile.TemporaryDirectory() as tmp:
        index = FaissIndex(
            Path(tmp),
            Sealer(os.urandom(32)),
            "bench",
            DIM,
            exact_limit=args.exact_limit,
            nprobe=args.nprobe,
            rerank_factor=args.rerank_factor,
        )
        t = time.perf_counter()
        index.add(COLLECTION, ids, vectors)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        index.save()
        save_s = time.perf_counter() - t

        index.search(queries[:5], K, [COLLECTION])  # warm up
        latencies = []
        found: list[list[int]] = []
        for q in queries:
            t = time.perf_counter()
            hits = index.search(q[None, :], K, [COLLECTION])[0]
            latencies.append(time.perf_counter() - t)
            found.append([h.face_id for h in hits])
        nbytes = index.nbytes()

    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    _, truth_rows = exact.search(queries, K)
    truth = ids[truth_rows]
    recall = float(
        np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
    )
    lat_ms = np.array(latencies) * 1000
    return {
        "n": n,
        "clusters": clusters,
        "gen_s": gen_s,
        "build_s": build_s,
        "save_s": save_s,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "recall10": recall,
        "bytes_per_face": nbytes / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000",
        help="comma-separated index sizes (default: 100000,1000000)",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--rerank-factor", type=int, default=10)
    parser.add_argument("--exact-limit", type=int, default=20_000)
    parser.add_argument(
        "--spread",
        type=float,
        default=0.6,
        help="within-cluster noise norm relative to the unit centre",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    print(
        f"FaissIndex bench: dim {DIM}, k={K}, {args.queries} single queries, "
        f"nprobe {args.nprobe}, rerank x{args.rerank_factor}, exact below "
        f"{args.exact_limit}, faiss {faiss.__version__}, {os.cpu_count()} cores, "
        f"{faiss.omp_get_max_threads()} faiss threads",
        flush=True,
    )
    columns = (
        "faces",
        "clusters",
        "build s",
        "save s",
        "p50 ms",
        "p99 ms",
        "recall@10",
        "bytes/face",
    )
    table: list[tuple[str, ...]] = []
    for n in sizes:
        r = bench_size(n, args)
        table.append(
            (
                f"{n:,}",
                f"{int(r['clusters']):,}",
                f"{r['build_s']:.1f}",
                f"{r['save_s']:.1f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['recall10']:.4f}",
                f"{r['bytes_per_face']:.0f}",
            )
        )
        print(f"done {n:,} (data generation {r['gen_s']:.1f} s)", file=sys.stderr, flush=True)
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
