"""SFace face recognition (OpenCV Zoo, 2021dec, Apache-2.0) on ONNX Runtime, with YuNet detection
and ArcFace-template alignment: the `sface` face model (docs/decisions/0005).

Pipeline, as OpenCV's `FaceDetectorYN` + `FaceRecognizerSF` run it:
detect (facesearch.vision.yunet) -> five landmarks -> `alignCrop` (facesearch.vision.align:
similarity transform onto the 112 x 112 ArcFace template, bilinear) -> `feature`.

Preprocessing. OpenCV's `feature()` calls `blobFromImage(chip, 1, (112, 112), (0, 0, 0),
swapRB=true)` on a chip cut from a BGR image: scale 1, no mean, channels swapped, so the network
receives **RGB** pixels 0..255 as float32 N x 3 x 112 x 112; the graph itself then computes
(x - 127.5) / 128. Our images and chips are RGB already: no swap here.

Batching. The file is exported for batch 1 (input `data` 1 x 3 x 112 x 112, output `fc1` 1 x
128). Its only shape-dependent nodes are one Flatten (axis 1) and a Gemm; there is no Reshape. At
load the batch dimension of `data` and `fc1` is made symbolic (and the initializers that the old
exporter also listed as graph inputs are dropped from the input list), so a batch of N chips runs
as one call; tests/vision/test_sface.py checks batch N against N calls of batch 1. Should a
future file contain a Reshape, the model falls back to one chip per call.

Embeddings: the network's 128-d output, L2-normalised. facesearch.similarity's score
1 - d/2 with d the Euclidean distance of unit vectors equals 1 - sqrt((1 - cos) / 2): a monotone
function of OpenCV's cosine score, so rankings and accuracies are the cosine's (see
`cosine_to_score`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facesearch.vision import yunet
from facesearch.vision.align import CHIP_SIZE, align_face
from facesearch.vision.model import Box, Detection, Embeddings, RGBImage, l2_normalise
from facesearch.vision.model_files import SFACE, SFACE_BATCHED, derived_bytes, verified_bytes
from facesearch.vision.onnx_model import choose_providers, create_session, runtime_name

log = logging.getLogger(__name__)

MODEL_ID = "sface-2021dec"
EMBEDDING_SIZE = 128
#: Chips per ONNX Runtime call: 8 was the fastest on 2 CPU cores (bench/detector_bench.py).
DEFAULT_BATCH_SIZE = 8
#: Detectors whose five landmarks are eye, eye, nose tip, mouth corner, mouth corner (the layout
#: the ArcFace template expects).
DETECTORS = ("yunet",)
#: The landmarks of the face assumed in a centred box, as fractions of the image's width and
#: height: medians of YuNet's landmarks for the centred person over 502 LFW DevTrain images.
CENTRED_LANDMARKS = (
    (0.4129, 0.4525),
    (0.5863, 0.4456),
    (0.5013, 0.5513),
    (0.4321, 0.6326),
    (0.5803, 0.6272),
)
CENTRED_BOX = (0.3146, 0.2523, 0.3746, 0.5184)  # x, y, w, h, same fractions


def cosine_to_score(cosine: float) -> float:
    """facesearch's score (1 - d/2) of two unit vectors with this cosine similarity."""
    return 1.0 - math.sqrt(max(0.0, 2.0 - 2.0 * cosine)) / 2.0


def score_to_cosine(score: float) -> float:
    d = 2.0 * (1.0 - score)
    return 1.0 - d * d / 2.0


#: Provisional same-person score (facesearch's 1 - d/2; cosine 0.350): the best threshold over
#: all 2,200 LFW DevTrain pairs (0.4320) rounded to two decimals, as for dlib (ADR 0002). On
#: DevTrain it accepts 2 of 1,100 impostor pairs and rejects 7 of 1,100 genuine ones. OpenCV's
#: published SFace threshold, cosine 0.363, is score 0.4356. See docs/decisions/0005.
DEFAULT_THRESHOLD = 0.43
COSINE_THRESHOLD = round(score_to_cosine(DEFAULT_THRESHOLD), 4)


def batched_graph(data: bytes) -> tuple[bytes, bool]:
    """(graph with a symbolic batch dimension, True), or (the graph as it is, False) when it has
    nodes that might fix the batch size."""
    import onnx

    model = onnx.load_from_string(data)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if [i.name for i in inputs] != ["data"] or [o.name for o in model.graph.output] != ["fc1"]:
        raise ValueError("not the SFace 2021dec graph (unexpected inputs or outputs)")
    if any(n.op_type in ("Reshape", "Expand", "Tile", "ConstantOfShape") for n in model.graph.node):
        return data, False
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    del model.graph.value_info[:]
    for value in (model.graph.input[0], model.graph.output[0]):  # (extend copied `inputs`)
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    split_prelu(model)
    return bytes(model.SerializeToString()), True


