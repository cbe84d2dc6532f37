"""The service's ingest jobs analyse images in a low-priority worker process, never in the
process that answers searches, and find exactly what an in-process run finds."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.ingest.runner import worker_config
from facesearch.ingest.worker import init_worker
from facesearch.store.faces import open_embedding
from facesearch.store.gallery import Face
from tests.conftest import faces_dir, ingest, new_deployment


def _embeddings(dep: Deployment, collection: str) -> list[np.ndarray]:
    from facesearch.gallery.names import ids_by_name
    from facesearch.store.gallery import SourceFile

    with dep.db.session() as s:
        (cid,) = ids_by_name(s, [collection])
        rows = s.scalars(
            select(Face)
            .join(SourceFile, Face.file_id == SourceFile.id)
            .where(SourceFile.collection_id == cid)
            .order_by(SourceFile.content_hash, Face.face_index)
        ).all()
        return [open_embedding(dep.keys.embeddings, face) for face in rows]


def test_worker_processes_run_at_the_configured_niceness(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path, ingest_nice=7)
    try:
        config = worker_config(dep, dep.default_model_id, 1)
    finally:
        dep.close()
    assert config.nice == 7
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        1, mp_context=ctx, initializer=init_worker, initargs=(replace(config),)
    ) as pool:
        child = pool.submit(os.nice, 0).result()
    assert child == min(19, os.nice(0) + 7)


def test_an_isolated_ingest_analyses_out_of_process_and_finds_the_same_faces(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        (folder / name).write_bytes((faces_dir("small", "barack_obama") / name).read_bytes())
    dep = new_deployment(tmp_path)
    try:
        ingest(dep, "here", folder)  # the CLI's one-worker run: analysed in this process
        dep.isolate_ingest = True  # as `serve` sets it
        in_process = mock.Mock(side_effect=AssertionError("analysed in the serving process"))
        with mock.patch("facesearch.ingest.worker.analyse_chunk", in_process):
            summary = ingest(dep, "isolated", folder)
        assert summary.faces >= 2
        here, isolated = _embeddings(dep, "here"), _embeddings(dep, "isolated")
    finally:
        dep.close()
    assert len(here) == len(isolated) == summary.faces
    for a, b in zip(here, isolated, strict=True):
        assert float(np.dot(a, b)) > 0.9999
