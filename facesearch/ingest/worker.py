"""Work done in ingest worker processes: decode, detect, align, judge, embed (in a batch per
chunk of files), encode crops. Returns plain data; the parent process owns storage."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from facesearch.errors import ImageRejected
from facesearch.store.gallery import FileStatus
from facesearch.vision.decode import DecodeLimits, decode_image, encode_jpeg
from facesearch.vision.model import FaceModel
from facesearch.vision.pipeline import AnalysedFace, analyse, embed_faces
from facesearch.vision.registry import build_model


@dataclass
class FaceResult:
    box: list[int]
    landmarks: list[list[float]]
    confidence: float
    quality: dict[str, Any]
    low_quality: bool
    embedding: bytes
    crop_jpeg: bytes


@dataclass
class FileResult:
    key: int
    status: str  # ok | no_face | rejected
    reason: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    faces: list[FaceResult] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerConfig:
    model: str
    detector: str | None
    limits: DecodeLimits
    min_face_size: int
    batch_size: int
    model_options: dict[str, Any] = field(default_factory=dict)
    #: added to a worker process's niceness: work a user waits for (searches) comes first
    nice: int = 0
    #: analyse in a worker process even with one worker (the service: not in its own process)
    isolated: bool = False


M = TypeVar("M")

_MODEL: FaceModel | None = None
_CONFIG: WorkerConfig | None = None


def init_worker(config: WorkerConfig) -> None:
    """Runs once per worker process: the parent handles Ctrl-C, workers ignore it."""
    global _MODEL, _CONFIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.nice > 0 and hasattr(os, "nice"):
        os.nice(config.nice)
    _CONFIG = config
    _MODEL = build_model(config.model, detector=config.detector, **config.model_options)


def process_chunk(items: list[tuple[int, bytes]]) -> list[FileResult]:
    assert _MODEL is not None and _CONFIG is not None, "worker not initialised"
    return analyse_chunk(_MODEL, _CONFIG, items)


def analyse_chunk(
    model: FaceModel, config: WorkerConfig, items: list[tuple[int, bytes]]
) -> list[FileResult]:
    results: list[FileResult] = []
    pending: list[tuple[FileResult, list[AnalysedFace], float]] = []
    for key, data in items:
        try:
            decoded = decode_image(data, config.limits)
        except ImageRejected as exc:
            results.append(
                FileResult(key, FileStatus.REJECTED, reason=f"{exc.reason}: {exc.detail}")
            )
            continue
        side = max(1, config.min_face_size // 2)
        if min(decoded.original_width, decoded.original_height) < side:
            results.append(  # not even a face of half the smallest size searched fits in it
                FileResult(
                    key,
                    FileStatus.REJECTED,
                    reason=f"too_small: {decoded.original_width}x{decoded.original_height} "
                    f"pixels, under {side} px on a side (half the smallest face searched)",
                )
            )
            continue
        result = FileResult(  # provenance: the original dimensions, not the decoded ones
            key,
            FileStatus.OK,
            width=decoded.original_width,
            height=decoded.original_height,
            format=decoded.format,
        )
        try:
            faces = analyse(model, decoded.pixels, min_face_size=config.min_face_size)
        except Exception as exc:
            results.append(FileResult(key, FileStatus.REJECTED, reason=f"analysis_failed: {exc}"))
            continue
        if not faces:
            result.status = FileStatus.NO_FACE
            results.append(result)
            continue
        pending.append((result, faces, decoded.scale))
        results.append(result)
    all_faces = [f for _, faces, _ in pending for f in faces]
    vectors = embed_faces(model, all_faces, config.batch_size)
    row = 0
    for result, faces, scale in pending:
        for face in faces:
            det = face.detection
            result.faces.append(
                FaceResult(  # boxes and landmarks on the original image
                    box=[round(v * scale) for v in det.box.as_list()],
                    landmarks=[[x * scale, y * scale] for x, y in det.landmarks],
                    confidence=float(det.confidence),
                    quality=face.quality.as_dict(),
                    low_quality=face.quality.low,
                    embedding=np.ascontiguousarray(vectors[row], dtype=np.float32).tobytes(),
                    crop_jpeg=encode_jpeg(face.crop, quality=90),
                )
            )
            row += 1
    return results


def run_chunks(
    chunks: Iterator[tuple[M, list[tuple[int, bytes]]]],
    commit: Callable[[M, list[FileResult]], None],
    *,
    config: WorkerConfig,
    workers: int,
    model: FaceModel,
) -> None:
    """Analyse each chunk (in this process with `model` when `workers` <= 1 and the config is
    not `isolated`, else in spawned worker processes at `config.nice`, at most 3 chunks per
    worker in flight) and hand its results to `commit` in this process, which owns storage.
    Ctrl-C or an error cancels what is in flight."""
    if workers <= 1 and not config.isolated:
        for meta, items in chunks:
            commit(meta, analyse_chunk(model, config, items))
        return
    workers = max(1, workers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=init_worker, initargs=(config,)
    ) as pool:
        in_flight: dict[Future[list[FileResult]], M] = {}

        def drain() -> None:
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in done:
                commit(in_flight.pop(fut), fut.result())

        try:
            for meta, items in chunks:
                in_flight[pool.submit(process_chunk, items)] = meta
                while len(in_flight) >= workers * 3:
                    drain()
            while in_flight:
                drain()
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
