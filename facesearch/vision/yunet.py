"""YuNet face detection (OpenCV Zoo, 2023mar, MIT) on ONNX Runtime: boxes, five landmarks and a
score per face, decoded and suppressed in numpy the way OpenCV's `FaceDetectorYN` does it.

The graph. The file is exported for a fixed 1 x 3 x 640 x 640 input. Height and width are made
symbolic at load (in memory, with `onnx`; the file on disk is never changed) and the stale
intermediate shapes are dropped. Its 12 Reshape nodes use [1, -1, k] (batch 1, then "whatever is
left"), and its two nearest-neighbour Resize nodes use scales, so any size works as long as every
stride-32 feature map upsamples back onto the stride-16 and stride-8 maps exactly: input height
and width must be multiples of 32. As OpenCV does, the image is padded with zeros at the bottom
and right up to the next multiple of 32 (the padding is never cropped away from the outputs: a
face can only be found where there are pixels). Input: float32 BGR 0..255, N x 3 x H x W, no
mean or scale (OpenCV's `blobFromImage` defaults; the graph is in OpenCV's BGR convention, our
images are RGB, so channels are reversed here).

Decoding (per stride s in 8, 16, 32, for the cell at row r, column c of the padded map):
score = √(clip(cls, 0, 1) · clip(obj, 0, 1)); centre = ((c, r) + bbox[0:2]) · s, size =
exp(bbox[2:4]) · s; landmark k = ((c, r) + kps[2k:2k+2]) · s. Candidates below the score
threshold are dropped; then OpenCV's `NMSBoxes` on the boxes truncated to integer rectangles (the
candidates sorted by score, stably; at most `top_k`; a box is kept when its IoU with every box kept
before it is at most the NMS threshold). tests/vision/test_yunet.py checks all of this against
OpenCV 5.0's own FaceDetectorYN (fixtures computed once, see tests/vision/fixtures).

Large images at bounded cost (`YuNetDetector.detect`): a *global pass* on the image scaled so its
long side is at most `global_side` (640 px) finds large faces; a *detail pass* on the image at the
largest scale (at most `max_upscale`) for which everything processed stays within `max_pixels`,
cut into overlapping tiles, finds the small ones. Detections touching an inner tile edge are
dropped (the face is whole in the neighbouring tile, or large enough for the global pass), then all
passes are merged by NMS. Each image costs at most `max_pixels` network input pixels, whatever
its size. When nothing scores at least `score_threshold`, the same network outputs are decoded
again at `fallback_threshold` (no second inference), for hard faces (blur, profile, occlusion).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from facesearch.vision.model import Box, Detection, RGBImage
from facesearch.vision.model_files import YUNET_DYNAMIC, derived_bytes

NAME = "yunet"
STRIDES = (8, 16, 32)
DIVISOR = 32
OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)

#: Faces scoring at least this are reported (OpenCV's demo uses 0.9, tuned for its 320 px
#: input; see docs/decisions/0005 for how 0.6 was chosen).
SCORE_THRESHOLD = 0.6
#: Second decoding threshold, used only when nothing in the image reaches SCORE_THRESHOLD.
FALLBACK_THRESHOLD = 0.45
NMS_THRESHOLD = 0.3
TOP_K = 5000
#: Long side of the global pass (large faces).
GLOBAL_SIDE = 640
#: Network input pixels per image, all passes together (the bounded cost).
MAX_PIXELS = 6_000_000
#: Largest scale of the detail pass (small images are upscaled at most this much).
MAX_UPSCALE = 1.5
#: A face whose box is at least this many px wide in the global pass belongs to the global pass:
#: the detail pass's detection of it is dropped, so its landmarks (and its embedding) are the
#: same whether or not the detail pass ran (YuNet finds faces from about 30 px reliably).
GLOBAL_OWNS = 40
#: Largest tile of the detail pass (px, multiple of 32) and the overlap between tiles.
TILE_SIDE = 1280
TILE_OVERLAP = 96
#: Faces smaller than this (box side, px in the image) are not reported: nothing recognises a
#: face that small (its 112 px chip would be upsampled 7x or more), and YuNet's detections
#: under it are mostly texture (an 8 x 10 px "face" in the hair of `small/barack_obama/obama.jpg`).
MIN_FACE = 16
#: Landmark refinement: every face found is looked at once more on its own, in a square crop
#: of REFINE_SIDE px in which the face box is REFINE_FACE of the side, and takes the landmarks
#: found there. So a face's landmarks (hence its chip and embedding) do not depend on which
#: pass found it or on the size of the photo around it, and are found at the scale where
#: YuNet's landmarks are most precise (docs/decisions/0005, "Landmark refinement").
REFINE_SIDE = 320
REFINE_FACE = 0.5

FloatArray = npt.NDArray[np.float32]
#: Columns of a decoded row holding x and y coordinates (box corner, then the 5 landmarks).
_X = [0, 4, 6, 8, 10, 12]
_Y = [1, 5, 7, 9, 11, 13]


def dynamic_graph(data: bytes) -> bytes:
    """The YuNet graph with symbolic height and width (input `input`, all 12 outputs)."""
    import onnx

    model = onnx.load_from_string(data)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if [i.name for i in inputs] != ["input"] or {o.name for o in model.graph.output} != set(
        OUTPUTS
    ):
        raise ValueError("not the YuNet 2023mar graph (unexpected inputs or outputs)")
    del model.graph.value_info[:]  # intermediate shapes computed for 640 x 640
    dims = inputs[0].type.tensor_type.shape.dim
    for index, symbol in ((2, "height"), (3, "width")):
        dims[index].ClearField("dim_value")
        dims[index].dim_param = symbol
    for output in model.graph.output:
        cells = output.type.tensor_type.shape.dim[1]
        cells.ClearField("dim_value")
        cells.dim_param = f"cells_{output.name.split('_')[1]}"
    return bytes(model.SerializeToString())


def padded_size(height: int, width: int) -> tuple[int, int]:
    return -(-height // DIVISOR) * DIVISOR, -(-width // DIVISOR) * DIVISOR


def to_blob(image: RGBImage) -> FloatArray:
    """1 x 3 x H' x W' float32 BGR blob, zero-padded at the bottom and right to multiples of 32."""
    height, width = image.shape[:2]
    ph, pw = padded_size(height, width)
    blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
    blob[0, :, :height, :width] = image[:, :, ::-1].transpose(2, 0, 1)
    return blob


def decode(
    outputs: Sequence[FloatArray], padded_h: int, padded_w: int, score_threshold: float
) -> FloatArray:
    """Candidates as N x 15 float32 rows (x, y, w, h, 5 x (lx, ly), score), in OpenCV's order
    (stride 8, 16, 32; row-major cells), before suppression."""
    rows = []
    n = len(STRIDES)
    for i, stride in enumerate(STRIDES):
        cols = padded_w // stride
        cls = np.clip(outputs[i].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[i + n].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= np.float32(score_threshold))
        if keep.size == 0:
            continue
        bbox = outputs[i + 2 * n].reshape(-1, 4)[keep]
        kps = outputs[i + 3 * n].reshape(-1, 10)[keep]
        c = (keep % cols).astype(np.float32)
        r = (keep // cols).astype(np.float32)
        s = np.float32(stride)
        w = np.exp(bbox[:, 2]) * s
        h = np.exp(bbox[:, 3]) * s
        x1 = (c + bbox[:, 0]) * s - w / np.float32(2)
        y1 = (r + bbox[:, 1]) * s - h / np.float32(2)
        marks = np.empty((keep.size, 10), dtype=np.float32)
        marks[:, 0::2] = (kps[:, 0::2] + c[:, None]) * s
        marks[:, 1::2] = (kps[:, 1::2] + r[:, None]) * s
        rows.append(
            np.concatenate(
                [np.stack([x1, y1, w, h], axis=1), marks, score[keep, None]], axis=1
            ).astype(np.float32)
        )
    if not rows:
        return np.zeros((0, 15), dtype=np.float32)
    _ = padded_h  # rows are implied by the output length
    return np.concatenate(rows)


def nms(
    boxes: npt.ArrayLike,
    scores: npt.ArrayLike,
    score_threshold: float,
    nms_threshold: float,
    top_k: int = TOP_K,
    *,
    integer: bool = True,
) -> list[int]:
    """OpenCV's `dnn::NMSBoxes` for (x, y, w, h) boxes: indices kept, best first. With
    `integer`, boxes are first truncated to integer rectangles as FaceDetectorYN does."""
    xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    conf = np.asarray(scores, dtype=np.float32).reshape(-1)
    if integer:
        xywh = np.trunc(xywh)
    candidates = np.flatnonzero(conf > np.float32(score_threshold))
    order = candidates[np.argsort(-conf[candidates], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    x1, y1 = xywh[:, 0], xywh[:, 1]
    x2, y2 = x1 + xywh[:, 2], y1 + xywh[:, 3]
    areas = xywh[:, 2] * xywh[:, 3]
    kept: list[int] = []
    for index in order:
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(x2[index], x2[k]) - np.maximum(x1[index], x1[k])
            ih = np.minimum(y2[index], y2[k]) - np.maximum(y1[index], y1[k])
            inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
            total = areas[index] + areas[k]
            union = total - inter
            overlap = np.where(total > 0, inter / np.where(union > 0, union, 1.0), 1.0)
            if np.any(overlap > nms_threshold):
                continue
        kept.append(int(index))
    return kept


@dataclass(frozen=True)
class Window:
    """One network run: the image scaled by `scale`, then the tile [x, x + w) x [y, y + h)."""

    scale: float
    x: int
    y: int
    width: int
    height: int
    #: Which sides of the tile are inside the scaled image (detections touching them are cut).
    inner: tuple[bool, bool, bool, bool]  # left, top, right, bottom

    @property
    def pixels(self) -> int:
        ph, pw = padded_size(self.height, self.width)
        return ph * pw


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Start and length of overlapping tiles covering [0, length), all about the same size."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    size = min(length, -(-size // DIVISOR) * DIVISOR)  # no padding inside the image
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(s, size) for s in starts]


def plan(
    height: int,
    width: int,
    *,
    global_side: int = GLOBAL_SIDE,
    max_pixels: int = MAX_PIXELS,
    max_upscale: float = MAX_UPSCALE,
    tile_side: int = TILE_SIDE,
    tile_overlap: int = TILE_OVERLAP,
) -> list[Window]:
    """The network runs for one image: the global pass, then the detail pass's tiles (none when
    the detail pass would not be at a larger scale). Total padded pixels <= max_pixels."""
    long_side = max(height, width)
    g = min(1.0, global_side / long_side)
    gh, gw = max(1, round(height * g)), max(1, round(width * g))
    windows = [Window(g, 0, 0, gw, gh, (False, False, False, False))]
    budget = max_pixels - windows[0].pixels
    scale = min(max_upscale, math.sqrt(max(budget, 0) / (height * width)))
    while scale > g * 1.15:
        sh, sw = max(1, round(height * scale)), max(1, round(width * scale))
        tiles = [
            Window(scale, x, y, tw, th, (x > 0, y > 0, x + tw < sw, y + th < sh))
            for y, th in _spans(sh, tile_side, tile_overlap)
            for x, tw in _spans(sw, tile_side, tile_overlap)
        ]
        if sum(t.pixels for t in tiles) <= budget:
            return windows + tiles
        scale *= 0.95
    return windows


class YuNetDetector:
    """YuNet on ONNX Runtime; `detect` gives Detections (image pixels, largest first)."""

    name = NAME

    def __init__(
        self,
        *,
        score_threshold: float = SCORE_THRESHOLD,
        fallback_threshold: float | None = FALLBACK_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        top_k: int = TOP_K,
        global_side: int = GLOBAL_SIDE,
        max_pixels: int = MAX_PIXELS,
        max_upscale: float = MAX_UPSCALE,
        tile_side: int = TILE_SIDE,
        tile_overlap: int = TILE_OVERLAP,
        min_face: int = MIN_FACE,
        refine_side: int = REFINE_SIDE,
        refine_face: float = REFINE_FACE,
        threads: int = 0,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        model_dir: Path | None = None,
    ) -> None:
        if not 0.0 < score_threshold <= 1.0:
            raise ValueError("score_threshold must be in (0, 1]")
        if fallback_threshold is not None and not 0.0 < fallback_threshold <= score_threshold:
            raise ValueError("fallback_threshold must be in (0, score_threshold]")
        if tile_side % DIVISOR or tile_overlap >= tile_side // 2:
            raise ValueError("tile_side must be a multiple of 32, tile_overlap < tile_side / 2")
        if max_pixels < 64 * 64:
            raise ValueError("max_pixels is too small")
        self.score_threshold = score_threshold
        self.fallback_threshold = fallback_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.global_side = global_side
        self.max_pixels = max_pixels
        self.max_upscale = max_upscale
        self.tile_side = tile_side
        self.tile_overlap = tile_overlap
        self.min_face = min_face
        self.refine_side, self.refine_face = refine_side, refine_face
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.providers = list(providers)
        self._model_dir = model_dir

    @cached_property
    def session(self) -> Any:
        from facesearch.vision.onnx_model import create_session

        graph = derived_bytes(YUNET_DYNAMIC, dynamic_graph, self._model_dir)
        assert graph is not None  # dynamic_graph never declines: it raises on another graph
        return create_session(graph, self.threads, self.providers)

    # -- one network run, as OpenCV's FaceDetectorYN -------------------------------------------

    def forward(self, image: RGBImage) -> list[FloatArray]:
        """The 12 raw outputs for `image` as given (padded to multiples of 32)."""
        outputs: list[FloatArray] = self.session.run(list(OUTPUTS), {"input": to_blob(image)})
        return outputs

    def detect_single(self, image: RGBImage, score_threshold: float | None = None) -> FloatArray:
        """What `cv2.FaceDetectorYN` with input size = image size returns: N x 15 rows (x, y, w,
        h, landmarks, score), after NMS, in the image's pixels."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        ph, pw = padded_size(*image.shape[:2])
        faces = decode(self.forward(image), ph, pw, threshold)
        keep = nms(faces[:, :4], faces[:, 14], threshold, self.nms_threshold, self.top_k)
        out: FloatArray = faces[keep]
        return out

    # -- the whole image at bounded cost --------------------------------------------------------

    def plan(self, height: int, width: int, *, thorough: bool = True) -> list[Window]:
        """The passes for an image; not `thorough`: the detail pass never enlarges the image
        (a photo of up to 640 px is one pass at its own resolution)."""
        return plan(
            height,
            width,
            global_side=self.global_side,
            max_pixels=self.max_pixels,
            max_upscale=self.max_upscale if thorough else min(1.0, self.max_upscale),
            tile_side=self.tile_side,
            tile_overlap=self.tile_overlap,
        )

    def candidates(self, image: RGBImage, threshold: float, *, thorough: bool = True) -> FloatArray:
        """Every pass's candidates at `threshold` (each pass suppressed on its own), N x 15,
        in the image's pixels; only the global pass unless `thorough`."""
        height, width = image.shape[:2]
        found = []
        scaled: dict[float, RGBImage] = {}
        windows = self.plan(height, width, thorough=thorough)
        global_scale = windows[0].scale
        for window in windows:
            if window.scale not in scaled:
                scaled[window.scale] = _resize(image, window.scale)
            tile = scaled[window.scale][
                window.y : window.y + window.height, window.x : window.x + window.width
            ]
            ph, pw = padded_size(*tile.shape[:2])
            faces = decode(self.forward(tile), ph, pw, threshold)
            faces = faces[
                nms(faces[:, :4], faces[:, 14], threshold, self.nms_threshold, self.top_k)
            ]
            faces = _drop_cut(faces, window)
            if window.scale > global_scale:
                at_global = np.minimum(faces[:, 2], faces[:, 3]) * (global_scale / window.scale)
                faces = faces[at_global < GLOBAL_OWNS]
            faces[:, _X] += np.float32(window.x)
            faces[:, _Y] += np.float32(window.y)
            faces[:, :14] /= np.float32(window.scale)
            found.append(faces)
        return np.concatenate(found) if found else np.zeros((0, 15), np.float32)

    def raw(self, image: RGBImage, *, thorough: bool = True) -> FloatArray:
        """N x 15 rows for the whole image, merged over passes; the fallback threshold applies
        when nothing reaches the score threshold. Not `thorough`: no pass enlarges the image,
        and the thorough passes run when that finds nothing."""
        low = self.fallback_threshold or self.score_threshold
        if not thorough:
            quick = self.raw_of(self.candidates(image, low, thorough=False), low)
            if len(quick):
                return quick
        return self.raw_of(self.candidates(image, low), low)

    def raw_of(self, faces: FloatArray, low: float) -> FloatArray:
        for threshold in dict.fromkeys((self.score_threshold, low)):
            chosen = faces[faces[:, 14] >= np.float32(threshold)]
            keep = nms(
                chosen[:, :4], chosen[:, 14], -1.0, self.nms_threshold, self.top_k, integer=False
            )
            chosen = chosen[keep]
            chosen = chosen[np.minimum(chosen[:, 2], chosen[:, 3]) >= self.min_face]
            if len(chosen):
                out: FloatArray = chosen
                return out
        return np.zeros((0, 15), np.float32)

    def detect(self, image: RGBImage, *, thorough: bool = True) -> list[Detection]:
        rows = self.raw(image, thorough=thorough)
        if self.refine_side:
            rows = self.refine(image, rows)
        return detections_of(rows, image.shape, self.name)

    def refine(self, image: RGBImage, rows: FloatArray) -> FloatArray:
        """Each face's box and landmarks as found again in a crop around it, scaled so that the
        face is `refine_face` of a `refine_side` px square (its score is kept). A face not found
        again near the centre of its crop keeps its rows."""
        side = self.refine_side
        low = self.fallback_threshold or self.score_threshold
        out = rows.copy()
        pil: Image.Image | None = None
        for i, row in enumerate(rows):
            x, y, w, h = (float(v) for v in row[:4])
            crop = max(w, h) / self.refine_face
            left, top = x + w / 2 - crop / 2, y + h / 2 - crop / 2
            scale = side / crop
            if pil is None:
                pil = Image.fromarray(np.ascontiguousarray(image))
            patch = pil.transform(
                (side, side),
                Image.Transform.AFFINE,
                (1 / scale, 0, left, 0, 1 / scale, top),
                resample=Image.Resampling.BILINEAR,
            )
            found = self.detect_single(np.asarray(patch), low)
            if not len(found):
                continue
            offsets = found[:, :2] + found[:, 2:4] / 2 - side / 2
            nearest = int(np.argmin((offsets**2).sum(axis=1)))
            if float(np.hypot(*offsets[nearest])) > side * 0.15:
                continue
            again = found[nearest].copy()
            again[:14] /= np.float32(scale)
            again[_X] += np.float32(left)
            again[_Y] += np.float32(top)
            again[14] = row[14]
            out[i] = again
        return out


