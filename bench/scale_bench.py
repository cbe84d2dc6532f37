"""A deployment of N faces built through the product's own store, measured with the real CLI.

    python bench/scale_bench.py --faces 1000000 --work /tmp/scale   # ~15 min on 2 cores
    python bench/scale_bench.py --faces 10000000 --work /big/disk   # the 10M run

The big collection's faces are synthetic (`RealisticGallery`: identity sizes, spread and noise
of real SFace descriptors), stored as ingest stores them: one file row per photo, face rows with
embeddings sealed under the deployment's embedding key and bound to (file, face, model). Real
LFW photos are then ingested on top (`../shared/faces/lfw-devtrain`). Each row of the issue's
table is then measured from the outside, as a user would meet it:

- `index rebuild` (wall, peak RSS of the process), then the CLI `search` of a real photo in the
  big collection (wall, a fresh process: it opens the index as a user's shell would);
- ingest 50 real photos into the big collection and into an empty one (wall of the CLI);
- delete a 51-face collection and one face's tombstone (wall, in process);
- the service: the big collection is handed to an organisation with an investigator and an
  ingestor (API keys `search` and `ingest`), `facesearch serve` is started on a free loopback
  port and timed to its first /health answer and its first search after it; then idle searches
  (p50/p99/max), five CLI `search`es answered by the running service (ADR 0019), searches
  while an upload job of real photos runs in the service (p50/p99/max and the worst stall),
  and the service's resident memory (the process and its children) once warm and after the
  job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import delete, insert, select, update

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "faces" / "lfw-devtrain"
if not SHARED.exists():
    SHARED = Path("/work/shared/faces/lfw-devtrain")


def cli_rss(home: Path, key: Path, *args: str) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "facesearch", "--home", str(home), "--key-file", str(key), *args]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, int(usage.ru_maxrss * 1024)


def build(home: Path, key: Path, n: int, seed: int) -> dict[str, float]:
    """N synthetic faces into collection 'big' through the store's models and sealing."""
    from synthetic_rows import synthetic_rows

    from facesearch.config import Settings
    from facesearch.deployment import Deployment, init_deployment
    from facesearch.index.synthetic import RealisticGallery
    from facesearch.store.gallery import Collection, Face, SourceFile

    settings = Settings(home=home, key_file=key)
    init_deployment(settings)
    dep = Deployment.open(settings)
    model_id = dep.default_model_id
    t = time.perf_counter()
    with dep.db.session() as s:
        big = Collection(name="big", model_id=model_id, legal_basis="synthetic scale benchmark")
        s.add(big)
        s.commit()
        cid = big.id
    gen = RealisticGallery(seed=seed)
    sealer = dep.keys.embeddings
    next_id = 1
    for _labels, vectors in gen.gallery(n, block=100_000):
        files, faces = synthetic_rows(cid, model_id, sealer, next_id, vectors)
        with dep.db.engine.begin() as conn:
            conn.execute(insert(SourceFile), files)
            conn.execute(insert(Face), faces)
        next_id += vectors.shape[0]
        print(f"  stored {next_id - 1} faces ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    dep.db.dispose()
    return {"store_s": round(time.perf_counter() - t, 1)}


def photos(dest: Path, count: int, skip: int = 0) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(SHARED.glob("*/*.jpg"))[skip : skip + count]
    for f in files:
        shutil.copy(f, dest / f.name)
    return dest


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "n": len(v),
        "p50_ms": round(statistics.median(v) * 1000, 1),
        "p99_ms": round(v[min(len(v) - 1, round(0.99 * (len(v) - 1)))] * 1000, 1),
        "max_ms": round(v[-1] * 1000, 1),
    }


