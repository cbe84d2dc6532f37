"""POST /api/v1/searches: an accountable probe search (case number and purpose required); the
audit record is committed before the results are returned."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status

from facesearch.api.deps import DbSession, DeploymentDep, Principal, enforce_rate_limit, require
from facesearch.api.routers._common import MAX_ID, Id, service_errors
from facesearch.search.casework import (
    MAX_TOP_K,
    InvalidRequest,
    case_detail,
    run_search,
    search_dict,
)
from facesearch.security.tenancy import org_of, org_search
from facesearch.store.casework import Case

router = APIRouter(tags=["searches"])

_IDS = re.compile(r"^\s*\d{1,10}(\s*,\s*\d{1,10})*\s*$")


def parse_collections(raw: list[str] | None) -> list[int]:
    """Collection ids as repeated fields and/or comma-separated lists; empty = all searchable."""
    ids: list[int] = []
    for part in raw or []:
        if not part.strip():
            continue
        if not _IDS.match(part):
            raise InvalidRequest("collections", "collection ids (integers), comma-separated")
        for token in part.split(","):
            value = int(token)
            if not 1 <= value <= MAX_ID:
                raise InvalidRequest("collections", "no such collection id")
            ids.append(value)
    return ids


@router.post("/api/v1/searches", summary="Search a probe image (recorded, for a case)")
def create_search(
    request: Request,
    dep: DeploymentDep,
    db: DbSession,
    principal: Annotated[Principal, require("search")],
    probe: Annotated[UploadFile, File(description="the probe image")],
    case_number: Annotated[str, Form(max_length=200)],
    purpose: Annotated[str, Form(max_length=2000)],
    collections: Annotated[list[str] | None, Form(
        description="collection ids to search (repeated or comma-separated); default: every "
        "collection the organisation may search")] = None,
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
) -> dict[str, Any]:
    enforce_rate_limit(request, "search:account", str(principal.user_id))
    enforce_rate_limit(request, "search:address", principal.ip or "?")
    data = probe.file.read(dep.settings.max_file_bytes + 1)
    if len(data) > dep.settings.max_file_bytes:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            detail="the probe image is too large")
    with service_errors():
        outcome = run_search(
            dep, db, principal, data, case_number=case_number, purpose=purpose,
            collection_ids=parse_collections(collections), top_k=top_k, threshold=threshold,
        )
    return outcome.as_dict()


@router.get("/api/v1/searches/{search_id}", summary="A search of the organisation, with results")
def get_search(
    search_id: Id,
    db: DbSession,
    principal: Annotated[Principal, require("search")],
) -> dict[str, Any]:
    org_id = org_of(principal)
    search = org_search(db, org_id, search_id)
    detail = case_detail(db, org_id, search.case_id)
    case = db.get(Case, search.case_id)
    for item in detail["search_list"]:
        if item["id"] == search.id:
            return dict(item)
    return search_dict(search, case)  # pragma: no cover - a search always lies in its case
