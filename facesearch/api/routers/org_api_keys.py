"""An organisation administrator oversees the API keys of its organisation's users: it lists
them (never a secret: only their hashes are stored) and revokes one, saying why. Keys of another
organisation do not exist here (404). Platform administrators hold no organisation's keys: they
manage organisations only (`security.roles`, ADR 0018)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from facesearch.api.deps import DbSession, Principal, require
from facesearch.api.ids import ApiKeyId, ApiKeyIdOut, UserIdOut
from facesearch.security import admin
from facesearch.security.roles import Role, Scope

router = APIRouter(tags=["users"])

OrgAdmin = Annotated[Principal, require(Scope.ADMIN, roles={Role.ORG_ADMIN})]


class OrgKeyOut(BaseModel):
    id: ApiKeyIdOut
    name: str
    prefix: str  # the public part of the key (`fsk_<prefix>_…`), never the secret
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool
    owner_id: UserIdOut
    owner_email: str
    owner_name: str


class RevokeBody(BaseModel):
    reason: str = Field(
        min_length=admin.MIN_REASON,
        max_length=admin.MAX_REASON,
        description="why the key is revoked: kept in the audit record and told to its owner",
    )


@router.get("/api/v1/api-keys", response_model=list[OrgKeyOut])
def list_keys(principal: OrgAdmin, s: DbSession) -> list[dict[str, Any]]:
    """Every API key of the users of your organisation (active, expired and revoked), newest
    first: name, scopes, owner, created, expires, last used."""
    return admin.list_org_keys(s, principal)


@router.post("/api/v1/api-keys/{key_id}/revoke", response_model=OrgKeyOut)
def revoke_key(
    key_id: ApiKeyId, body: RevokeBody, principal: OrgAdmin, s: DbSession
) -> dict[str, Any]:
    """Revoke a key of a user of your organisation (audited with the reason; the owner gets a
    notice). A key of another organisation answers 404, like one that does not exist."""
    return admin.revoke_org_key(s, principal, key_id, body.reason)
