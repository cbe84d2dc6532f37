"""Ingest over the API: upload images into a collection (scope `ingest`), start a server-side
folder job (organisation administrators, below the organisation's drop folder), follow progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile, status
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, DeploymentDep, Principal, require
from facesearch.api.routers._common import Id, service_errors
from facesearch.ingest import jobs as service

router = APIRouter(tags=["ingest"])


class FolderJobIn(BaseModel):
    folder: str = Field(default=".", max_length=1000,
                        description="a folder below the organisation's drop folder on the "
                        "server (<home>/imports/org<id>/)")


@router.post("/api/v1/collections/{collection_id}/uploads", status_code=202,
             summary="Upload images into a collection (ingested in the background)")
def post_upload(
    collection_id: Id,
    dep: DeploymentDep,
    db: DbSession,
    principal: Annotated[Principal, require("ingest")],
    files: Annotated[list[UploadFile], File(description="image files")],
) -> dict[str, Any]:
    uploads: list[service.UploadFile] = []
    limit = dep.settings.max_file_bytes
    for f in files:
        data = f.file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                detail=f"{f.filename or 'a file'} is over {limit} bytes")
        uploads.append(service.UploadFile(f.filename or "", data))
    with service_errors():
        return service.start_upload(dep, db, principal, collection_id, uploads)


@router.post("/api/v1/collections/{collection_id}/folder-jobs", status_code=202,
             summary="Ingest a folder on the server (organisation administrators)")
def post_folder_job(
    collection_id: Id,
    body: FolderJobIn,
    dep: DeploymentDep,
    db: DbSession,
    principal: Annotated[Principal, require("admin", roles={"org_admin"})],
) -> dict[str, Any]:
    with service_errors():
        return service.start_folder(dep, db, principal, collection_id, body.folder)


@router.get("/api/v1/jobs", summary="The organisation's ingest jobs")
def get_jobs(
    db: DbSession,
    principal: Annotated[Principal, require("ingest")],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    return service.list_tasks(db, principal, limit=limit)


@router.get("/api/v1/jobs/{job_id}", summary="An ingest job's progress")
def get_job(job_id: Id, db: DbSession,
            principal: Annotated[Principal, require("ingest")]) -> dict[str, Any]:
    return service.get_task(db, principal, job_id)
