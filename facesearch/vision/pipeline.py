"""Image → analysed faces (detection, aligned chip, quality), then embeddings in batches.

Shared by ingest, search, verify and eval so that every path treats a face the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from facesearch.vision.model import Detection, Embeddings, FaceModel, Quality, RGBImage
from facesearch.vision.quality import assess

#: Side of the stored face crop (px); a loose crop around the box, not the aligned chip.
CROP_SIDE = 160


@dataclass(frozen=True)
class AnalysedFace:
    detection: Detection
    chip: RGBImage
    quality: Quality
    #: The photo the face was found in (for its crop; not copied).
    image: RGBImage = field(repr=False, compare=False)

    @cached_property
    def crop(self) -> RGBImage:
        """The stored display crop, made when first asked for (ingest keeps it; a search
        does not)."""
        return face_crop(self.image, self.detection)


def analyse(
    model: FaceModel,
    image: RGBImage,
    *,
    min_face_size: int = 60,
    centred_fallback: bool = False,
    thorough: bool = True,
) -> list[AnalysedFace]:
    """Detect every face, align it and judge its quality. With `centred_fallback`, an image where
    nothing is detected yields one face from a centred box (the LFW protocol)."""
    detections = model.detect(image, thorough=thorough)
    if not detections and centred_fallback:
        detections = [model.centred_detection(image)]
    faces = []
    for detection in detections:
        chip = model.align(image, detection)
        faces.append(
            AnalysedFace(
                detection=detection,
                chip=chip,
                quality=assess(detection, chip, min_face_size),
                image=image,
            )
        )
    return faces


def embed_faces(
    model: FaceModel, faces: Sequence[AnalysedFace], batch_size: int = 32
) -> Embeddings:
    if not faces:
        return np.zeros((0, model.embedding_size), dtype=np.float32)
    parts = [
        model.embed([f.chip for f in faces[i : i + batch_size]])
        for i in range(0, len(faces), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def face_crop(image: RGBImage, detection: Detection, margin: float = 0.35) -> RGBImage:
    """A square crop around the box with some context, resized to CROP_SIDE for display."""
    from PIL import Image

    height, width = image.shape[:2]
    box = detection.box
    side = max(box.width, box.height) * (1 + 2 * margin)
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    left = int(max(0, cx - side / 2))
    top = int(max(0, cy - side / 2))
    right = int(min(width, cx + side / 2))
    bottom = int(min(height, cy + side / 2))
    region = image[top:bottom, left:right]
    if region.size == 0:
        region = image
    pil = Image.fromarray(np.ascontiguousarray(region))
    pil.thumbnail((CROP_SIDE, CROP_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)
