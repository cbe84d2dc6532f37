"""The search engine: 1:N search and 1:1 verification on an opened deployment.

Results are leads, never identifications: every candidate carries its similarity score, the
model's threshold, its quality and where the face was found. The engine checks no tenancy and
writes no record; `search.casework` does both around it for the API, the CLI is the operator's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from facesearch import similarity
from facesearch.deployment import Deployment
from facesearch.errors import InvalidRequest
from facesearch.index.base import Hit
from facesearch.store.gallery import Collection, Face, SourceFile
from facesearch.vision.decode import DecodedImage, DecodeLimits, decode_image
from facesearch.vision.model import FaceModel, RGBImage
from facesearch.vision.pipeline import AnalysedFace, analyse, embed_faces
from facesearch.vision.registry import expected_false_matches

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
    model_id: str
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
class ModelUsed:
    """A model the search ran, its threshold and the collections searched with it."""

    model_id: str
    threshold: float
    collection_ids: list[int]
    #: Faces of this model in the searched collections.
    gallery_faces: int = 0
    #: Unrelated faces a search of someone absent is expected to raise at or above the threshold
    #: in effect (the one asked for, else the model's), from the model's measured false-match
    #: rate (docs/decisions/0008); None when the model has no measured rate.
    expected_false_candidates: float | None = None


@dataclass
class EngineResult:
    #: The first model used (the deployment's default when it was among them) and its threshold.
    model_id: str
    threshold: float
    collections: list[str]
    faces: list[ProbeFace]
    models: list[ModelUsed] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeDetection:
    """The faces of a probe as a search would number them, without searching."""

    width: int
    height: int
    faces: list[ProbeFace]


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


def _iou(a: list[int], b: list[int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _probe_for(
    faces: list[ProbeFace], face: AnalysedFace, taken: set[int], decoded: DecodedImage
) -> ProbeFace:
    """The probe face another model already found at this place, or a new one; `taken` holds
    the probe faces this model has already filled. Boxes are on the original image."""
    box = decoded.to_original(face.detection.box.as_list())
    for probe in faces:
        if probe.index not in taken and _iou(probe.box, box) >= 0.5:
            taken.add(probe.index)
            return probe
    probe = ProbeFace(len(faces), box, face.quality.as_dict())
    faces.append(probe)
    taken.add(probe.index)
    return probe


@dataclass(frozen=True)
class _Row:
    """What a candidate shows of its face and file: the columns only, not the rows (a face row
    carries its sealed embedding and JSON columns nothing here reads)."""

    left: int
    top: int
    right: int
    bottom: int
    frame_time: float | None
    quality: float
    low_quality: bool
    source: str
    source_kind: str
    media_url: str | None
    ingested_at: datetime


def _candidate(hit: Hit, row: _Row, model: FaceModel, name: str) -> Candidate:
    return Candidate(
        rank=0,
        face_id=hit.face_id,
        score=round(hit.score, 6),
        above_threshold=hit.score >= model.default_threshold,
        model_id=model.model_id,
        collection_id=hit.collection_id,
        collection=name or str(hit.collection_id),
        source=row.source,
        source_kind=row.source_kind,
        media_url=row.media_url,
        frame_time=row.frame_time,
        box=[row.left, row.top, row.right, row.bottom],
        quality=round(row.quality, 4),
        low_quality=row.low_quality,
        ingested_at=row.ingested_at.isoformat(),
    )


class SearchEngine:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.limits = DecodeLimits.of(dep.settings)

    def probe_faces(
        self, pixels: RGBImage, model: FaceModel
    ) -> tuple[list[AnalysedFace], np.ndarray]:
        settings = self.dep.settings
        faces = analyse(
            model,
            pixels,
            min_face_size=settings.min_face_size,
            thorough=settings.probe_detection == "thorough",
        )
        return faces, embed_faces(model, faces, settings.embed_batch_size)

    def _collections(self, ids: list[int]) -> dict[int, tuple[str, str]]:
        """(name, model id) of each requested collection that exists, in one query."""
        default = self.dep.default_model_id
        with self.dep.db.session() as s:
            rows = s.execute(
                select(Collection.id, Collection.name, Collection.model_id).where(
                    Collection.id.in_(ids)
                )
            ).all()
        return {int(cid): (name, mid or default) for cid, name, mid in rows}

    def _by_model(
        self, ids: list[int], known: dict[int, tuple[str, str]] | None = None
    ) -> dict[str, list[int]]:
        """The requested collections grouped by their model, the default model first."""
        default = self.dep.default_model_id
        known = self._collections(ids) if known is None else known
        groups: dict[str, list[int]] = {}
        for cid in ids:
            if cid in known:
                groups.setdefault(known[cid][1], []).append(cid)
        order = sorted(groups, key=lambda m: (m != default, m))
        return {m: groups[m] for m in order} or {default: []}

    def detect(self, image: bytes, *, collection_ids: list[int]) -> ProbeDetection:
        """The probe's faces, numbered exactly as `search` numbers them over the same
        collections (each collection's model detects; boxes overlapping by IoU >= 0.5 are one
        face), with their boxes on the original image and their quality. Nothing is embedded
        or searched."""
        decoded = decode_image(image, self.limits)
        settings = self.dep.settings
        found: list[ProbeFace] = []
        for model_id in self._by_model(list(collection_ids)):
            model = self.dep.model_for(model_id)
            faces = analyse(
                model,
                decoded.pixels,
                min_face_size=settings.min_face_size,
                thorough=settings.probe_detection == "thorough",
            )
            taken: set[int] = set()
            for face in faces:
                _probe_for(found, face, taken, decoded)
        return ProbeDetection(decoded.original_width, decoded.original_height, found)

    def search(
        self,
        image: bytes,
        *,
        collection_ids: list[int],
        top_k: int = 10,
        threshold: float | None = None,
    ) -> EngineResult:
        """Candidates for every face of the probe in the given collections (by id).

        Each collection is searched with its own model: the probe is analysed once per model
        (detection, alignment, embedding), and the faces that different models find at the same
        place (boxes overlapping by IoU >= 0.5) are one probe face. Within a probe face the
        candidates of several models are ordered by how far each score lies above its own
        model's threshold; `threshold`, when given, applies to the raw scores."""
        check_limits(top_k, threshold)
        ids = list(collection_ids)
        decoded = decode_image(image, self.limits)
        pixels = decoded.pixels
        known = self._collections(ids)
        names = {cid: name for cid, (name, _) in known.items()}
        groups = self._by_model(ids, known)
        result: EngineResult | None = None
        for model_id, cids in groups.items():
            model = self.dep.model_for(model_id)
            faces, vectors = self.probe_faces(pixels, model)
            if result is None:
                result = EngineResult(
                    model.model_id, model.default_threshold, [names[i] for i in ids], []
                )
            index = self.dep.index_for(model_id)
            size = sum(index.count(cid) for cid in cids)
            effective = model.default_threshold if threshold is None else threshold
            expected = expected_false_matches(model.model_id, effective, size)
            result.models.append(
                ModelUsed(
                    model.model_id,
                    model.default_threshold,
                    cids,
                    size,
                    None if expected is None else float(f"{expected:.4g}"),
                )
            )
            hits = index.search(vectors, top_k, cids) if faces else []
            rows = self._faces({h.face_id for per in hits for h in per})
            taken: set[int] = set()
            for face, per_face in zip(faces, hits, strict=True):
                probe = _probe_for(result.faces, face, taken, decoded)
                for hit in per_face:
                    if threshold is not None and hit.score < threshold:
                        continue
                    row = rows.get(hit.face_id)
                    if row is None:  # deleted since the index was loaded
                        continue
                    probe.candidates.append(
                        _candidate(hit, row, model, names.get(hit.collection_id, ""))
                    )
        assert result is not None
        for probe in result.faces:
            margin = {m.model_id: m.threshold for m in result.models}
            probe.candidates.sort(key=lambda c: (-(c.score - margin[c.model_id]), c.face_id))
            del probe.candidates[top_k:]
            for rank, cand in enumerate(probe.candidates, start=1):
                cand.rank = rank
        return result

    def _faces(self, face_ids: set[int]) -> dict[int, _Row]:
        if not face_ids:
            return {}
        with self.dep.db.session() as s:
            rows = s.execute(
                select(
                    Face.id,
                    Face.left,
                    Face.top,
                    Face.right,
                    Face.bottom,
                    Face.frame_time,
                    Face.quality,
                    Face.low_quality,
                    SourceFile.source,
                    SourceFile.source_kind,
                    SourceFile.media_url,
                    SourceFile.ingested_at,
                )
                .join(SourceFile, Face.file_id == SourceFile.id)
                .where(Face.id.in_(face_ids))
            ).all()
        return {
            int(r.id): _Row(
                r.left,
                r.top,
                r.right,
                r.bottom,
                r.frame_time,
                r.quality,
                r.low_quality,
                r.source,
                r.source_kind,
                r.media_url,
                r.ingested_at,
            )
            for r in rows
        }

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
    images = []
    for label, data in (("A", image_a), ("B", image_b)):
        decoded = decode_image(data, limits)
        faces = analyse(model, decoded.pixels, min_face_size=min_face_size)
        if not faces:
            raise InvalidRequest(f"no face found in image {label}")
        analysed.append(faces)
        images.append(decoded)
    faces_a, faces_b = analysed
    box_a = images[0].to_original(faces_a[0].detection.box.as_list())
    box_b = images[1].to_original(faces_b[0].detection.box.as_list())
    vectors = embed_faces(model, [faces_a[0], faces_b[0]])
    score = similarity.score(vectors[0], vectors[1])
    limit = model.default_threshold if threshold is None else threshold
    return VerifyResult(
        same_person=score >= limit,
        score=round(score, 6),
        threshold=limit,
        model_id=model.model_id,
        face_a={"box": box_a, "quality": faces_a[0].quality.as_dict()},
        face_b={"box": box_b, "quality": faces_b[0].quality.as_dict()},
        faces_in_a=len(faces_a),
        faces_in_b=len(faces_b),
    )
