"""The organisation's audit log for its auditors (scope `audit`): entries, signed export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, field_serializer

from facesearch.api.deps import DbSession, DeploymentDep, Principal, require
from facesearch.api.ids import (
    ApiKeyIdOut,
    AuditCursor,
    AuditEntryId,
    AuditEntryIdOut,
    Details,
    OrganisationIdOut,
    UserIdOut,
    encode_target,
)
from facesearch.api.schemas import Page
from facesearch.security import audit
from facesearch.security.roles import Scope

router = APIRouter(tags=["audit"])

Auditor = Annotated[Principal, require(Scope.AUDIT)]


class EntryOut(BaseModel):
    id: AuditEntryIdOut
    ts: str
    org_id: OrganisationIdOut | None
    actor_user_id: UserIdOut | None
    actor_key_id: ApiKeyIdOut | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: Details
    prev_hash: str
    entry_hash: str

    @field_serializer("target_id")
    def _target(self, target_id: str | None) -> str | None:
        return encode_target(self.target_type, target_id)


class EntryList(Page):
    items: list[EntryOut]


class PublicKeyOut(BaseModel):
    algorithm: str
    public_key: str
    fingerprint: str


@router.get(
    "/api/v1/audit/entries",
    response_model=EntryList,
    summary="The organisation's audit entries, oldest first",
)
def get_entries(
    db: DbSession,
    principal: Auditor,
    after_id: AuditCursor | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=80)] = None,
) -> dict[str, Any]:
    return audit.org_entries(db, principal, after_id=after_id or 0, limit=limit, action=action)


@router.get(
    "/api/v1/audit/entries/{entry_id}",
    response_model=EntryOut,
    summary="One audit entry of the organisation",
)
def get_entry(entry_id: AuditEntryId, db: DbSession, principal: Auditor) -> dict[str, Any]:
    return audit.org_entry(db, principal, entry_id)


@router.get(
    "/api/v1/audit/public-key",
    response_model=PublicKeyOut,
    summary="The deployment's audit-export signing key (Ed25519)",
)
def get_public_key(dep: DeploymentDep, principal: Auditor) -> dict[str, Any]:
    pub = audit.public_key_b64(dep.keys)
    return {
        "algorithm": "Ed25519",
        "public_key": pub,
        "fingerprint": audit.public_key_fingerprint(pub),
    }


@router.get(
    "/api/v1/audit/export",
    summary="A signed JSON Lines export of the organisation's audit entries (the export is "
    "itself audited)",
    response_class=Response,
    responses={200: {"content": {"application/jsonl": {}}}},
)
def get_export(dep: DeploymentDep, db: DbSession, principal: Auditor) -> Response:
    name, data = audit.org_export(db, principal, dep.keys, dep.settings.home)
    return Response(
        content=data,
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