def grant_to_organisation(
    home: Path, key: Path, org_name: str = "Scale benchmark"
) -> tuple[str, str, str]:
    """An organisation that owns 'big', an investigator's `search` key and an ingestor's
    `ingest` key (accounts made in the store, as `admin` would after their enrolment)."""
    from facesearch.api.ids import codec_for
    from facesearch.config import Settings
    from facesearch.deployment import Deployment
    from facesearch.security import admin, api_keys
    from facesearch.security.actor import system_actor
    from facesearch.store.accounts import User
    from facesearch.store.gallery import Collection

    dep = Deployment.open(Settings(home=home, key_file=key))
    try:
        with dep.db.session() as s:
            org = admin.create_organisation(s, system_actor(), org_name)
            tag = org.id
            inv = User(
                org_id=org.id,
                email=f"inv{tag}@scale.test",
                password_hash="x",
                roles=["investigator"],
            )
            ing = User(
                org_id=org.id, email=f"ing{tag}@scale.test", password_hash="x", roles=["ingestor"]
            )
            s.add_all([inv, ing])
            s.flush()
            search_key = api_keys.create(s, inv, name="bench", scopes=["search"], days=1).key
            ingest_key = api_keys.create(s, ing, name="bench", scopes=["ingest"], days=1).key
            s.execute(update(Collection).where(Collection.name == "big").values(org_id=org.id))
            big = s.scalars(select(Collection.id).where(Collection.name == "big")).one()
            s.commit()
        return search_key, ingest_key, codec_for(dep.keys).encode("collection", big)
    finally:
        dep.close()