def _drop_cut(faces: FloatArray, window: Window, margin: float = 2.0) -> FloatArray:
    """Detections of a tile minus those touching one of its inner edges."""
    if not any(window.inner) or not len(faces):
        return faces
    x1, y1 = faces[:, 0], faces[:, 1]
    x2, y2 = x1 + faces[:, 2], y1 + faces[:, 3]
    left, top, right, bottom = window.inner
    cut = np.zeros(len(faces), dtype=bool)
    if left:
        cut |= x1 <= margin
    if top:
        cut |= y1 <= margin
    if right:
        cut |= x2 >= window.width - margin
    if bottom:
        cut |= y2 >= window.height - margin
    out: FloatArray = faces[~cut]
    return out


def _resize(image: RGBImage, scale: float) -> RGBImage:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized: RGBImage = np.asarray(
        Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)
    )
    return resized


def detections_of(rows: FloatArray, shape: tuple[int, ...], name: str = NAME) -> list[Detection]:
    """Detections (integer boxes clipped to the image, float landmarks), largest first."""
    height, width = shape[:2]
    found = []
    for row in rows:
        x, y, w, h = (float(v) for v in row[:4])
        box = Box(
            left=max(0, round(x)),
            top=max(0, round(y)),
            right=min(width, round(x + w)),
            bottom=min(height, round(y + h)),
        )
        if box.width <= 0 or box.height <= 0:
            continue
        points = tuple((float(row[4 + 2 * k]), float(row[5 + 2 * k])) for k in range(5))
        found.append(Detection(box=box, landmarks=points, confidence=float(row[14]), detector=name))
    found.sort(key=lambda d: d.box.width * d.box.height, reverse=True)
    return found
