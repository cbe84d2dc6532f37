"""The small protocol every face model implements, and the values it passes around.

A `FaceModel` is a detector, an aligner and a descriptor network behind one object. Ingest and
search only ever see this protocol, so another runtime (ONNX) or network plugs in without
touching them. `model_id` names the descriptor: two faces are comparable only if their model ids
are equal, and an index never mixes two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

RGBImage = npt.NDArray[np.uint8]  # H x W x 3, RGB, uint8
Embeddings = npt.NDArray[np.float32]  # N x D descriptors, compared by facesearch.similarity


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class Detection:
    """One face found in an image: box, five landmarks (x, y) and detector confidence."""

    box: Box
    landmarks: tuple[tuple[float, float], ...]
    confidence: float
    detector: str
    #: True when no face was detected and the box was assumed (LFW's centred-box protocol).
    assumed: bool = False


@dataclass(frozen=True)
class Quality:
    """How usable a face is for recognition, each part in [0, 1] except `size_px`."""

    score: float
    size_px: int
    sharpness: float
    pose: float
    confidence: float
    low: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 4),
            "size_px": self.size_px,
            "sharpness": round(self.sharpness, 4),
            "pose": round(self.pose, 4),
            "confidence": round(self.confidence, 4),
            "low": self.low,
            "reasons": list(self.reasons),
        }


@runtime_checkable
class FaceModel(Protocol):
    """Detector + aligner + descriptor; implementations must be buildable in a worker process."""

    #: Identifies the descriptor (network and weights); equal ids mean comparable embeddings.
    model_id: str
    embedding_size: int
    #: Score (facesearch.similarity) at or above which two faces are called the same person.
    default_threshold: float
    detector_name: str
    #: The runtime that executes the descriptor ("dlib", "onnxruntime-cpu", ...), recorded per face.
    runtime: str

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        """Every face in the image, largest first. `thorough=False` lets a detector that can
        trade small faces for speed do so (a probe search); it must still find the faces a
        quick look finds, and look thoroughly when that finds none."""
        ...

    def centred_detection(self, image: RGBImage) -> Detection:
        """The face assumed at the centre (for images where detection found nothing)."""
        ...

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        """The aligned face chip the descriptor expects."""
        ...

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        """Descriptors, one float32 row per chip, in the space `facesearch.similarity` compares."""
        ...

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        """The network's own output, before normalisation (for parity checks)."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Embeddings:
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Embeddings = (arr / norms).astype(np.float32)
    return out
