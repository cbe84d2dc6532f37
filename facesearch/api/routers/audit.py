"""The organisation's audit log for its auditors (scope `audit`): entries, signed export."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select

from facesearch.api.deps import DbSession, DeploymentDep, Principal, require
from facesearch.api.routers._common import MAX_ID, Id
from facesearch.errors import NotFoundError
from facesearch.security import audit
from facesearch.security.tenancy import org_of
from facesearch.store.casework import AuditEntry

router = APIRouter(tags=["audit"])

Auditor = Annotated[Principal, require("audit")]


@router.get("/api/v1/audit/entries", summary="The organisation's audit entries, oldest first")
def get_entries(
    db: DbSession,
    principal: Auditor,
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    org_id = org_of(principal)
    query = select(AuditEntry).where(AuditEntry.org_id == org_id, AuditEntry.id > after_id)
    count = select(func.count(AuditEntry.id)).where(AuditEntry.org_id == org_id)
    if action:
        query = query.where(AuditEntry.action == action)
        count = count.where(AuditEntry.action == action)
    rows = db.scalars(query.order_by(AuditEntry.id).limit(limit))
    return {"total": int(db.scalar(count) or 0), "items": [audit.as_dict(r) for r in rows]}


@router.get("/api/v1/audit/entries/{entry_id}", summary="One audit entry of the organisation")
def get_entry(entry_id: Id, db: DbSession, principal: Auditor) -> dict[str, Any]:
    row = db.get(AuditEntry, entry_id)
    if row is None or row.org_id is None or row.org_id != org_of(principal):
        raise NotFoundError(f"no audit entry {entry_id}")
    return audit.as_dict(row)


@router.get("/api/v1/audit/public-key",
            summary="The deployment's audit-export signing key (Ed25519)")
def get_public_key(dep: DeploymentDep, principal: Auditor) -> dict[str, Any]:
    pub = audit.public_key_b64(dep.keys)
    return {"algorithm": "Ed25519", "public_key": pub,
            "fingerprint": audit.public_key_fingerprint(pub)}


@router.get("/api/v1/audit/export", summary="A signed JSON Lines export of the organisation's "
            "audit entries (the export is itself audited)",
            response_class=Response, responses={200: {"content": {"application/jsonl": {}}}})
def get_export(dep: DeploymentDep, db: DbSession, principal: Auditor) -> Response:
    org_id = org_of(principal)
    with tempfile.TemporaryDirectory(dir=dep.settings.home) as tmp:
        out = Path(tmp) / f"audit-org{org_id}.jsonl"
        audit.export(db, out, org_id, keys=dep.keys, actor_user_id=principal.user_id,
                     actor_key_id=principal.api_key_id, ip=principal.ip)
        data = out.read_bytes()
    return Response(content=data, media_type="application/jsonl", headers={
        "Content-Disposition": f'attachment; filename="audit-org{org_id}.jsonl"'})
