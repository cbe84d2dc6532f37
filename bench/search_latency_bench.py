"""Warm search latency through the real service, and where the time goes.

    python bench/search_latency_bench.py [--model sface] [--searches 40]

Builds a data directory with the `small` photos (../shared/faces) in one collection of the given
model, an organisation with an investigator and a `search` API key, starts `facesearch serve` on
a free loopback port, warms it with three searches, then times POST /api/v1/searches of a
640x480 probe (one face) and prints p50/p90/max. The split comes from the same stages run in
this process on the same deployment: decode, detection, alignment + embedding, index search and
the database work of an accountable search (collection check, candidate rows, search, leads and
audit record, commit).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from facesearch.api.ids import codec_for
from facesearch.config import load_settings
from facesearch.deployment import Deployment, init_deployment
from facesearch.gallery.collections import create_collection
from facesearch.ingest.runner import FolderIngest
from facesearch.search import casework
from facesearch.search.engine import SearchEngine
from facesearch.security import admin, api_keys
from facesearch.security.actor import Principal, system_actor
from facesearch.store.accounts import User
from facesearch.vision.decode import decode_image
from facesearch.vision.pipeline import analyse, embed_faces

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
PURPOSE = "Benchmark of the warm search path on sample photos"


def probe_640x480() -> bytes:
    with Image.open(SHARED / "small" / "barack_obama" / "obama2.jpg") as img:
        rgb = img.convert("RGB")
        scale = max(640 / rgb.width, 480 / rgb.height)
        rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)))
        left, top = (rgb.width - 640) // 2, (rgb.height - 480) // 2
        out = io.BytesIO()
        rgb.crop((left, top, left + 640, top + 480)).save(out, "JPEG", quality=90)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[int(0.9 * (len(values) - 1))]
    return f"{statistics.median(values) * 1000:7.1f} {p90 * 1000:7.1f} {values[-1] * 1000:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sface")
    parser.add_argument("--searches", type=int, default=40)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fs-latency-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESEARCH_")}
    env["FACESEARCH_MODEL"] = args.model
    os.environ["FACESEARCH_MODEL"] = args.model
    settings = load_settings(root / "home", key_file=root / "master.key")
    init_deployment(settings)
    dep = Deployment.open(settings)
    with dep.db.session() as s:
        org = admin.create_organisation(s, system_actor(), "Bench Org")
        user = User(
            org_id=org.id, email="inv@bench.test", password_hash="x", roles=["investigator"]
        )
        s.add(user)
        s.flush()
        key = api_keys.create(s, user, name="bench", scopes=["search"], days=1).key
        who = Principal(
            user.id,
            org.id,
            frozenset({"investigator"}),
            frozenset({"search"}),
            None,
            None,
            "127.0.0.1",
        )
        s.commit()
        cid = create_collection(
            dep, s, who, name="small", legal_basis="Benchmark of samples", retention_days=1
        )["id"]
    FolderIngest(dep, cid, workers=1).run(SHARED / "small")
    probe = probe_640x480()

    # -- the stages, in process -----------------------------------------------------------
    engine = SearchEngine(dep)
    model = dep.model
    thorough = settings.probe_detection == "thorough"
    stages: dict[str, list[float]] = {
        k: [] for k in ("decode", "detect", "align+embed", "index", "db", "total (in process)")
    }
    for i in range(args.searches + 3):
        t0 = time.perf_counter()
        pixels = decode_image(probe, engine.limits).pixels
        t1 = time.perf_counter()
        found = model.detect(pixels, thorough=thorough)
        t2 = time.perf_counter()
        faces = (
            analyse(model, pixels, min_face_size=settings.min_face_size, thorough=thorough)
            if found
            else []
        )
        vectors = embed_faces(model, faces)
        t3 = time.perf_counter()
        dep.index_for(model.model_id).search(vectors, 10, [cid])
        t4 = time.perf_counter()
        with dep.db.session() as s:
            casework.run_search(
                dep,
                s,
                who,
                probe,
                case_number="BENCH-1",
                purpose=PURPOSE,
                collection_ids=[cid],
                top_k=10,
            )
        t5 = time.perf_counter()
        if i < 3:
            continue
        stages["decode"].append(t1 - t0)
        stages["detect"].append(t2 - t1)
        # analyse() detects again: count only its alignment and the embedding
        stages["align+embed"].append(max(0.0, (t3 - t2) - (t2 - t1)))
        stages["index"].append(t4 - t3)
        stages["total (in process)"].append(t5 - t4)
    opaque_cid = codec_for(dep.keys).encode("collection", cid)
    dep.close()
    # the db share of an accountable search = its total minus the engine's own stages
    stages["db"] = [
        max(0.0, tot - d - det - ae - idx)
        for tot, d, det, ae, idx in zip(
            stages["total (in process)"],
            stages["decode"],
            stages["detect"],
            stages["align+embed"],
            stages["index"],
            strict=True,
        )
    ]

    # -- the service ----------------------------------------------------------------------
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facesearch",
            "--home",
            str(settings.home),
            "--key-file",
            str(root / "master.key"),
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api: list[float] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            for i in range(args.searches + 3):
                started = time.perf_counter()
                reply = client.post(
                    "/api/v1/searches",
                    files={"probe": ("probe.jpg", probe, "image/jpeg")},
                    data={"case_number": "BENCH-2", "purpose": PURPOSE, "collections": opaque_cid},
                )
                took = time.perf_counter() - started
                reply.raise_for_status()
                if i >= 3:
                    api.append(took)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"model {args.model}; probe 640x480, one face; probe_detection "
        f"{settings.probe_detection}; {args.searches} warm searches; {os.cpu_count()} cores"
    )
    print("| stage | p50 ms | p90 ms | max ms |")
    print("|---|---|---|---|")
    for name in ("decode", "detect", "align+embed", "index", "db"):
        p50, p90, mx = ms(stages[name]).split()
        print(f"| {name} | {p50} | {p90} | {mx} |")
    p50, p90, mx = ms(api).split()
    print(f"| **API POST /searches (HTTP, warm)** | **{p50}** | {p90} | {mx} |")


if __name__ == "__main__":
    main()
