"""POST /api/v1/searches: an accountable probe search (case number and purpose required); the
audit record is committed before the results are returned."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    DbSession,
    DeploymentDep,
    Principal,
    enforce_rate_limit,
    require,
)
from facesearch.api.ids import (
    AuditEntryIdOut,
    CaseIdOut,
    CollectionIdOut,
    CropUrl,
    FaceIdOut,
    ResultIdOut,
    SearchId,
    SearchIdOut,
    Source,
    decode_list,
)
from facesearch.api.schemas import SearchWithResults
from facesearch.errors import PayloadTooLarge
from facesearch.search import casework
from facesearch.search.engine import MAX_TOP_K
from facesearch.security.roles import Scope

router = APIRouter(tags=["searches"])

Investigator = Annotated[Principal, require(Scope.SEARCH)]


class CandidateOut(BaseModel):
    rank: int
    face_id: FaceIdOut
    score: float = Field(description="similarity, 0 to 1 (higher is more similar)")
    above_threshold: bool = Field(description="the score clears its model's threshold")
    model_id: str
    collection_id: CollectionIdOut
    collection: str
    source: Source
    source_kind: str
    media_url: str | None
    frame_time: float | None
    box: list[int]
    quality: float
    low_quality: bool
    ingested_at: str
    result_id: ResultIdOut
    status: str
    crop_url: CropUrl


class ProbeFaceOut(BaseModel):
    index: int
    box: list[int]
    quality: dict[str, Any]
    candidates: list[CandidateOut]


class CollectionRef(BaseModel):
    id: CollectionIdOut
    name: str


class ModelUsed(BaseModel):
    model_id: str
    threshold: float = Field(description="the model's 1:1 same-person threshold")
    collection_ids: list[CollectionIdOut]
    gallery_faces: int = Field(description="faces of this model in the searched collections")
    expected_false_candidates: float | None = Field(
        description="unrelated faces a search of someone absent is expected to raise at or "
        "above the threshold in effect, from the model's measured false-match rate (null when "
        "not measured); see docs/decisions/0008"
    )


class SearchOut(BaseModel):
    search_id: SearchIdOut
    case_id: CaseIdOut
    case_number: str
    purpose: str
    created_at: str
    audit_entry_id: AuditEntryIdOut
    model_id: str
    threshold: float
    collections: list[CollectionRef]
    faces: list[ProbeFaceOut]
    models: list[ModelUsed] = Field(
        description="each collection is searched with its own model; candidates of several "
        "models are ordered by how far each score lies above its model's threshold"
    )
    notice: str


def parse_collections(raw: list[str] | None) -> list[int]:
    """Collection ids as repeated fields and/or comma-separated lists; empty = all searchable.
    An id that does not decode is answered like an unknown collection."""
    return decode_list("collection", raw)


@router.post(
    "/api/v1/searches",
    response_model=SearchOut,
    summary="Search a probe image (recorded, for a case)",
)
def create_search(
    request: Request,
    dep: DeploymentDep,
    db: DbSession,
    principal: Investigator,
    probe: Annotated[UploadFile, File(description="the probe image")],
    case_number: Annotated[str, Form(max_length=200)],
    purpose: Annotated[str, Form(max_length=2000)],
    collections: Annotated[
        list[str] | None,
        Form(
            description="collection ids to search (repeated or comma-separated); default: every "
            "collection the organisation may search"
        ),
    ] = None,
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    face: Annotated[
        int | None,
        Form(
            ge=0,
            lt=casework.MAX_PROBE_FACES,
            description="search only this face of the probe (its index, as "
            "POST /api/v1/searches/probe-faces numbers them); default: every face",
        ),
    ] = None,
) -> dict[str, Any]:
    enforce_rate_limit(request, "search:account", str(principal.user_id))
    enforce_rate_limit(request, "search:address", principal.ip or "?")
    data = probe.file.read(dep.settings.max_file_bytes + 1)
    if len(data) > dep.settings.max_file_bytes:
        raise PayloadTooLarge("the probe image is too large")
    outcome = casework.run_search(
        dep,
        db,
        principal,
        data,
        case_number=case_number,
        purpose=purpose,
        collection_ids=parse_collections(collections),
        top_k=top_k,
        threshold=threshold,
        face_index=face,
    )
    return outcome.as_dict()


class ProbeFaceBox(BaseModel):
    index: int = Field(description="the face's index, for the `face` field of a search")
    box: list[int] = Field(description="x1, y1, x2, y2 on the original image (after EXIF)")
    quality: dict[str, Any]


class ProbeFacesOut(BaseModel):
    width: int
    height: int
    faces: list[ProbeFaceBox]


@router.post(
    "/api/v1/searches/probe-faces",
    response_model=ProbeFacesOut,
    summary="The faces of a probe image, boxed, without searching (recorded; nothing kept)",
)
def examine_probe(
    request: Request,
    dep: DeploymentDep,
    db: DbSession,
    principal: Investigator,
    probe: Annotated[UploadFile, File(description="the probe image")],
    collections: Annotated[
        list[str] | None,
        Form(description="the collections the search will cover (their models detect)"),
    ] = None,
) -> dict[str, Any]:
    enforce_rate_limit(request, "search:account", str(principal.user_id))
    enforce_rate_limit(request, "search:address", principal.ip or "?")
    data = probe.file.read(dep.settings.max_file_bytes + 1)
    if len(data) > dep.settings.max_file_bytes:
        raise PayloadTooLarge("the probe image is too large")
    return casework.examine_probe(
        dep, db, principal, data, collection_ids=parse_collections(collections)
    )


class SearchDetail(SearchWithResults):
    model_thresholds: dict[str, float] = Field(
        default_factory=dict, description="each model the search used, with its threshold"
    )


@router.get(
    "/api/v1/searches/{search_id}",
    response_model=SearchDetail,
    summary="A search of the organisation, with results",
)
def get_search(
    search_id: SearchId, dep: DeploymentDep, db: DbSession, principal: Investigator
) -> dict[str, Any]:
    return casework.get_search(db, principal, search_id, dep)
