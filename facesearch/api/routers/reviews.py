"""Two-person review of results: POST /api/v1/results/{id}/reviews (scope `review`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    CurrentPrincipal,
    DbSession,
    DeploymentDep,
    Principal,
    need_any,
    require,
)
from facesearch.api.ids import (
    CaseIdOut,
    CropUrl,
    FaceIdOut,
    ResultId,
    ResultIdOut,
    SearchIdOut,
    UserIdOut,
)
from facesearch.api.schemas import Page, ResultOut
from facesearch.search import review
from facesearch.security.roles import Scope

router = APIRouter(tags=["reviews"])

Reviewer = Annotated[Principal, require(Scope.REVIEW)]


class ReviewIn(BaseModel):
    decision: Literal["confirm", "reject"]
    note: str = Field(default="", max_length=review.NOTE_MAX)


class QueueItem(BaseModel):
    result_id: ResultIdOut
    search_id: SearchIdOut
    case_id: CaseIdOut
    case_number: str
    searched_by: UserIdOut | None
    searched_by_name: str | None = Field(
        default=None, description="display name or email of the searcher (your organisation's)"
    )
    face_id: FaceIdOut
    score: float
    rank: int
    status: str
    crop_url: CropUrl
    model_thresholds: dict[str, float] = Field(
        default_factory=dict, description="each model the lead's search used, with its threshold"
    )


class Queue(Page):
    items: list[QueueItem]


@router.post(
    "/api/v1/results/{result_id}/reviews",
    response_model=ResultOut,
    summary="Confirm or reject a result (two different reviewers confirm)",
)
def post_review(
    result_id: ResultId, body: ReviewIn, db: DbSession, principal: Reviewer
) -> dict[str, Any]:
    return review.decide(db, principal, result_id, body.decision, body.note)


@router.get(
    "/api/v1/results/{result_id}",
    response_model=ResultOut,
    summary="A result with its status and reviews",
)
def get_result(result_id: ResultId, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    need_any(principal, Scope.SEARCH, Scope.REVIEW, Scope.AUDIT)
    return review.result_view(db, principal, result_id)


@router.get(
    "/api/v1/reviews/queue",
    response_model=Queue,
    summary="Leads this reviewer may still decide on",
)
def get_queue(
    dep: DeploymentDep,
    db: DbSession,
    principal: Reviewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    return review.review_queue(db, principal, limit=limit, dep=dep)
