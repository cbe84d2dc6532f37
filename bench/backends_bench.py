"""The embedded default (SQLite + the segment index) against PostgreSQL + Milvus Lite on the same
realistic synthetic gallery: ingest faces/s, warm search p50/p99, match recall, false leads.

    export FACESEARCH_TEST_PG=$(bash scripts/pg-test-cluster.sh start /tmp/pg-bench 55443)
    python bench/backends_bench.py --faces 100000
    python bench/backends_bench.py --faces 1000000 --queries 100

The gallery is `RealisticGallery` (people with 1-3 photos and a long tail, centres over the whole
embedding space, SFace-calibrated noise), as in bench/scale_bench.py and bench/segment_bench.py.
Ingest goes the way `FolderIngest` commits a chunk: one transaction of file and face rows
(embeddings sealed under the deployment's key, as ingest stores them), then `index.add` of the
chunk; `index.save()` at the end (the segment index seals its tail, Milvus flushes and builds
its ANN index). Search: `index.search(probe, 10, [collection])`, one probe at a time, after
`warm()` and a few warm-up probes. MATCH RECALL (segment_bench's definition): of the gallery
faces exact search puts in a probe's top 10 at or above the threshold (SFace 0.43), the share the
backend returns. FALSE LEADS: candidates at or above the threshold per probe of a person who is
not in the gallery (every one of them is a false lead; exact search has them too).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthetic_rows import synthetic_rows  # noqa: E402

from facesearch.config import Settings  # noqa: E402
from facesearch.deployment import Deployment, init_deployment  # noqa: E402
from facesearch.index.synthetic import RealisticGallery  # noqa: E402
from facesearch.similarity import scores_from_squared_distances  # noqa: E402
from facesearch.store.gallery import (  # noqa: E402
    Collection,
    Face,
    SourceFile,
)

K = 10
CHUNK = 10_000
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def _searched(
    name: str,
    index: Any,
    cid: int,
    vectors: F32,
    queries: F32,
    labels: I64,
    truth: tuple[F32, I64],
    threshold: float,
    ef: int,
) -> dict[str, Any]:
    for q in queries[:5]:
        index.search(q[None, :], K, [cid])
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q[None, :], K, [cid])[0]
        lat.append(time.perf_counter() - t)
        found.append(hits)
    t_scores, t_ids = truth
    matched = total_matches = 0
    false_leads = []
    for hits, lab, ids, scores in zip(found, labels, t_ids, t_scores, strict=True):
        if lab < 0:
            false_leads.append(sum(1 for h in hits if h.score >= threshold))
            continue
        got = {h.face_id for h in hits}
        above = ids[scores >= threshold].tolist()
        total_matches += len(above)
        matched += sum(1 for i in above if i in got)
    exact_leads = float(np.mean((t_scores[labels < 0] >= threshold).sum(axis=1)))
    lat_ms = np.asarray(lat) * 1000
    return {
        "backend": name + (f", ef {ef}" if ef else ""),
        "faces": int(vectors.shape[0]),
        "search_p50_ms": round(float(np.percentile(lat_ms, 50)), 1),
        "search_p99_ms": round(float(np.percentile(lat_ms, 99)), 1),
        "match_recall": round(matched / max(1, total_matches), 4),
        "matches": total_matches,
        "false_leads_per_absent_probe": round(float(np.mean(false_leads)), 2),
        "exact_false_leads": round(exact_leads, 2),
    }


def run_backend(
    name: str,
    settings: Settings,
    vectors: F32,
    queries: F32,
    labels: I64,
    truth: tuple[F32, I64],
    threshold: float,
    efs: list[int] | None = None,
) -> list[dict[str, Any]]:
    """One row per search setting (`efs`: HNSW search breadths tried on one Milvus ingest)."""
    init_deployment(settings)
    dep = Deployment.open(settings)
    try:
        model_id = dep.default_model_id
        with dep.db.session() as s:
            coll = Collection(name="big", model_id=model_id, legal_basis="backends benchmark")
            s.add(coll)
            s.commit()
            cid = coll.id
        index = dep.index_for(model_id)
        sealer = dep.keys.embeddings
        db_s = index_s = 0.0
        t0 = time.perf_counter()
        for start in range(0, vectors.shape[0], CHUNK):
            chunk = vectors[start : start + CHUNK]
            files, faces = synthetic_rows(cid, model_id, sealer, start + 1, chunk)
            t = time.perf_counter()
            with dep.db.engine.begin() as conn:
                conn.execute(insert(SourceFile), files)
                conn.execute(insert(Face), faces)
            db_s += time.perf_counter() - t
            t = time.perf_counter()
            index.add(cid, np.arange(start + 1, start + 1 + chunk.shape[0]), chunk)
            index_s += time.perf_counter() - t
        t = time.perf_counter()
        index.save()
        index_s += time.perf_counter() - t
        total = time.perf_counter() - t0
        print(f"  {name}: ingested in {total:.0f} s", file=sys.stderr)
        index.warm()
        rows = []
        for ef in efs or [0]:
            if ef:
                index.hnsw_ef = ef  # type: ignore[attr-defined]  # a search-time parameter
            rows.append(
                _searched(name, index, cid, vectors, queries, labels, truth, threshold, ef)
                | {
                    "ingest_faces_per_s": round(vectors.shape[0] / total),
                    "ingest_db_s": round(db_s, 1),
                    "ingest_index_s": round(index_s, 1),
                }
            )
        return rows
    finally:
        dep.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=0.43)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--milvus-index", default="HNSW", choices=["HNSW", "IVF_FLAT", "FLAT"])
    ap.add_argument("--milvus-shortlist", type=int, default=256)
    ap.add_argument(
        "--milvus-ef",
        type=int,
        nargs="*",
        default=None,
        help="HNSW search breadths to try, one row each (default: the setting's)",
    )
    ap.add_argument("--only", choices=["embedded", "milvus"])
    ap.add_argument(
        "--threads", type=int, default=1, help="faiss threads (both backends use faiss)"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    admin = os.environ.get("FACESEARCH_TEST_PG")
    if args.only != "embedded" and not admin:
        raise SystemExit("set FACESEARCH_TEST_PG (scripts/pg-test-cluster.sh start DIR PORT)")
    faiss.omp_set_num_threads(args.threads)
    gen = RealisticGallery(seed=args.seed)
    vectors = np.concatenate([b[1] for b in gen.gallery(args.faces)])
    labels, queries = gen.queries(args.queries)
    flat = faiss.IndexFlatL2(vectors.shape[1])
    flat.add(vectors)
    d, r = flat.search(queries, K)
    truth = (scores_from_squared_distances(d), r.astype(np.int64) + 1)
    del flat
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only != "milvus":
            s = Settings(home=root / "embedded", key_file=root / "keys" / "embedded.key")
            out.extend(
                run_backend(
                    "SQLite + segment index", s, vectors, queries, labels, truth, args.threshold
                )
            )
            print(json.dumps(out[-1]), file=sys.stderr)
        if args.only != "embedded":
            sys.path.insert(0, str(REPO))
            from tests import pg

            url = pg.create_database()
            try:
                s = Settings(
                    home=root / "scaled",
                    key_file=root / "keys" / "scaled.key",
                    database_url=url,
                    index_backend="milvus",
                    milvus_index=args.milvus_index,
                    milvus_shortlist=args.milvus_shortlist,
                )
                name = (
                    f"PostgreSQL + Milvus Lite ({args.milvus_index}, list {args.milvus_shortlist})"
                )
                for row in run_backend(
                    name, s, vectors, queries, labels, truth, args.threshold, args.milvus_ef
                ):
                    out.append(row)
                    print(json.dumps(row), file=sys.stderr)
            finally:
                pg.drop_database(url)
    n_absent = int((labels < 0).sum())
    print(
        f"\n{args.faces} faces, {args.queries} probes ({n_absent} of absent people), k = {K}, "
        f"threshold {args.threshold}\n"
    )
    print(
        "| backend | ingest faces/s (db s + index s) | search p50 ms | p99 ms | match recall "
        "| false leads / absent probe (exact) |"
    )
    print("|---|---|---|---|---|---|")
    for row in out:
        print(
            f"| {row['backend']} | {row['ingest_faces_per_s']} ({row['ingest_db_s']} + "
            f"{row['ingest_index_s']}) | {row['search_p50_ms']} | {row['search_p99_ms']} | "
            f"{row['match_recall']} ({row['matches']} matches) | "
            f"{row['false_leads_per_absent_probe']} ({row['exact_false_leads']}) |"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
