"""Ingest over the API: upload images into a collection (scope `ingest`), start a server-side
folder job (organisation administrators, below the organisation's drop folder), follow progress."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, DeploymentDep, Principal, require
from facesearch.api.ids import CollectionId, CollectionIdOut, JobId, JobIdOut, RunSummary, Source
from facesearch.api.schemas import Page
from facesearch.errors import PayloadTooLarge
from facesearch.ingest import jobs as service
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["ingest"])

Ingestor = Annotated[Principal, require(Scope.INGEST)]


class FolderJobIn(BaseModel):
    folder: str = Field(
        default=".",
        max_length=1000,
        description="a folder below the organisation's drop folder on the server "
        "(<home>/imports/org<id>/)",
    )


class ReembedIn(BaseModel):
    model: Literal["sface", "dlib-onnx", "dlib"] = Field(
        default="sface", description="the model to move the collection to"
    )


class JobOut(BaseModel):
    id: JobIdOut
    kind: str = Field(description="upload, folder or reembed")
    status: str = Field(description="queued, running, done or failed")
    collection_id: CollectionIdOut | None
    files_total: int
    files_done: int
    faces: int
    summary: RunSummary
    error: str | None
    created_at: str
    finished_at: str | None


class RejectedFileOut(BaseModel):
    path: Source
    reason: str


class JobEvent(JobOut):
    """The data of a job's server-sent event: the job and its rates so far."""

    files_per_s: float | None = None
    faces_per_s: float | None = None
    rejected_files: list[RejectedFileOut] = Field(default_factory=list)


def _event_data(data: dict[str, Any]) -> dict[str, Any]:
    return JobEvent.model_validate(data).model_dump(mode="json")


class JobList(Page):
    items: list[JobOut]


@router.post(
    "/api/v1/collections/{collection_id}/uploads",
    status_code=202,
    response_model=JobOut,
    summary="Upload images into a collection (ingested in the background)",
)
def post_upload(
    collection_id: CollectionId,
    dep: DeploymentDep,
    db: DbSession,
    principal: Ingestor,
    files: Annotated[list[UploadFile], File(description="image files")],
) -> dict[str, Any]:
    uploads: list[service.UploadFile] = []
    limit = dep.settings.max_file_bytes
    for f in files:
        data = f.file.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"{f.filename or 'a file'} is over {limit} bytes")
        uploads.append(service.UploadFile(f.filename or "", data))
    return service.start_upload(dep, db, principal, collection_id, uploads)


@router.post(
    "/api/v1/collections/{collection_id}/folder-jobs",
    status_code=202,
    response_model=JobOut,
    summary="Ingest a folder on the server (organisation administrators)",
)
def post_folder_job(
    collection_id: CollectionId,
    body: FolderJobIn,
    dep: DeploymentDep,
    db: DbSession,
    principal: Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})],
) -> dict[str, Any]:
    return service.start_folder(dep, db, principal, collection_id, body.folder)


@router.post(
    "/api/v1/collections/{collection_id}/reembed",
    status_code=202,
    response_model=JobOut,
    summary="Move a collection to another face model, from its stored images (organisation "
    "administrators)",
)
def post_reembed(
    collection_id: CollectionId,
    body: ReembedIn,
    dep: DeploymentDep,
    db: DbSession,
    principal: Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})],
) -> dict[str, Any]:
    return service.start_reembed(dep, db, principal, collection_id, body.model)


@router.get("/api/v1/jobs", response_model=JobList, summary="The organisation's ingest jobs")
def get_jobs(
    db: DbSession,
    principal: Ingestor,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    return service.list_jobs(db, principal, limit=limit)


@router.get("/api/v1/jobs/{job_id}", response_model=JobOut, summary="An ingest job's progress")
def get_job(job_id: JobId, db: DbSession, principal: Ingestor) -> dict[str, Any]:
    return service.get_job(db, principal, job_id)


@router.get(
    "/api/v1/jobs/{job_id}/events",
    summary="An ingest job's live progress as server-sent events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events (JSON: the job, files/s, faces/s, rejected files "
            "with their reasons) whenever the job changes, then one `end` event with the final "
            "job; a stream lasts at most a few minutes (EventSource reconnects)",
        }
    },
)
def get_job_events(
    job_id: JobId, dep: DeploymentDep, db: DbSession, principal: Ingestor
) -> StreamingResponse:
    return StreamingResponse(
        service.job_events(dep, db, principal, job_id, _event_data),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
