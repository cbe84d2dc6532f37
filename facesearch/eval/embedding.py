"""Embed a list of image files in parallel: one face per image, for evaluation protocols.

Each image gives exactly one embedding: its chosen detected face (see `choose_face`); when the
detector finds nothing, a second, more sensitive detector (dlib's CNN by default) gets a try,
and when that finds nothing too, the face assumed in a centred box (the LFW protocol expects every
image to be scored; such images are flagged in `no_face`, the second detector's finds in
`fallback`). Work is spread over a process pool (forkserver where
available, else spawn); each worker builds the face model once, in its initializer.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facesearch.errors import FacesearchError, ImageRejected
from facesearch.vision.decode import decode_image
from facesearch.vision.model import Detection, Embeddings, FaceModel
from facesearch.vision.registry import build_model

#: Images per task sent to a worker (and per embed call inside it).
CHUNK_SIZE = 8
#: Which detected face an image contributes (see `choose_face`).
FACE_CHOICES = ("largest", "central")


class EvalError(FacesearchError):
    """An evaluation cannot run on its inputs (bad pairs file, missing or unreadable images)."""


@dataclass(frozen=True)
class EmbeddedImages:
    paths: tuple[Path, ...]
    embeddings: Embeddings  # len(paths) x D descriptors (see facesearch.similarity)
    no_face: npt.NDArray[np.bool_]  # True where the centred box was used
    fallback: npt.NDArray[np.bool_]  # True where only the fallback detector found the face
    model_id: str
    runtime: str
    seconds: float

    def rows(self) -> dict[Path, int]:
        return {path: i for i, path in enumerate(self.paths)}

    @property
    def no_face_count(self) -> int:
        return int(self.no_face.sum())

    @property
    def fallback_count(self) -> int:
        return int(self.fallback.sum())

    @property
    def images_per_second(self) -> float:
        return len(self.paths) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Result:
    vector: npt.NDArray[np.float32] | None
    no_face: bool
    error: str | None
    fallback: bool = False


# --------------------------------------------------------------------------- worker side

_worker_model: FaceModel | None = None


_worker_face: str = "largest"
_worker_fallback: FaceModel | None = None
#: Detector names accepted as a fallback ("none" disables the second pass).
FALLBACK_CHOICES = ("cnn", "hog", "centerface", "none")


def _fallback_model(model_name: str, fallback: str, threads: int = 0) -> FaceModel | None:
    return None if fallback == "none" else build_model(model_name, fallback, threads=threads)


def _init_worker(model_name: str, detector: str, face: str, fallback: str = "none") -> None:
    global _worker_model, _worker_face, _worker_fallback
    # One process per core: keep any BLAS / OpenMP inside the worker single-threaded.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # threads=1: runtimes with their own thread pools (onnxruntime) must not oversubscribe.
    _worker_model = build_model(model_name, detector, threads=1)
    _worker_face = face
    _worker_fallback = _fallback_model(model_name, fallback, threads=1)


def _embed_chunk(paths: Sequence[str]) -> list[_Result]:
    assert _worker_model is not None, "worker initializer did not run"
    return embed_files_with(_worker_model, paths, face=_worker_face, fallback=_worker_fallback)


def choose_face(detections: Sequence[Detection], height: int, width: int, face: str) -> Detection:
    """The face an evaluation scores: the largest one, or the one nearest the image centre
    (datasets such as LFW are cropped around the labelled person; bystanders can be larger)."""
    if face == "largest":
        return max(detections, key=lambda d: d.box.width * d.box.height)
    if face == "central":

        def offset(d: Detection) -> float:
            dx = (d.box.left + d.box.right) / 2 - width / 2
            dy = (d.box.top + d.box.bottom) / 2 - height / 2
            return dx * dx + dy * dy

        return min(detections, key=offset)
    raise ValueError(f"unknown face choice {face!r}; expected one of {', '.join(FACE_CHOICES)}")


def embed_files_with(
    model: FaceModel,
    paths: Sequence[str],
    *,
    face: str = "largest",
    fallback: FaceModel | None = None,
) -> list[_Result]:
    """Embed one face per file (see `choose_face`; the fallback detector's face, else the centred
    box, when none is detected) with `model`, in one embed call. The fallback model must align
    faces the way `model` does (same landmark layout): it only lends its detector."""
    chips = []
    results: list[_Result] = []
    slots: list[int] = []
    for path in paths:
        try:
            pixels = decode_image(Path(path).read_bytes()).pixels
        except ImageRejected as exc:
            results.append(_Result(None, False, str(exc)))
            continue
        except OSError as exc:
            results.append(_Result(None, False, f"cannot read: {exc.strerror or exc}"))
            continue
        detections = model.detect(pixels)
        used_fallback = False
        if not detections and fallback is not None:
            detections = fallback.detect(pixels)
            used_fallback = bool(detections)
        no_face = not detections
        detection = (
            choose_face(detections, pixels.shape[0], pixels.shape[1], face)
            if detections
            else model.centred_detection(pixels)
        )
        chips.append(model.align(pixels, detection))
        slots.append(len(results))
        results.append(_Result(None, no_face, None, used_fallback))
    if chips:
        vectors = model.embed(chips)
        for slot, vector in zip(slots, vectors, strict=True):
            results[slot] = _Result(vector, results[slot].no_face, None, results[slot].fallback)
    return results


# --------------------------------------------------------------------------- caller side


class EmbeddingCache:
    """Per-(model, runtime, detector, face choice) embeddings of image files, in one .npz under
    a cache folder.

    An entry is keyed by the resolved path, size and modification time of the file, so an
    edited or replaced file is embedded again. Only successful embeddings are stored."""

    def __init__(self, path: Path, entries: dict[str, _Result]) -> None:
        self.path = path
        self._entries = entries

    @classmethod
    def load(
        cls, folder: Path, model: FaceModel, face: str = "largest", fallback: str = "none"
    ) -> EmbeddingCache:
        safe = f"{model.model_id}-{model.runtime}-{model.detector_name}-{face}-{fallback}"
        safe = safe.replace("/", "_")
        path = folder / f"eval-embeddings-{safe}.npz"
        entries: dict[str, _Result] = {}
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    for key, vector, no_face, fell_back in zip(
                        data["keys"].tolist(),
                        data["vectors"],
                        data["no_face"],
                        data["fallback"],
                        strict=True,
                    ):
                        entries[str(key)] = _Result(
                            vector.astype(np.float32), bool(no_face), None, bool(fell_back)
                        )
            except (OSError, ValueError, KeyError):
                entries = {}  # unreadable cache: start again
        return cls(path, entries)

    @staticmethod
    def key(file: str) -> str | None:
        try:
            stat = os.stat(file)
        except OSError:
            return None
        return f"{Path(file).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def get(self, file: str) -> _Result | None:
        key = self.key(file)
        return self._entries.get(key) if key is not None else None

    def update(self, fresh: dict[str, _Result]) -> None:
        for file, result in fresh.items():
            key = self.key(file)
            if key is not None and result.vector is not None:
                self._entries[key] = result

    def save(self) -> None:
        if not self._entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = [k for k, r in self._entries.items() if r.vector is not None]
        vectors = [r.vector for r in self._entries.values() if r.vector is not None]
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(
            tmp,
            keys=np.array(keys),
            vectors=np.stack(vectors),
            no_face=np.array([self._entries[k].no_face for k in keys], dtype=bool),
            fallback=np.array([self._entries[k].fallback for k in keys], dtype=bool),
        )
        os.replace(tmp, self.path)


def _pool_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


ProgressCallback = Callable[[int], None]


def embed_image_files(
    paths: Sequence[Path],
    *,
    model_name: str = "dlib",
    detector: str = "hog",
    workers: int = 1,
    progress: bool = True,
    description: str = "embedding",
    cache_dir: Path | None = None,
    face: str = "largest",
    fallback: str = "none",
) -> EmbeddedImages:
    """One embedding per file, in the order given. Raises EvalError if any file is unreadable
    (an evaluation must score every image its protocol names). With `cache_dir`, embeddings of
    unchanged files (same path, size and mtime; same model and detector) are reused."""
    if face not in FACE_CHOICES:
        raise ValueError(f"unknown face choice {face!r}; expected one of {', '.join(FACE_CHOICES)}")
    started = time.perf_counter()
    files = [str(p) for p in paths]
    if fallback not in FALLBACK_CHOICES:
        raise ValueError(f"unknown fallback detector {fallback!r}")
    local = build_model(model_name, detector)  # cheap: the weights load on first use
    local_fallback = _fallback_model(model_name, fallback)
    cache = EmbeddingCache.load(cache_dir, local, face, fallback) if cache_dir is not None else None
    cached = {f: cache.get(f) for f in files} if cache is not None else {}
    todo = [f for f in files if cached.get(f) is None]
    chunks = [todo[i : i + CHUNK_SIZE] for i in range(0, len(todo), CHUNK_SIZE)]
    workers = max(1, min(workers, len(chunks)))
    results: list[_Result] = []
    with progress_bar(len(todo), description, enabled=progress) as advance:
        if workers == 1:
            for chunk in chunks:
                results.extend(embed_files_with(local, chunk, face=face, fallback=local_fallback))
                advance(len(chunk))
        else:
            ctx = _pool_context()
            with ctx.Pool(
                workers,
                initializer=_init_worker,
                initargs=(model_name, detector, face, fallback),
            ) as pool:
                for chunk_results in pool.imap(_embed_chunk, chunks):
                    results.extend(chunk_results)
                    advance(len(chunk_results))
    failures = [(f, r.error) for f, r in zip(todo, results, strict=True) if r.error is not None]
    if failures:
        shown = "; ".join(f"{f}: {e}" for f, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise EvalError(f"{len(failures)} image(s) could not be read: {shown}{more}")
    fresh = dict(zip(todo, results, strict=True))
    if cache is not None and fresh:
        cache.update(fresh)
        cache.save()
    results = [cached.get(f) or fresh[f] for f in files]
    vectors = [r.vector for r in results if r.vector is not None]
    embeddings = (
        np.stack(vectors).astype(np.float32)
        if vectors
        else np.zeros((0, local.embedding_size), dtype=np.float32)
    )
    return EmbeddedImages(
        paths=tuple(Path(p) for p in files),
        embeddings=embeddings,
        no_face=np.array([r.no_face for r in results], dtype=bool),
        fallback=np.array([r.fallback for r in results], dtype=bool),
        model_id=local.model_id,
        runtime=f"{local.runtime}/{local.detector_name}",
        seconds=time.perf_counter() - started,
    )


@contextmanager
def progress_bar(
    total: int, description: str, *, enabled: bool = True
) -> Iterator[ProgressCallback]:
    """A Rich progress bar on stderr (so --json output stays clean) showing images/s; yields a
    callback taking the number of images just finished. A no-op when disabled."""
    if not enabled or total <= 0:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} images/s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(description, total=total, rate="-")
        started = time.perf_counter()
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            elapsed = time.perf_counter() - started
            bar.update(task, advance=n, rate=f"{done / elapsed:.1f}" if elapsed > 0 else "-")

        yield advance
