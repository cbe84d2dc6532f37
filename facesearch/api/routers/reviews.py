"""Two-person review of results: POST /api/v1/results/{id}/reviews (scope `review`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from facesearch.api.deps import CurrentPrincipal, DbSession, Principal, require
from facesearch.api.routers._common import Id, need_any, service_errors
from facesearch.search.review import decide, result_view, review_queue

router = APIRouter(tags=["reviews"])


class ReviewIn(BaseModel):
    decision: Literal["confirm", "reject"]
    note: str = Field(default="", max_length=2000)


@router.post("/api/v1/results/{result_id}/reviews",
             summary="Confirm or reject a result (two different reviewers confirm)")
def post_review(
    result_id: Id,
    body: ReviewIn,
    db: DbSession,
    principal: Annotated[Principal, require("review")],
) -> dict[str, Any]:
    with service_errors():
        return decide(db, principal, result_id, body.decision, body.note)


@router.get("/api/v1/results/{result_id}", summary="A result with its status and reviews")
def get_result(result_id: Id, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    need_any(principal, "search", "review", "audit")
    return result_view(db, principal, result_id)


@router.get("/api/v1/reviews/queue", summary="Leads this reviewer may still decide on")
def get_queue(
    db: DbSession,
    principal: Annotated[Principal, require("review")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    items = review_queue(db, principal, limit=limit)
    return {"total": len(items), "items": items}
