"""One against two `facesearch worker` processes on one PostgreSQL database: the same folder of N
photos (LFW DevTrain from ../shared/faces, else the small set, else generated images), split
into parts (one job per part: a job runs on one worker at a time) and also as one job. Prints a
Markdown table of files/s and faces/s (wall clock from the first job queued to the last one
finished; each worker has loaded its model before), with the machine's load.

    export FACESEARCH_TEST_PG=$(bash scripts/pg-test-cluster.sh start /tmp/fs-pg)
    python bench/worker_bench.py            # 48 photos, about 2 minutes on 2 shared cores
    python bench/worker_bench.py --photos 200 --parts 4

Each worker runs one analysis process (workers = 1, onnx_threads = 1), so the table measures
what a second worker process adds, not a second core for one worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facesearch.config import load_settings  # noqa: E402
from facesearch.deployment import Deployment, init_deployment  # noqa: E402
from facesearch.gallery.collections import create_collection  # noqa: E402
from facesearch.ingest import jobs  # noqa: E402
from facesearch.security.actor import Principal  # noqa: E402
from facesearch.security.roles import Role, Scope  # noqa: E402
from facesearch.store.jobs import Job, JobStatus  # noqa: E402
from facesearch.vision.decode import encode_jpeg  # noqa: E402
from tests import pg  # noqa: E402
from tests.api.conftest import create_user  # noqa: E402

FACES = REPO.parent / "shared" / "faces"
SETTINGS: dict[str, Any] = {
    "job_runner": "procrastinate",
    "workers": 1,
    "onnx_threads": 1,
    "worker_heartbeat_seconds": 2.0,
    "worker_stalled_seconds": 20.0,
}


def photos(n: int) -> tuple[list[tuple[str, bytes]], str]:
    for name in ("lfw-devtrain", "small"):
        root = FACES / name
        if root.is_dir():
            files = sorted(root.rglob("*.jpg"))[:n]
            if files:
                return [(f"{i:05d}-{p.name}", p.read_bytes()) for i, p in enumerate(files)], name
    rng = np.random.default_rng(0)  # no photos here: generated images (mostly no face)
    made = []
    for i in range(n):
        img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        made.append((f"{i:05d}-generated.jpg", encode_jpeg(img, quality=85)))
    return made, "generated"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc): a measure the other load on a
    shared machine does not inflate as much as wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(dep: Deployment, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    env["PYTHONPATH"] = str(REPO)
    env["FACESEARCH_DATABASE_URL"] = url
    env.update({f"FACESEARCH_{k.upper()}": str(v) for k, v in SETTINGS.items()})
    cmd = [sys.executable, "-m", "facesearch", "--home", str(dep.settings.home)]
    cmd += ["--key-file", str(dep.key_file), "worker"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 180
    while not all("ready" in p.read_text() for p in logs):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit("a worker did not start:\n" + "\n".join(p.read_text() for p in logs))
        time.sleep(0.2)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(
    dep: Deployment, url: str, actor: Principal, folders: list[str], n_workers: int, tmp: Path
) -> dict[str, float]:
    logs = [tmp / f"worker-{n_workers}-{i}.log" for i in range(n_workers)]
    procs = [start_worker(dep, url, log) for log in logs]
    try:
        wait_ready(procs, logs)
        # warm-up: one photo per worker (the first inference of a fresh model is slower)
        finish(dep, actor, [f"warm{i}" for i in range(n_workers)], procs, logs)
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        started = time.perf_counter()
        rows = finish(dep, actor, folders, procs, logs)
        seconds = time.perf_counter() - started
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        files = sum(r.files_done for r in rows)
        faces = sum(r.faces for r in rows)
        return {"seconds": seconds, "files": files, "faces": faces, "cpu": cpu}
    finally:
        stop(procs)


def finish(
    dep: Deployment,
    actor: Principal,
    folders: list[str],
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> list[Job]:
    """Queue one job per folder into a new collection and wait until all have finished."""
    with dep.db.session() as s:
        cid = int(
            create_collection(
                dep,
                s,
                actor,
                name=f"bench-{len(procs)}-{len(folders)}-{time.monotonic_ns()}",
                legal_basis="benchmark of the ingest workers",
                retention_days=1,
            )["id"]
        )
    ids = []
    for folder in folders:
        with dep.db.session() as s:
            ids.append(int(jobs.start_folder(dep, s, actor, cid, folder)["id"]))
    while True:
        with dep.db.session() as s:
            rows = [s.get(Job, i) for i in ids]
            if all(r is not None and r.status in (JobStatus.DONE, JobStatus.FAILED) for r in rows):
                break
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a worker died:\n" + "\n".join(p.read_text() for p in logs))
        time.sleep(0.2)
    done = [r for r in rows if r is not None]
    failed = [r.error for r in done if r.status == JobStatus.FAILED]
    if failed:
        raise SystemExit(f"jobs failed: {failed}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--parts", type=int, default=2, help="jobs the folder is split into")
    args = parser.parse_args()
    url = pg.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="worker-bench-"))
    try:
        settings = load_settings(
            tmp / "home", key_file=tmp / "keys" / "k.key", database_url=url, **SETTINGS
        )
        init_deployment(settings)
        dep = Deployment.open(settings)
        user_id, org_id, *_ = create_user(dep, "Bench", ["org_admin"])
        assert org_id is not None
        actor = Principal(
            user_id, org_id, frozenset({Role.ORG_ADMIN}), frozenset({Scope.ADMIN}), None, None, None
        )
        images, source = photos(args.photos)
        drop = jobs.imports_root(dep, org_id)
        for part in range(args.parts):
            (drop / f"part{part}").mkdir(parents=True, exist_ok=True)
        (drop / "all").mkdir(parents=True, exist_ok=True)
        for i in range(2):
            (drop / f"warm{i}").mkdir(parents=True, exist_ok=True)
            (drop / f"warm{i}" / images[i][0]).write_bytes(images[i][1])
        for i, (name, data) in enumerate(images):
            (drop / f"part{i % args.parts}" / name).write_bytes(data)
            (drop / "all" / name).write_bytes(data)
        parts = [f"part{p}" for p in range(args.parts)]
        load_before = os.getloadavg()
        cases = [  # the first case again at the end: how much the machine drifted meanwhile
            (1, parts, f"{args.parts} jobs"),
            (2, parts, f"{args.parts} jobs"),
            (2, ["all"], "1 job"),
            (1, parts, f"{args.parts} jobs"),
        ]
        rows = []
        for n_workers, folders, label in cases:
            r = run(dep, url, actor, folders, n_workers, tmp)
            r["load"] = os.getloadavg()[0]
            rows.append((n_workers, label, r))
        load_after = os.getloadavg()
        print(f"\n{len(images)} photos ({source}), {os.cpu_count()} cores")
        print(
            "\n| workers | jobs | files | faces | seconds | files/s | faces/s "
            "| worker CPU s/file | load (1 min) |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n_workers, label, r in rows:
            print(
                f"| {n_workers} | {label} | {r['files']:.0f} | {r['faces']:.0f} | "
                f"{r['seconds']:.1f} | {r['files'] / r['seconds']:.2f} | "
                f"{r['faces'] / r['seconds']:.2f} | {r['cpu'] / max(r['files'], 1):.3f} | "
                f"{r['load']:.1f} |"
            )
        print(
            f"\nload average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
            f"after: {', '.join(f'{x:.2f}' for x in load_after)}"
        )
        dep.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        pg.drop_database(url)


if __name__ == "__main__":
    main()
