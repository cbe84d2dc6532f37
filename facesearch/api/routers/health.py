"""Liveness and readiness (public; they reveal nothing but up/down) and the system-use banner
(public: it is shown before anyone signs in)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from facesearch.api.deps import DeploymentDep

router = APIRouter(tags=["health"])


class StatusOut(BaseModel):
    status: str


@router.get("/api/v1/health", response_model=StatusOut)
def health() -> StatusOut:
    """The process answers."""
    return StatusOut(status="ok")


@router.get(
    "/api/v1/ready",
    response_model=StatusOut,
    responses={503: {"model": StatusOut, "description": "not ready"}},
)
def ready(dep: DeploymentDep) -> JSONResponse:
    """The database answers and the key ring is loaded."""
    try:
        with dep.db.session() as s:
            s.execute(text("SELECT 1"))
        ok = dep.keys is not None
    except Exception:
        ok = False
    if ok:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


class BannerOut(BaseModel):
    banner: str | None


@router.get("/api/v1/banner", response_model=BannerOut)
def banner(dep: DeploymentDep) -> BannerOut:
    """The system-use notice to show before sign-in (`system_use_banner`), or null."""
    return BannerOut(banner=dep.settings.system_use_banner or None)
