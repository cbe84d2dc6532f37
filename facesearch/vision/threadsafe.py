"""A FaceModel shared between threads (API requests, background ingest jobs).

dlib's detectors and networks keep per-call state inside the objects, so two threads must not
run one model at the same time; this wrapper serialises the calls. Worker processes each own a
model and need no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from facesearch.vision.model import Detection, Embeddings, FaceModel, RGBImage


class ThreadSafeFaceModel:
    def __init__(self, inner: FaceModel) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.model_id = inner.model_id
        self.embedding_size = inner.embedding_size
        self.default_threshold = inner.default_threshold
        self.detector_name = inner.detector_name
        self.runtime = inner.runtime

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        with self._lock:
            return self._inner.detect(image, thorough=thorough)

    def centred_detection(self, image: RGBImage) -> Detection:
        with self._lock:
            return self._inner.centred_detection(image)

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        with self._lock:
            return self._inner.align(image, detection)

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        with self._lock:
            return self._inner.embed(chips)

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        with self._lock:
            return self._inner.raw_embed(chips)
