"""Where the wall time of one CLI `search` goes, stage by stage, in a fresh process.

    python bench/cli_search_split.py --home /tmp/scale1m/home \\
        --key-file /tmp/scale1m/keys/key.json \\
        --collection big PHOTO

It runs the steps `facesearch search` runs, in the same order, and prints the seconds of each
(imports of the CLI, settings, key ring and database open, the migration check, collection
lookup, image decode, model build and ONNX sessions, detection and embedding, the index open
and reconcile with the database, the search, the candidates' rows, the output, the close), and
the peak RSS. Compare the total with the wall of `facesearch search` itself (interpreter start
and exit are outside this process's clock: `python -X importtime -c pass` shows the first).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
STAGES: list[tuple[str, float]] = []
_last = T0


def stage(name: str) -> None:
    global _last
    now = time.perf_counter()
    STAGES.append((name, now - _last))
    _last = now


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--key-file", type=Path, required=True)
    ap.add_argument("--collection", "-c", action="append")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    stage("argparse")

    import facesearch.cli  # noqa: F401  (what `facesearch` imports before any command runs)

    stage("import facesearch.cli")
    from facesearch.cli.common import CliState
    from facesearch.deployment import Deployment
    from facesearch.gallery.collections import ids_by_name
    from facesearch.search.engine import SearchEngine

    stage("import the search command's modules")
    settings = CliState(home=args.home, key_file=args.key_file).settings()
    stage("settings")
    from facesearch.store import db as store_db

    migrate = store_db.migrate
    timings: dict[str, float] = {}

    def timed_migrate(engine: Any) -> None:
        t = time.perf_counter()
        migrate(engine)
        timings["migrate"] = time.perf_counter() - t

    import facesearch.deployment as deployment_module

    deployment_module.migrate = timed_migrate  # type: ignore[assignment]
    dep = Deployment.open(settings)
    stage("deployment open (keys, database, audit anchor; migration check inside)")
    STAGES.append(("  of which: migration check", timings.get("migrate", 0.0)))
    with dep.db.session() as s:
        ids = ids_by_name(s, args.collection or None)
    stage("collection ids")
    engine = SearchEngine(dep)
    from facesearch.vision.decode import decode_image

    decoded = decode_image(args.photo.read_bytes(), engine.limits)
    stage("read + decode the probe")
    model_id = dep.default_model_id
    model = dep.model_for(model_id)
    stage("build the model object")
    inner: Any = getattr(model, "_inner", model)
    detector = getattr(inner, "detector", None)
    if detector is not None and hasattr(detector, "session"):
        _ = detector.session
        stage("detector ONNX session")
    if hasattr(inner, "session"):
        _ = inner.session
        stage("embedder ONNX session")
    faces, vectors = engine.probe_faces(decoded.pixels, model)
    stage(f"detect + align + embed ({len(faces)} faces)")
    index = dep.new_index(model_id)
    stage("index object (manifests)")
    with dep.db.session() as s:
        from facesearch.store import faces as face_queries

        face_queries.counts_by_collection(s, model_id)
    stage("  counts_by_collection (the reconcile's query, alone)")
    dep._indexes[model_id] = index
    dep.sync_index(index)
    with dep.db.session() as s:
        dep._synced_to[model_id] = face_queries.max_face_id(s)
    stage("reconcile with the database")
    for cid in ids:
        index.state(cid)
        getattr(index, "_get", lambda _c: None)(cid)
    stage("open the segments (read, decrypt, deserialise)")
    hits = index.search(vectors, args.top, ids) if faces else []
    stage("index search")
    rows = engine._faces({h.face_id for per in hits for h in per})
    stage(f"candidate rows ({len(rows)})")
    result = engine.search(args.photo.read_bytes(), collection_ids=ids, top_k=args.top)
    stage("(the whole engine.search again, warm)")
    buf = io.StringIO()
    json.dump(result.as_dict(), buf, indent=2, default=str)
    stage("output (JSON)")
    dep.close()
    stage("close")
    total = time.perf_counter() - T0
    width = max(len(n) for n, _ in STAGES)
    for name, secs in STAGES:
        print(f"{name:<{width}}  {secs:7.3f} s", file=sys.stderr)
    print(f"{'total (in process)':<{width}}  {total:7.3f} s", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{'peak RSS':<{width}}  {rss / 1e9:7.2f} GB", file=sys.stderr)
    print(json.dumps({"stages": STAGES, "total_s": total, "peak_rss": rss}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