def service_rows(
    home: Path, key: Path, probe_path: Path, upload: list[Path], org_name: str = "Scale benchmark"
) -> dict[str, object]:
    """Start, first search, idle and during-ingest latency, and RAM of a real `serve`."""
    search_key, ingest_key, big = grant_to_organisation(home, key, org_name)
    probe = probe_path.read_bytes()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        # a benchmark's back-to-back searches from one account and address, as a pipeline's
        "FACESEARCH_SEARCHES_PER_MINUTE_PER_ACCOUNT": "100000",
        "FACESEARCH_SEARCHES_PER_MINUTE_PER_ADDRESS": "100000",
    }
    cmd = [sys.executable, "-m", "facesearch", "--home", str(home), "--key-file", str(key)]
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {}
    form = {
        "case_number": "SCALE-1",
        "purpose": "Scale benchmark of the service",
        "collections": big,
    }
    started = time.perf_counter()
    server = subprocess.Popen(
        [*cmd, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while True:
            if server.poll() is not None:
                assert server.stderr is not None
                raise SystemExit(f"serve exited: {server.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        out["serve_start_to_health_s"] = round(time.perf_counter() - started, 2)
        searcher = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {search_key}"}, timeout=60
        )
        ingestor = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {ingest_key}"}, timeout=60
        )

        def one_search() -> float:
            t = time.perf_counter()
            reply = searcher.post(
                "/api/v1/searches", files={"probe": ("probe.jpg", probe, "image/jpeg")}, data=form
            )
            took = time.perf_counter() - t
            if reply.status_code != 201 and reply.status_code != 200:
                raise SystemExit(f"search failed: {reply.status_code} {reply.text[:500]}")
            return took

        out["first_search_after_health_s"] = round(one_search(), 3)
        idle = [one_search() for _ in range(60)]
        out["search_idle"] = percentiles(idle)
        out["serve_rss_warm_gb"] = round(tree_rss(server.pid) / 1e9, 2)
        # the CLI, a fresh process each time, while the service runs: answered through its
        # private socket on the warm model and index (ADR 0019)
        walls = [
            cli_rss(home, key, "search", str(probe_path), "-c", "big", "--json")[0]
            for _ in range(5)
        ]
        out["cli_search_via_service_s"] = {
            "min": round(min(walls), 2),
            "median": round(statistics.median(walls), 2),
            "max": round(max(walls), 2),
        }

        reply = ingestor.post(
            f"/api/v1/collections/{big}/uploads",
            files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in upload],
        )
        if reply.status_code != 202:
            raise SystemExit(f"upload failed: {reply.status_code} {reply.text[:500]}")
        job = reply.json()["id"]
        during: list[float] = []
        t_job = time.perf_counter()
        status = "queued"
        while status in ("queued", "running"):
            during.append(one_search())
            state = ingestor.get(f"/api/v1/jobs/{job}").json()
            status = state["status"]
        out["ingest_job"] = {
            "status": status,
            "files": state["files_done"],
            "faces": state["faces"],
            "wall_s": round(time.perf_counter() - t_job, 1),
        }
        busy, calm = percentiles(during), percentiles(idle)
        out["search_during_ingest"] = busy
        out["p99_during_vs_idle"] = round(busy["p99_ms"] / calm["p99_ms"], 2)
        out["serve_rss_after_ingest_gb"] = round(tree_rss(server.pid) / 1e9, 2)
        searcher.close()
        ingestor.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/facesearch-scale"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--build-only",
        action="store_true",
        help="build the deployment (store, index rebuild, 20 seed photos in 'big') and stop: "
        "measure it afterwards, e.g. with bench/cli_search_split.py",
    )
    args = ap.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    home, key = args.work / "home", args.work / "keys" / "key.json"
    out: dict[str, object] = {"faces": args.faces}
    out.update(build(home, key, args.faces, args.seed))

    wall, rss = cli_rss(home, key, "index", "rebuild")
    out["index_rebuild_s"], out["index_rebuild_peak_rss_gb"] = round(wall, 1), round(rss / 1e9, 2)
    print(json.dumps(out), file=sys.stderr)

    seed_photos = photos(args.work / "seed", 20)
    wall, _ = cli_rss(home, key, "ingest", str(seed_photos), "-c", "big", "--workers", "2")
    probe = next(iter(sorted(seed_photos.iterdir())))
    if args.build_only:
        out["seed_ingest_s"] = round(wall, 1)
        print(json.dumps({**out, "home": str(home), "key_file": str(key), "probe": str(probe)}))
        return 0
    walls = []
    for _ in range(3):
        w, rss = cli_rss(home, key, "search", str(probe), "-c", "big", "--json")
        walls.append(w)
    out["cli_search_s"] = round(min(walls), 2)
    out["cli_search_peak_rss_gb"] = round(rss / 1e9, 2)
    print(json.dumps(out), file=sys.stderr)

    fifty_a = photos(args.work / "fifty-a", 50, skip=100)
    fifty_b = photos(args.work / "fifty-b", 50, skip=200)
    big_s, _ = cli_rss(home, key, "ingest", str(fifty_a), "-c", "big", "--workers", "2")
    empty_s, _ = cli_rss(
        home,
        key,
        "ingest",
        str(fifty_b),
        "-c",
        "small",
        "--workers",
        "2",
        "--legal-basis",
        "benchmark of the scale of the embedded default",
    )
    out["ingest_50_big_s"], out["ingest_50_empty_s"] = round(big_s, 1), round(empty_s, 1)
    out["ingest_ratio"] = round(big_s / empty_s, 2)
    print(json.dumps(out), file=sys.stderr)

    from facesearch.config import Settings
    from facesearch.deployment import Deployment
    from facesearch.gallery.collections import delete_operator_collection, ids_by_name
    from facesearch.store.gallery import Face

    dep = Deployment.open(Settings(home=home, key_file=key))
    try:
        index = dep.index_for(dep.default_model_id)
        with dep.db.session() as s:
            (big,) = ids_by_name(s, ["big"])
            t = time.perf_counter()
            delete_operator_collection(dep, s, "small")
            out["delete_collection_s"] = round(time.perf_counter() - t, 3)
            # the database first, as the product deletes (it is the source of truth): the index
            # then agrees with it, and the next search does not rebuild to repair it
            s.execute(delete(Face).where(Face.id.in_([123, 124])))
            s.commit()
        t = time.perf_counter()
        index.remove(big, [123])  # a fresh process (the CLI): a tombstone, no segment opened
        out["remove_one_face_cold_s"] = round(time.perf_counter() - t, 4)
        index.warm()
        t = time.perf_counter()
        index.remove(big, [124])  # the running service: segments in memory
        out["remove_one_face_warm_s"] = round(time.perf_counter() - t, 4)
        out["index_ram_bytes_per_face"] = round(index.nbytes() / max(1, index.size()), 1)
    finally:
        dep.close()
    print(json.dumps(out, indent=2), file=sys.stderr)

    upload = sorted(SHARED.glob("*/*.jpg"))[300:500]
    out.update(service_rows(home, key, probe, upload))
    faces = int(out["faces"])  # type: ignore[call-overload]
    out["serve_rss_bytes_per_face"] = round(float(out["serve_rss_warm_gb"]) * 1e9 / faces)  # type: ignore[arg-type]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