def split_prelu(model: Any) -> None:
    """Rewrite every PRelu(x, slope) as Relu(x) - slope * Relu(-x), in place.

    The two are equal bit for bit (for x > 0: x - slope * 0; for x < 0: 0 - slope * -x), but
    ONNX Runtime's CPU PRelu is a generic broadcasting kernel that cost SFace more time than all
    its convolutions, while Relu, Neg, Mul and Sub run in its fused, vectorised paths: 1.5x the
    faces per second on 2 cores (docs/decisions/0005, "Speed")."""
    from onnx import helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        nodes += [
            helper.make_node("Relu", [x], [f"{y}/pos"]),
            helper.make_node("Neg", [x], [f"{y}/neg"]),
            helper.make_node("Relu", [f"{y}/neg"], [f"{y}/negpos"]),
            helper.make_node("Mul", [f"{y}/negpos", slope], [f"{y}/scaled"]),
            helper.make_node("Sub", [f"{y}/pos", f"{y}/scaled"], [y]),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def to_blob(chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
    """N x 3 x 112 x 112 float32, RGB, 0..255 (what blobFromImage(swapRB=true) gives for a BGR
    chip)."""
    batch = np.stack([np.asarray(c) for c in chips]).astype(np.float32)
    out: npt.NDArray[np.float32] = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return out


class SFaceModel:
    """YuNet + ArcFace alignment + SFace on ONNX Runtime (CPU; CUDA when available)."""

    model_id = MODEL_ID
    embedding_size = EMBEDDING_SIZE
    default_threshold = DEFAULT_THRESHOLD

    def __init__(
        self,
        detector: str = "yunet",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int = 0,
        providers: str = "auto",
        model_dir: Path | None = None,
        score_threshold: float = yunet.SCORE_THRESHOLD,
        fallback_threshold: float | None = yunet.FALLBACK_THRESHOLD,
        max_pixels: int = yunet.MAX_PIXELS,
    ) -> None:
        if detector not in DETECTORS:
            raise ValueError(
                f"the sface model aligns faces from five eye/nose/mouth landmarks; detector "
                f"{detector!r} is not supported (use: {', '.join(DETECTORS)})"
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if threads < 0:
            raise ValueError("threads must be >= 0 (0 = one per core)")
        self.batch_size = batch_size
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.providers = choose_providers(providers)
        self.runtime = runtime_name(self.providers)
        self._model_dir = model_dir
        self.detector = yunet.YuNetDetector(
            score_threshold=score_threshold,
            fallback_threshold=fallback_threshold,
            max_pixels=max_pixels,
            threads=self.threads,
            providers=self.providers,
            model_dir=model_dir,
        )
        self.detector_name = self.detector.name
        self.batched = True

    # -- session (lazy: cheap to create, safe to send to worker processes) ---------------------

    @cached_property
    def session(self) -> Any:
        def batched(data: bytes) -> bytes | None:
            graph, ok = batched_graph(data)
            return graph if ok else None

        graph = derived_bytes(SFACE_BATCHED, batched, self._model_dir)
        self.batched = graph is not None
        if graph is None:
            log.warning("SFace graph has shape-fixing nodes; embedding one chip per call")
            graph = verified_bytes(SFACE, self._model_dir)
        session = create_session(graph, self.threads, self.providers)
        used = session.get_providers()
        if runtime_name(used) != self.runtime:
            log.warning("ONNX Runtime fell back to %s (asked for %s)", used, self.providers)
            self.runtime = runtime_name(used)
        return session

    # -- FaceModel ---------------------------------------------------------------------------

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        return self.detector.detect(image, thorough=thorough)

    def centred_detection(self, image: RGBImage) -> Detection:
        height, width = image.shape[:2]
        x, y, w, h = CENTRED_BOX
        box = Box(
            left=round(x * width),
            top=round(y * height),
            right=round((x + w) * width),
            bottom=round((y + h) * height),
        )
        points = tuple((px * width, py * height) for px, py in CENTRED_LANDMARKS)
        return Detection(
            box=box, landmarks=points, confidence=0.0, detector=self.detector_name, assumed=True
        )

    def align(self, image: RGBImage, detection: Detection) -> RGBImage:
        if len(detection.landmarks) != 5 or detection.detector.startswith("dlib"):
            raise ValueError(
                f"sface needs five eye/nose/mouth landmarks; got a {detection.detector} detection"
            )
        return align_face(image, detection.landmarks, CHIP_SIZE)

    def raw_embed(self, chips: Sequence[RGBImage]) -> npt.NDArray[np.float32]:
        if not len(chips):
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        for chip in chips:
            if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
                raise ValueError(
                    f"chips must be {CHIP_SIZE}x{CHIP_SIZE}x3 (ArcFace-aligned), got {chip.shape}"
                )
        session = self.session
        step = self.batch_size if self.batched else 1
        parts = [
            session.run(["fc1"], {"data": to_blob(chips[start : start + step])})[0]
            for start in range(0, len(chips), step)
        ]
        return np.concatenate(parts).astype(np.float32)

    def embed(self, chips: Sequence[RGBImage]) -> Embeddings:
        return l2_normalise(self.raw_embed(chips))
