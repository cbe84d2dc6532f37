"""Face quality: size, sharpness, pose and detector confidence folded into one score.

Faces below about 60 px embed poorly with 150x150-chip descriptors (distances between different
people collapse), so they are kept but marked low quality.
"""

from __future__ import annotations

import numpy as np

from facesearch.vision.model import Detection, Quality, RGBImage


def sharpness_of(chip: RGBImage) -> float:
    """Variance of a 4-neighbour Laplacian on the grey chip, squashed into [0, 1]."""
    grey = chip.astype(np.float32).mean(axis=2)
    lap = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    variance = float(lap.var())
    return float(variance / (variance + 100.0))


def frontalness_of(detection: Detection) -> float:
    """1 for a frontal face, towards 0 for a strong yaw, from the nose's place between the eyes.

    Works for dlib's 5 points (two corners per eye, then the nose) and for eye-centre layouts
    (left eye, right eye, nose, mouth corners): the eyes are the mean of the points before the
    nose index.
    """
    pts = np.asarray(detection.landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        return 0.5
    if detection.detector.startswith("dlib"):
        eye_a, eye_b, nose = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4]
    else:
        eye_a, eye_b, nose = pts[0], pts[1], pts[2]
    span = float(np.linalg.norm(eye_a - eye_b))
    if span < 1e-6:
        return 0.0
    axis = (eye_b - eye_a) / span
    t = float(np.dot(nose - eye_a, axis)) / span  # 0.5 when the nose sits midway
    return float(max(0.0, 1.0 - abs(t - 0.5) * 2.5))


def confidence_of(detection: Detection) -> float:
    if detection.assumed:
        return 0.0
    # HOG scores are margins around 0..3; CNN/CenterFace give probabilities in [0, 1].
    c = detection.confidence
    if detection.detector in ("dlib-hog",):
        return float(1.0 / (1.0 + np.exp(-2.0 * (c - 0.2))))
    return float(min(max(c, 0.0), 1.0))


def assess(detection: Detection, chip: RGBImage, min_face_size: int = 60) -> Quality:
    size = int(min(detection.box.width, detection.box.height))
    size_part = float(min(1.0, size / 112.0))
    sharp = sharpness_of(chip)
    pose = frontalness_of(detection)
    conf = confidence_of(detection)
    score = 0.35 * size_part + 0.2 * sharp + 0.25 * pose + 0.2 * conf
    reasons: list[str] = []
    if size < min_face_size:
        reasons.append(f"small face ({size}px < {min_face_size}px)")
    if sharp < 0.2:
        reasons.append("blurred")
    if pose < 0.3:
        reasons.append("strong head turn")
    if detection.assumed:
        reasons.append("no face detected; centred box assumed")
    low = bool(size < min_face_size or detection.assumed)
    return Quality(
        score=float(score),
        size_px=size,
        sharpness=sharp,
        pose=pose,
        confidence=conf,
        low=low,
        reasons=tuple(reasons),
    )
