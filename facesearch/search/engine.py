"""The search engine: 1:N search and 1:1 verification on an opened deployment.

Results are leads, never identifications: every candidate carries its similarity score, the
model's threshold, its quality and where the face was found. The engine checks no tenancy and
writes no record; `search.casework` does both around it for the API, the CLI is the operator's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from facesearch import similarity
from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest
from facesearch.store.gallery import Collection, Face, SourceFile
from facesearch.vision.decode import DecodeLimits, decode_image
from facesearch.vision.model import FaceModel
from facesearch.vision.pipeline import AnalysedFace, analyse, embed_faces

#: Most candidates per probe face, everywhere (API, CLI, client).
MAX_TOP_K = 100


def check_limits(top_k: int, threshold: float | None) -> None:
    """The one rule for how many candidates and which threshold a search may ask for."""
    if isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequest(f"between 1 and {MAX_TOP_K}", field="top_k")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidRequest("a similarity score between 0 and 1", field="threshold")


@dataclass
class Candidate:
    rank: int
    face_id: int
    score: float
    above_threshold: bool
    collection_id: int
    collection: str
    source: str
    source_kind: str
    media_url: str | None
    frame_time: float | None
    box: list[int]
    quality: float
    low_quality: bool
    ingested_at: str


@dataclass
class ProbeFace:
    index: int
    box: list[int]
    quality: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class EngineResult:
    model_id: str
    threshold: float
    collections: list[str]
    faces: list[ProbeFace]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyResult:
    same_person: bool
    score: float
    threshold: float
    model_id: str
    face_a: dict[str, Any]
    face_b: dict[str, Any]
    faces_in_a: int
    faces_in_b: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchEngine:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        s = dep.settings
        self.limits = DecodeLimits(s.max_file_bytes, s.max_image_pixels, s.max_image_side)

    def probe_faces(self, image: bytes) -> tuple[list[AnalysedFace], np.ndarray]:
        pixels = decode_image(image, self.limits).pixels
        model = self.dep.model
        faces = analyse(model, pixels, min_face_size=self.dep.settings.min_face_size)
        return faces, embed_faces(model, faces, self.dep.settings.embed_batch_size)

    def search(
        self,
        image: bytes,
        *,
        collection_ids: list[int],
        top_k: int = 10,
        threshold: float | None = None,
    ) -> EngineResult:
        """Candidates for every face of the probe in the given collections (by id)."""
        check_limits(top_k, threshold)
        ids = list(collection_ids)
        model = self.dep.model
        faces, vectors = self.probe_faces(image)
        names = self._collection_names(ids)
        result = EngineResult(model.model_id, model.default_threshold, [names[i] for i in ids], [])
        if not faces:
            return result
        hits = self.dep.index.search(vectors, top_k, ids)
        face_ids = {h.face_id for per in hits for h in per}
        rows = self._faces(face_ids)
        for i, (face, per_face) in enumerate(zip(faces, hits, strict=True)):
            probe = ProbeFace(i, face.detection.box.as_list(), face.quality.as_dict())
            for hit in per_face:
                if threshold is not None and hit.score < threshold:
                    continue
                row = rows.get(hit.face_id)
                if row is None:  # deleted since the index was loaded
                    continue
                face_row, file_row = row
                probe.candidates.append(
                    Candidate(
                        rank=len(probe.candidates) + 1,
                        face_id=face_row.id,
                        score=round(hit.score, 6),
                        above_threshold=hit.score >= model.default_threshold,
                        collection_id=hit.collection_id,
                        collection=names.get(hit.collection_id, str(hit.collection_id)),
                        source=file_row.source,
                        source_kind=file_row.source_kind,
                        media_url=file_row.media_url,
                        frame_time=face_row.frame_time,
                        box=face_row.box,
                        quality=round(face_row.quality, 4),
                        low_quality=face_row.low_quality,
                        ingested_at=file_row.ingested_at.isoformat(),
                    )
                )
            result.faces.append(probe)
        return result

    def _collection_names(self, ids: list[int]) -> dict[int, str]:
        with self.dep.db.session() as s:
            rows = s.execute(select(Collection.id, Collection.name).where(Collection.id.in_(ids)))
            return {int(cid): name for cid, name in rows}

    def _faces(self, face_ids: set[int]) -> dict[int, tuple[Face, SourceFile]]:
        if not face_ids:
            return {}
        with self.dep.db.session() as s:
            rows = s.execute(
                select(Face, SourceFile)
                .join(SourceFile, Face.file_id == SourceFile.id)
                .where(Face.id.in_(face_ids))
            ).all()
            return {face.id: (face, file) for face, file in rows}

    def verify(
        self, image_a: bytes, image_b: bytes, threshold: float | None = None
    ) -> VerifyResult:
        return verify_images(
            self.dep.model,
            image_a,
            image_b,
            threshold=threshold,
            limits=self.limits,
            min_face_size=self.dep.settings.min_face_size,
        )


def verify_images(
    model: FaceModel,
    image_a: bytes,
    image_b: bytes,
    *,
    threshold: float | None = None,
    limits: DecodeLimits | None = None,
    min_face_size: int = 60,
) -> VerifyResult:
    """1:1: the largest face of each image, compared. Needs no data directory."""
    analysed = []
    for label, data in (("A", image_a), ("B", image_b)):
        faces = analyse(model, decode_image(data, limits).pixels, min_face_size=min_face_size)
        if not faces:
            raise InvalidRequest(f"no face found in image {label}")
        analysed.append(faces)
    faces_a, faces_b = analysed
    vectors = embed_faces(model, [faces_a[0], faces_b[0]])
    score = similarity.score(vectors[0], vectors[1])
    limit = model.default_threshold if threshold is None else threshold
    return VerifyResult(
        same_person=score >= limit,
        score=round(score, 6),
        threshold=limit,
        model_id=model.model_id,
        face_a={"box": faces_a[0].detection.box.as_list(), "quality": faces_a[0].quality.as_dict()},
        face_b={"box": faces_b[0].detection.box.as_list(), "quality": faces_b[0].quality.as_dict()},
        faces_in_a=len(faces_a),
        faces_in_b=len(faces_b),
    )
