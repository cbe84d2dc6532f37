"""Administration: organisations (the platform administrator's), invitations and the users of an
organisation (its administrators'). Each function takes the caller, checks what it may see
through `tenancy`, writes the audit record and commits.

The client list is the platform administrator's alone: nothing here shows one organisation
another's name, users or counts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.errors import Conflict, Forbidden, InvalidRequest, NotFound
from facesearch.security import accounts, api_keys, audit, notices, self_service, sessions
from facesearch.security.actor import Actor, Principal
from facesearch.security.roles import ORG_ROLES, Role, validate_roles
from facesearch.security.tenancy import (
    org_api_key,
    org_of,
    org_user,
    organisation,
    visible_invitation,
)
from facesearch.store.accounts import ApiKey, Invitation, Organisation, User

#: A revocation by an administrator says why (kept in the audit record and told to the owner).
MIN_REASON, MAX_REASON = 3, 500


# -- organisations --------------------------------------------------------------------------------
def organisation_view(session: Session, org: Organisation) -> dict[str, Any]:
    users = session.scalar(select(func.count(User.id)).where(User.org_id == org.id)) or 0
    return {
        "id": org.id,
        "name": org.name,
        "disabled": org.disabled,
        "created_at": clock.aware(org.created_at),
        "users": int(users),
    }


def create_organisation(session: Session, actor: Actor, name: str) -> Organisation:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidRequest("an organisation needs a name of 1 to 200 characters")
    existing = session.scalar(
        select(Organisation.id).where(func.lower(Organisation.name) == name.lower())
    )
    if existing is not None:
        raise Conflict(f"an organisation named {name!r} already exists")
    org = Organisation(name=name)
    session.add(org)
    session.flush()
    audit.record_for(
        session,
        actor,
        "org.created",
        org_id=org.id,
        target_type="organisation",
        target_id=org.id,
        details={"name": name},
    )
    session.commit()
    return org


def list_organisations(session: Session) -> list[dict[str, Any]]:
    orgs = session.scalars(select(Organisation).order_by(Organisation.id))
    return [organisation_view(session, o) for o in orgs]


def get_organisation(session: Session, org_id: int) -> dict[str, Any]:
    return organisation_view(session, organisation(session, org_id))


# -- invitations ----------------------------------------------------------------------------------
def invitation_view(row: Invitation) -> dict[str, Any]:
    return {
        "id": row.id,
        "org_id": row.org_id,
        "email": row.email,
        "roles": list(row.roles),
        "created_at": clock.aware(row.created_at),
        "expires_at": clock.aware(row.expires_at),
        "state": accounts.invitation_state(row),
    }


def invite(
    session: Session,
    principal: Principal,
    *,
    email: str,
    roles: list[str],
    org_id: int | None,
    hours: int,
) -> accounts.NewInvitation:
    """An organisation administrator invites into its own organisation (any organisation role);
    the platform administrator invites organisation administrators into a named one."""
    if principal.is_platform_admin:
        if org_id is None:
            raise InvalidRequest("name the organisation (org_id) to invite into")
        if list(dict.fromkeys(roles)) != [Role.ORG_ADMIN]:
            raise Forbidden("the platform administrator invites organisation administrators only")
        organisation(session, org_id)
        if _has_admin(session, org_id):
            # platform administration and tenant membership are kept apart: the platform
            # invites an organisation's first administrator, who then invites everyone else
            raise Conflict(
                "this organisation already has an administrator; its administrators invite"
            )
        target = org_id
    else:
        own = org_of(principal)
        if org_id is not None and org_id != own:
            raise NotFound("no such organisation")
        target = own
    new = accounts.create_invitation(
        session, principal, org_id=target, email=email, roles=roles, hours=hours
    )
    session.commit()
    return new


def _has_admin(session: Session, org_id: int) -> bool:
    users = session.scalars(select(User).where(User.org_id == org_id, User.disabled.is_(False)))
    return any(Role.ORG_ADMIN in (u.roles or []) for u in users)


def list_invitations(session: Session, principal: Principal) -> list[dict[str, Any]]:
    query = select(Invitation).order_by(Invitation.id)
    if principal.is_platform_admin:
        query = query.where(Invitation.created_by == principal.user_id)
    else:
        query = query.where(Invitation.org_id == org_of(principal))
    return [invitation_view(r) for r in session.scalars(query)]


def revoke_invitation(session: Session, principal: Principal, invitation_id: int) -> dict[str, Any]:
    row = visible_invitation(session, principal, invitation_id)
    accounts.revoke_invitation(session, principal, row)
    session.commit()
    return invitation_view(row)


# -- users of an organisation ---------------------------------------------------------------------
def user_view(session: Session, user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "mfa_enrolled": accounts.has_second_factor(session, user),
        "locked": accounts.locked_until(user) is not None,
        "created_at": clock.aware(user.created_at),
        "last_login_at": clock.aware_or_none(user.last_login_at),
    }


def list_users(session: Session, actor: Actor) -> list[dict[str, Any]]:
    rows = session.scalars(select(User).where(User.org_id == org_of(actor)).order_by(User.id))
    return [user_view(session, u) for u in rows]


def get_user(session: Session, actor: Actor, user_id: int) -> dict[str, Any]:
    return user_view(session, org_user(session, org_of(actor), user_id))


def set_roles(session: Session, actor: Actor, user_id: int, roles: list[str]) -> dict[str, Any]:
    user = org_user(session, org_of(actor), user_id)
    try:
        wanted = validate_roles(roles, allowed=ORG_ROLES)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    if user.id == actor.user_id:
        # separation of duties: an administrator never grants itself investigator, reviewer
        # or auditor (nor removes its own administrator role); another administrator must
        raise Forbidden("you cannot change your own roles; another administrator must")
    before = list(user.roles)
    user.roles = wanted
    audit.record_for(
        session,
        actor,
        "user.roles_changed",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"before": before, "after": wanted},
    )
    session.commit()
    return user_view(session, user)


def disable_user(session: Session, actor: Actor, user_id: int) -> dict[str, Any]:
    user = org_user(session, org_of(actor), user_id)
    if user.id == actor.user_id:
        raise Conflict("you cannot disable your own account")
    if not user.disabled:
        user.disabled = True
        revoked = sessions.revoke_all(session, user.id)
        audit.record_for(
            session,
            actor,
            "user.disabled",
            org_id=user.org_id,
            target_type="user",
            target_id=user.id,
            details={"sessions_revoked": revoked},
        )
        session.commit()
    return user_view(session, user)


# -- the API keys of an organisation's users ------------------------------------------------------
def org_key_view(row: ApiKey, owner: User) -> dict[str, Any]:
    """A key as its organisation's administrator sees it: never the secret (only its hash is
    stored), but whose it is."""
    return {
        **self_service.key_view(row),
        "owner_id": owner.id,
        "owner_email": owner.email,
        "owner_name": owner.display_name,
    }


def list_org_keys(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Every API key of the users of the administrator's organisation, newest first."""
    org_id = org_of(actor)
    rows = session.execute(
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.org_id == org_id, User.org_id == org_id)
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    ).all()
    return [org_key_view(key, owner) for key, owner in rows]


def revoke_org_key(session: Session, actor: Actor, key_id: int, reason: str) -> dict[str, Any]:
    """An administrator revokes a key of a user of its organisation, saying why: audited
    (`apikey.revoked`, with the reason and the owner), and the owner is told."""
    row, owner = org_api_key(session, org_of(actor), key_id)
    reason = " ".join((reason or "").split())
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise InvalidRequest(
            f"say why the key is revoked ({MIN_REASON} to {MAX_REASON} characters)"
        )
    if row.revoked_at is not None:
        raise Conflict("the key was already revoked")
    api_keys.revoke(session, row)
    audit.record_for(
        session,
        actor,
        "apikey.revoked",
        org_id=row.org_id,
        target_type="api_key",
        target_id=row.id,
        details={
            "by_administrator": True,
            "reason": reason,
            "owner_user_id": owner.id,
            "name": row.name,
            "prefix": row.prefix,
        },
    )
    if owner.id != actor.user_id:
        notices.notify(
            session,
            owner.id,
            "apikey.revoked",
            f"your API key {row.name!r} ({row.prefix}) was revoked by an administrator: {reason}",
            {"api_key_id": row.id, "prefix": row.prefix},
        )
    session.commit()
    return org_key_view(row, owner)
