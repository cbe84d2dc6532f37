"""FaceModel on ONNX Runtime: dlib's own descriptor network (converted from its .dat file, see
facesearch.vision.dlib_onnx), batched, CPU by default, CUDA when onnxruntime-gpu and a GPU are
present (same code path, only the execution provider differs).

Model id: the ONNX graph is the same network with the same weights, and its descriptors match
dlib's within 1e-4 per component (tests/vision/test_onnx_parity.py; docs/decisions/0004), so it
keeps dlib's model id "dlib-resnet-v1": embeddings from either runtime are interchangeable and
share an index. The runtime that produced a face is recorded separately ("onnxruntime-cpu" or
"onnxruntime-cuda"). If the parity tests ever fail, this id must change.

Detection and alignment are dlib's (HOG or CNN plus the 5-point shape predictor and
get_face_chip), or CenterFace (facesearch.vision.centerface) aligned the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facesearch.vision.dlib_model import (
    CHIP_SIZE,
    DEFAULT_THRESHOLD,
    EMBEDDING_SIZE,
    MODEL_ID,
    DlibDetector,
    dlib_chip,
)
from facesearch.vision.model import Detection, Embeddings, RGBImage

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(choice: str = "auto") -> list[str]:
    """Execution providers for `choice`: "cpu"; "cuda" (an error without onnxruntime-gpu and a
    GPU); "auto" = CUDA when available, else CPU. CPU is always last, as the fallback."""
    if choice not in PROVIDER_CHOICES:
        raise ValueError(f"onnx providers must be one of {', '.join(PROVIDER_CHOICES)}")
    if choice == "cpu":
        return [CPU]
    has_cuda = CUDA in available_providers()
    if choice == "cuda" and not has_cuda:
        raise RuntimeError(
            "onnx providers 'cuda' requested but CUDAExecutionProvider is not available "
            "(install onnxruntime-gpu in place of onnxruntime, with CUDA and cuDNN, on a machine "
            "with an NVIDIA GPU); use 'auto' or 'cpu' to run on the CPU"
        )
    return [CUDA, CPU] if has_cuda else [CPU]


def runtime_name(providers: Sequence[str]) -> str:
    return "onnxruntime-cuda" if providers and providers[0] == CUDA else "onnxruntime-cpu"


class OnnxFaceModel:
    """dlib-resnet-v1 descriptors computed by ONNX Runtime, in batches."""

    model_id = MODEL_ID
    embedding_size = EMBEDDING_SIZE
    default_threshold = DEFAULT_THRESHOLD

    def __init__(
        self,
        detector: str = "hog",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int = 0,
        providers: str = "auto",
        model_path: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if threads < 0:
            raise ValueError("threads must be >= 0 (0 = one per core)")
        self.batch_size = batch_size
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.providers = choose_providers(providers)
        self.runtime = runtime_name(self.providers)
        self._model_path = model_path
        self._dlib = DlibDetector("hog" if detector == "centerface" else detector)
        self._centerface: Any = None
        if detector == "centerface":
            from facesearch.vision.centerface import CenterFaceDetector

            self._centerface = CenterFaceDetector(threads=self.threads)
            self.detector_name = self._centerface.name
        else:
            self.detector_name = self._dlib.name

    # -- session (built lazily so the object is cheap to create and safe to send to workers) --

    @cached_property
    def session(self) -> Any:
        import onnxruntime as ort

        from facesearch.vision.dlib_onnx import converted_model

        path = self._model_path or converted_model()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers: list[Any] = [
            # TF32 matmuls/convolutions would cost parity with dlib (1e-4); keep full float32.
            (name, {"use_tf32": "0"}) if name == CUDA else name
            for name in self.providers
        ]
        session = ort.InferenceSession(str(path), options, providers=providers)
        used = session.get_providers()
        if runtime_name(used) != self.runtime:
            log.warning("ONNX Runtime fell back to %s (asked for %s)", used, self.providers)
            self.runtime = runtime_name(used)
        return session

    # -- FaceModel ---------------------------------------------------------------------------

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        if self._centerface is not None:
            result: list[Detection] = self._centerface.detect(image)
            return result
        return self._dlib.detect(image)

    def centred_detection(self, image: RGBImage) -> Detection:
        return self._dlib.centred(image)

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        if self._centerface is not None and detection.detector == self._centerface.name:
            chip: RGBImage = self._centerface.align(image, detection)
            return chip
        return dlib_chip(image, detection)

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        if not len(chips):
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        for chip in chips:
            if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
                raise ValueError(
                    f"chips must be {CHIP_SIZE}x{CHIP_SIZE}x3 (dlib face chips), got {chip.shape}"
                )
        session = self.session
        parts = []
        for start in range(0, len(chips), self.batch_size):
            batch = np.ascontiguousarray(
                np.stack(chips[start : start + self.batch_size]), dtype=np.uint8
            )
            parts.append(session.run(None, {"chips": batch})[0])
        return np.concatenate(parts).astype(np.float32)

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        return self.raw_embed(chips)


def create_session(model: bytes | Path, threads: int, providers: Sequence[str]) -> Any:
    """An InferenceSession with the settings every facesearch graph uses: all graph
    optimisations, `threads` intra-op threads, one inter-op thread (sequential execution), and
    no TF32 on CUDA (float32 results the same on every provider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Idle pool threads sleep instead of spinning: a search or an ingest worker runs YuNet and
    # SFace one after the other, and the threads of the session that just ran would otherwise
    # spin on the same cores for a while, slowing the next one by a third (ADR 0005, "Speed").
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chosen: list[Any] = [(name, {"use_tf32": "0"}) if name == CUDA else name for name in providers]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=chosen)
