"""Cases and the organisation's search history (auditors)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from facesearch.api.deps import CurrentPrincipal, DbSession, Principal, require
from facesearch.api.routers._common import MAX_ID, Id, need_any
from facesearch.search.casework import case_detail, list_cases, search_history
from facesearch.security.tenancy import org_of

router = APIRouter(tags=["cases"])


@router.get("/api/v1/cases", summary="The organisation's cases")
def get_cases(
    db: DbSession,
    principal: Annotated[Principal, require("search")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    return list_cases(db, org_of(principal), limit=limit, offset=offset)


@router.get("/api/v1/cases/{case_id}", summary="A case with its searches and results")
def get_case(case_id: Id, db: DbSession, principal: CurrentPrincipal) -> dict[str, Any]:
    """Investigators, reviewers and auditors of the organisation."""
    need_any(principal, "search", "review", "audit")
    return case_detail(db, org_of(principal), case_id)


@router.get("/api/v1/audit/searches", summary="The organisation's search history (auditors)")
def get_search_history(
    db: DbSession,
    principal: Annotated[Principal, require("audit")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    return search_history(db, org_of(principal), limit=limit, before_id=before_id)
