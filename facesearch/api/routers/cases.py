"""Cases and the organisation's search history (auditors)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    CurrentPrincipal,
    DbSession,
    DeploymentDep,
    Principal,
    need_any,
    require,
)
from facesearch.api.ids import MAX_ID, CaseId, CaseIdOut, SearchCursor, UserIdOut
from facesearch.api.schemas import PERSON_NAME, Page, SearchRecordOut, SearchWithResults
from facesearch.search import casework, report
from facesearch.security.roles import Scope

router = APIRouter(tags=["cases"])


class CaseOut(BaseModel):
    id: CaseIdOut
    number: str
    created_by: UserIdOut | None
    created_by_name: str | None = Field(default=None, description=PERSON_NAME)
    created_at: str
    searches: int


class CaseList(Page):
    items: list[CaseOut]


class SearchInCase(SearchWithResults):
    model_thresholds: dict[str, float] = Field(
        default_factory=dict, description="each model the search used, with its threshold"
    )


class CaseDetail(CaseOut):
    search_list: list[SearchInCase]


class HistoryItem(SearchRecordOut):
    results: int


class History(Page):
    items: list[HistoryItem]


@router.get("/api/v1/cases", response_model=CaseList, summary="The organisation's cases")
def get_cases(
    db: DbSession,
    principal: Annotated[Principal, require(Scope.SEARCH)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> dict[str, Any]:
    return casework.list_cases(db, principal, limit=limit, offset=offset)


@router.get(
    "/api/v1/cases/{case_id}",
    response_model=CaseDetail,
    summary="A case with its searches and results",
)
def get_case(
    case_id: CaseId, dep: DeploymentDep, db: DbSession, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Investigators, reviewers and auditors of the organisation."""
    need_any(principal, Scope.SEARCH, Scope.REVIEW, Scope.AUDIT)
    return casework.get_case(db, principal, case_id, dep)


@router.get(
    "/api/v1/cases/{case_id}/report.pdf",
    summary="A case report as a PDF (audited): searches, candidates, decisions",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def get_case_report(case_id: CaseId, db: DbSession, principal: CurrentPrincipal) -> Response:
    """Investigators, reviewers and auditors of the organisation."""
    need_any(principal, Scope.SEARCH, Scope.REVIEW, Scope.AUDIT)
    data = report.case_report_pdf(db, principal, case_id)
    return Response(
        content=data,
        media_type="application/pdf",
        headers={
            "Cache-Control": "no-store, private",
            "Content-Disposition": 'attachment; filename="case-report.pdf"',
        },
    )


@router.get(
    "/api/v1/audit/searches",
    response_model=History,
    summary="The organisation's search history (auditors)",
)
def get_search_history(
    db: DbSession,
    principal: Annotated[Principal, require(Scope.AUDIT)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: SearchCursor | None = None,
) -> dict[str, Any]:
    return casework.search_history(db, principal, limit=limit, before_id=before_id)
