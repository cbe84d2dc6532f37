"""The organisation's audit log for its auditors (scope `audit`): entries, signed export."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from facesearch.api.deps import MAX_ID, DbSession, DeploymentDep, Id, Principal, require
from facesearch.api.schemas import Page
from facesearch.security import audit
from facesearch.security.roles import Scope

router = APIRouter(tags=["audit"])

Auditor = Annotated[Principal, require(Scope.AUDIT)]


class EntryOut(BaseModel):
    id: int
    ts: str
    org_id: int | None
    actor_user_id: int | None
    actor_key_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


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
    after_id: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=80)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="the acting user")] = None,
    case: Annotated[
        str | None,
        Query(
            max_length=80, description="a case id or case number: its entries and those naming it"
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="entries at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="entries before this time")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    newest_first: bool = False,
) -> dict[str, Any]:
    return audit.org_entries(
        db,
        principal,
        after_id=after_id,
        limit=limit,
        action=action,
        user_id=user_id,
        case=case,
        since=since,
        until=until,
        before_id=before_id,
        newest_first=newest_first,
    )


class ChainStatusOut(BaseModel):
    ok: bool
    entries: int
    checkpoints: int
    anchored_length: int
    problem: str | None
    first_bad_id: int | None
    checked_at: datetime


@router.get(
    "/api/v1/audit/chain",
    response_model=ChainStatusOut,
    summary="Verify the deployment's audit chain now (links, MACs, signed checkpoints, "
    "append-only triggers); the check is audited",
)
def get_chain_status(dep: DeploymentDep, db: DbSession, principal: Auditor) -> dict[str, Any]:
    return audit.org_chain_status(db, principal, dep.keys, dep.anchor_dir)


class UserSeries(BaseModel):
    user_id: int
    counts: list[int]


class Person(BaseModel):
    user_id: int
    email: str
    display_name: str


class ActivityOut(BaseModel):
    weeks: list[date]
    searches: list[UserSeries]
    months: list[date]
    confirmations: list[int]
    rejections: list[int]
    people: list[Person]


@router.get(
    "/api/v1/audit/activity",
    response_model=ActivityOut,
    summary="Searches per user per week and review decisions per month, from the audit log "
    "(the read is audited)",
)
def get_activity(
    db: DbSession,
    principal: Auditor,
    weeks: Annotated[int, Query(ge=1, le=104)] = 12,
    months: Annotated[int, Query(ge=1, le=36)] = 12,
) -> dict[str, Any]:
    return audit.org_activity(db, principal, weeks=weeks, months=months)


@router.get(
    "/api/v1/audit/entries/{entry_id}",
    response_model=EntryOut,
    summary="One audit entry of the organisation",
)
def get_entry(entry_id: Id, db: DbSession, principal: Auditor) -> dict[str, Any]:
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
