"""Five-point similarity alignment onto the 112 x 112 ArcFace template, as OpenCV's
`FaceRecognizerSF.alignCrop` does it (the chip SFace was trained on).

1. `similarity_transform`: the least-squares similarity (rotation, uniform scale, translation)
   taking the five landmarks (eye, eye, nose tip, mouth corner, mouth corner; image left to right
   for a frontal face) onto `ARCFACE_TEMPLATE`: Umeyama's closed form (SVD of the 2 x 2
   cross-covariance, reflection excluded).
2. `warp_affine`: bilinear resampling of the image through that transform, OpenCV `warpAffine`
   conventions: chip pixel (x, y) takes the source value at M⁻¹·(x, y, 1) with pixel centres on
   integer coordinates, pixels outside the image count as 0 (BORDER_CONSTANT), the result is
   rounded to the nearest integer.

Parity with OpenCV 5.0 (tests/vision/test_sface.py against tests/vision/fixtures): matrix within
1e-4, chips within one grey level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from facesearch.vision.model import RGBImage

CHIP_SIZE = 112
#: Where the five landmarks go in the 112 x 112 chip (InsightFace's ArcFace template).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

Matrix = npt.NDArray[np.float64]  # 2 x 3 affine matrix, source -> destination


def similarity_transform(source: npt.ArrayLike, target: npt.ArrayLike = ARCFACE_TEMPLATE) -> Matrix:
    """The 2 x 3 similarity matrix M minimising Σ |M·(p, 1) − q|² over the point pairs (p, q).

    Umeyama (1991): with centred points P, Q and the cross-covariance A = QᵀP / n = U S Vᵀ,
    R = U D Vᵀ where D = diag(1, sign det A) (no reflection), scale = tr(S D) / var(P) and
    t = mean(Q) − scale · R · mean(P).
    """
    src = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point lists, got {src.shape} and {dst.shape}")
    n = len(src)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    p, q = src - src_mean, dst - dst_mean
    cov = q.T @ p / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1.0
    rank = int(np.sum(s > s.max() * 2 * np.finfo(np.float32).tiny))
    if rank == 0:
        raise ValueError("landmarks are all the same point; no similarity transform")
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        rotation = u @ np.diag([1.0, -1.0]) @ vt  # collinear points: the proper rotation
    elif rank == 1:
        rotation = u @ vt
    else:
        rotation = u @ np.diag(d) @ vt
    variance = float((p * p).sum() / n)
    scale = float(s @ d) / variance
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    return matrix


def warp_affine(image: RGBImage, matrix: Matrix, size: tuple[int, int]) -> RGBImage:
    """`image` (H x W x C, uint8) resampled through the 2 x 3 `matrix` (source -> destination)
    into a `size` = (width, height) image; bilinear, outside pixels 0 (OpenCV's warpAffine with
    INTER_LINEAR and BORDER_CONSTANT)."""
    width, height = size
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    src = np.asarray(image)
    h, w = src.shape[:2]
    # Only the region the samples read (a face, not the whole photo: a 4000 x 3000 image would
    # be 288 MB as float64), with one pixel of zero border on every side: neighbours outside
    # the image read 0. Every neighbour inside the image lies inside the region.
    left = int(min(max(x0.min(), 0), w))
    top_ = int(min(max(y0.min(), 0), h))
    right = int(max(min(x0.max() + 2, w), left))
    bottom_ = int(max(min(y0.max() + 2, h), top_))
    rw, rh = right - left, bottom_ - top_
    padded = np.zeros((rh + 2, rw + 2, *src.shape[2:]), dtype=np.float64)
    padded[1:-1, 1:-1] = src[top_:bottom_, left:right]
    if src.ndim == 2:
        padded = padded[..., None]
    cx0 = np.clip(x0 - left + 1, 0, rw + 1)
    cx1 = np.clip(x0 - left + 2, 0, rw + 1)
    cy0 = np.clip(y0 - top_ + 1, 0, rh + 1)
    cy1 = np.clip(y0 - top_ + 2, 0, rh + 1)
    top = padded[cy0, cx0] * (1 - fx) + padded[cy0, cx1] * fx
    bottom = padded[cy1, cx0] * (1 - fx) + padded[cy1, cx1] * fx
    out = top * (1 - fy) + bottom * fy
    if src.ndim == 2:
        out = out[..., 0]
    result: RGBImage = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result


def align_face(
    image: RGBImage, landmarks: Sequence[tuple[float, float]], size: int = CHIP_SIZE
) -> RGBImage:
    """The `size` x `size` chip with the five landmarks on the ArcFace template (scaled)."""
    target = ARCFACE_TEMPLATE * (size / CHIP_SIZE)
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64), target)
    return warp_affine(image, matrix, (size, size))
