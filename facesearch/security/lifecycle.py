"""The account lifecycle (ASVS 2.1, 2.5, 3.7; CJIS 5.5, 5.6): re-authentication, a person's own
password change, second-factor re-enrolment and recovery-code regeneration, and what an
organisation administrator does for a user who is stuck (a one-time password-reset link, an
unlock). Each function checks what it needs, writes the audit record and commits; a refused
attempt that must be remembered (a wrong password, a lockout) is committed before the error.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.crypto import Sealer
from facesearch.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    Locked,
    NotFound,
    Unauthenticated,
)
from facesearch.security import (
    accounts,
    api_keys,
    audit,
    notices,
    passwords,
    recovery,
    sessions,
    totp,
)
from facesearch.security.actor import Actor, Principal
from facesearch.security.roles import Role
from facesearch.security.tenancy import org_of, org_user
from facesearch.store.accounts import (
    ApiKey,
    Passkey,
    PasswordReset,
    RecoveryCode,
    User,
    UserSession,
)

RESET_HOURS = 24
MAX_RESET_HOURS = 72
WRONG_PASSWORD = "wrong password"  # noqa: S105 - a message, not a password


def _user(session: Session, principal: Principal) -> User:
    user = accounts.active_user(session, principal.user_id)
    if user is None:  # pragma: no cover - the principal was just loaded
        raise Unauthenticated("the session has expired or was ended; sign in again")
    return user


def _session_row(session: Session, principal: Principal) -> UserSession:
    row = session.get(UserSession, principal.session_id) if principal.session_id else None
    if row is None:  # pragma: no cover - routes ask for a session
        raise Unauthenticated("this needs a signed-in session")
    return row


def check_password(
    session: Session, user: User, password: str, *, ip: str | None, action: str
) -> None:
    """A wrong password counts towards the lockout like a wrong sign-in (committed first)."""
    until = accounts.locked_until(user)
    if until is not None:
        passwords.burn_verify(password)
        raise _locked(until)
    if not passwords.verify_password(user.password_hash, password):
        until = accounts.register_failure(
            session, user, ip=ip, action=action, details={"reason": "password"}
        )
        if until is not None:
            raise accounts.fail(session, _locked(until))
        raise accounts.fail(session, Unauthenticated(WRONG_PASSWORD))
    user.failed_logins = 0


def _locked(until: datetime) -> Locked:
    return Locked(until, clock.now())


# -- re-authentication ----------------------------------------------------------------------------
def reauthenticate(
    session: Session, sealer: Sealer, principal: Principal, password: str, code: str
) -> datetime:
    """Prove the password and the second factor again; the session is fresh until
    `reauth_minutes` from now. Returns the time recorded."""
    user = _user(session, principal)
    row = _session_row(session, principal)
    check_password(session, user, password, ip=principal.ip, action="auth.reauth.failure")
    accounts.verify_second_factor(session, sealer, user, code, ip=principal.ip)
    return record_reauth(session, principal, row, user)


def record_reauth(
    session: Session,
    principal: Principal,
    row: UserSession,
    user: User,
    details: dict[str, Any] | None = None,
) -> datetime:
    """The session is fresh from now (both factors were proven again): recorded, committed."""
    now = clock.now()
    row.reauth_at = now
    audit.record_for(
        session,
        principal,
        "auth.reauth",
        org_id=user.org_id,
        target_type="session",
        target_id=row.id,
        details=details,
    )
    session.commit()
    return now


# -- a person's own credentials -------------------------------------------------------------------
def change_password(
    session: Session, principal: Principal, current_password: str, new_password: str
) -> int:
    """Replace the password (the current one is required; the new one meets the policy and
    differs). Every other session of the user ends; returns how many."""
    user = _user(session, principal)
    check_password(
        session, user, current_password, ip=principal.ip, action="auth.password_change.failure"
    )
    if new_password == current_password:
        raise InvalidRequest("the new password must differ from the current one")
    try:
        passwords.check_policy(new_password, email=user.email)
    except passwords.PasswordRejected as exc:
        raise InvalidRequest(str(exc)) from exc
    user.password_hash = passwords.hash_password(new_password)
    ended = sessions.revoke_all(session, user.id, except_id=principal.session_id)
    audit.record_for(
        session,
        principal,
        "user.password_changed",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"other_sessions_ended": ended},
    )
    notices.notify(
        session,
        user.id,
        "password.changed",
        "your password was changed and your other sessions were ended",
        {"other_sessions_ended": ended},
    )
    session.commit()
    return ended


def start_reenrolment(
    session: Session, sealer: Sealer, principal: Principal, *, issuer: str = totp.ISSUER
) -> accounts.Enrolment:
    """A new TOTP secret, pending until a code of it is confirmed; the enrolled one keeps
    working meanwhile (a half-done re-enrolment cannot lock the person out). For an account
    enrolled with a passkey only, this adds an authenticator app beside it."""
    user = _user(session, principal)
    if not accounts.has_second_factor(session, user):
        raise Conflict("no second factor is enrolled yet: enrol at /api/v1/auth/mfa/enrol")
    secret = totp.new_secret()
    user.totp_pending_secret = accounts.seal_totp_secret(sealer, user, secret)
    uri = totp.provisioning_uri(secret, user.email, issuer)
    audit.record_for(
        session,
        principal,
        "mfa.reenrolment_started",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"adds_totp": user.totp_verified_at is None},
    )
    session.commit()
    return accounts.Enrolment(secret, uri, totp.qr_svg(uri))


def confirm_reenrolment(
    session: Session, sealer: Sealer, principal: Principal, code: str
) -> list[str]:
    """A code of the pending secret replaces the enrolled secret and issues ten new recovery
    codes (the old ones stop working). A wrong code counts as a second-factor failure."""
    user = _user(session, principal)
    if user.totp_pending_secret is None:
        raise Conflict("no re-enrolment in progress: start with /api/v1/me/mfa/enrol")
    secret = accounts.open_sealed_totp(sealer, user, user.totp_pending_secret)
    step = totp.match_step(secret, code)
    if step is None:
        until = accounts.register_failure(
            session, user, ip=principal.ip, action="mfa.failure", details={"reenrolment": True}
        )
        if until is not None:
            raise accounts.fail(session, _locked(until))
        raise accounts.fail(session, Unauthenticated("wrong code for the new second factor"))
    added = user.totp_verified_at is None  # a passkey-only account adds an authenticator app
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = None
    user.totp_last_step = step
    user.totp_verified_at = clock.now()
    user.mfa_failures = 0
    codes = recovery.issue(session, user.id)
    audit.record_for(
        session,
        principal,
        "mfa.totp_added" if added else "mfa.reenrolled",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"recovery_codes_issued": len(codes)},
    )
    session.commit()
    return codes


def regenerate_recovery_codes(session: Session, principal: Principal) -> list[str]:
    """Ten new recovery codes; every earlier one stops working."""
    user = _user(session, principal)
    if not accounts.has_second_factor(session, user):
        raise Conflict("no second factor is enrolled")
    codes = recovery.issue(session, user.id)
    audit.record_for(
        session,
        principal,
        "mfa.recovery_codes_regenerated",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"issued": len(codes)},
    )
    session.commit()
    return codes


# -- an administrator helps a user ----------------------------------------------------------------
@dataclass(frozen=True)
class NewReset:
    row: PasswordReset
    token: str  # shown once, to the administrator, who hands the link over


def reset_state(row: PasswordReset) -> str:
    return accounts.link_state(row)


def issue_reset(
    session: Session,
    principal: Principal,
    user_id: int,
    *,
    hours: int = RESET_HOURS,
    reset_second_factor: bool = False,
) -> NewReset:
    """A one-time, expiring link with which a user of the administrator's organisation sets a
    new password (an earlier unused link is revoked). The current password keeps working until
    the link is used; using it ends every session, so the second factor is verified again (or,
    with `reset_second_factor`, enrolled anew)."""
    if not 1 <= hours <= MAX_RESET_HOURS:
        raise InvalidRequest(f"a reset link must expire within 1 to {MAX_RESET_HOURS} hours")
    user = org_user(session, org_of(principal), user_id)
    if user.id == principal.user_id:
        raise Conflict("change your own password at /api/v1/me/password")
    now = clock.now()
    session.execute(
        update(PasswordReset)
        .where(
            PasswordReset.user_id == user.id,
            PasswordReset.used_at.is_(None),
            PasswordReset.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = secrets.token_urlsafe(32)
    row = PasswordReset(
        user_id=user.id,
        token_hash=accounts.token_hash(token),
        reset_second_factor=reset_second_factor,
        created_by=principal.user_id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    audit.record_for(
        session,
        principal,
        "user.password_reset_issued",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={
            "reset": row.id,
            "expires_at": row.expires_at.isoformat(),
            "reset_second_factor": reset_second_factor,
        },
    )
    session.commit()
    return NewReset(row, token)


def reset_link(settings: Any, token: str) -> str:
    """Like an enrolment link: the token travels in the fragment, never sent to a server."""
    return f"{accounts.base_url(settings)}/reset#token={token}"


def accept_reset(session: Session, token: str, password: str, *, ip: str | None) -> str:
    """Set a new password with a reset link (single use; an expired, revoked or used link, or a
    disabled account, all get the same answer). Clears lockouts, ends every session. Returns
    the account's email."""
    invalid = Gone("this reset link is invalid, used, revoked or expired")
    if not token or len(token) > 200:
        raise invalid
    row = session.scalar(
        select(PasswordReset).where(PasswordReset.token_hash == accounts.token_hash(token))
    )
    if row is None or reset_state(row) != "pending":
        raise invalid
    user = accounts.active_user(session, row.user_id)
    if user is None:
        raise invalid
    try:
        passwords.check_policy(password, email=user.email)
    except passwords.PasswordRejected as exc:
        raise InvalidRequest(str(exc)) from exc
    now = clock.now()
    claimed = session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == row.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    if not getattr(claimed, "rowcount", 0):
        raise invalid
    user.password_hash = passwords.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    if row.reset_second_factor:
        user.totp_secret = None
        user.totp_pending_secret = None
        user.totp_verified_at = None
        user.totp_last_step = None
        user.mfa_failures = 0
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        # every second factor goes: the account enrols one anew (TOTP or a passkey)
        passkeys_removed = session.execute(delete(Passkey).where(Passkey.user_id == user.id))
        removed = int(getattr(passkeys_removed, "rowcount", 0) or 0)
    else:
        removed = 0
    ended = sessions.revoke_all(session, user.id)
    audit.record(
        session,
        action="user.password_reset",
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={
            "reset": row.id,
            "sessions_ended": ended,
            "second_factor_cleared": row.reset_second_factor,
            "passkeys_removed": removed,
        },
    )
    notices.notify(
        session,
        user.id,
        "password.reset",
        "your password was reset with an administrator's link; every session was ended",
        {"second_factor_cleared": row.reset_second_factor},
    )
    session.commit()
    return user.email


def unlock(session: Session, principal: Principal, user_id: int) -> User:
    """An organisation administrator clears a user's lockout and failure counters (password
    and second factor)."""
    user = org_user(session, org_of(principal), user_id)
    if user.id == principal.user_id:
        raise Conflict("another administrator must unlock your account")
    return _unlock(session, principal, user)


def unlock_by_email(session: Session, actor: Actor, email: str) -> User:
    """The operator at the command line unlocks any account (platform administrators have no
    organisation administrator to do it)."""
    user = session.scalar(select(User).where(User.email == accounts.normalise_email(email)))
    if user is None:
        raise NotFound("no account with that email")
    return _unlock(session, actor, user)


def _unlock(session: Session, actor: Actor, user: User) -> User:
    was = accounts.locked_until(user)
    user.locked_until = None
    user.failed_logins = 0
    user.mfa_failures = 0
    audit.record_for(
        session,
        actor,
        "user.unlocked",
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        details={"was_locked_until": was.isoformat() if was else None},
    )
    session.commit()
    return user


# -- accounts unused for too long -----------------------------------------------------------------
def last_activity(session: Session, user: User) -> datetime:
    """The latest of: created, signed in, one of its API keys used."""
    times = [clock.aware(user.created_at)]
    if user.last_login_at is not None:
        times.append(clock.aware(user.last_login_at))
    used = session.scalars(
        select(ApiKey.last_used_at).where(
            ApiKey.user_id == user.id, ApiKey.last_used_at.is_not(None)
        )
    ).all()
    times.extend(clock.aware(t) for t in used if t is not None)
    return max(times)


def disable_inactive(session: Session, actor: Actor, days: int) -> list[int]:
    """Disable every enabled account unused for `days` (0: never), ending its sessions and
    revoking its keys; each is audited as `user.disabled_inactive`. The last enabled platform
    administrator is spared (nobody could re-invite anyone otherwise) and reported in the
    log. Returns the ids disabled."""
    if days <= 0:
        return []
    cutoff = clock.now() - timedelta(days=days)
    users = session.scalars(select(User).where(User.disabled.is_(False)).order_by(User.id)).all()
    stale = [u for u in users if last_activity(session, u) < cutoff]
    admins_left = accounts.platform_admin_count(session)
    disabled: list[int] = []
    for user in stale:
        is_platform_admin = user.org_id is None and Role.PLATFORM_ADMIN in (user.roles or [])
        if is_platform_admin and admins_left <= 1:
            audit.record_for(
                session,
                actor,
                "user.inactive_spared",
                org_id=None,
                target_type="user",
                target_id=user.id,
                details={"days": days, "reason": "last platform administrator"},
            )
            continue
        user.disabled = True
        if is_platform_admin:
            admins_left -= 1
        ended = sessions.revoke_all(session, user.id)
        keys = api_keys.revoke_all(session, user.id)
        audit.record_for(
            session,
            actor,
            "user.disabled_inactive",
            org_id=user.org_id,
            target_type="user",
            target_id=user.id,
            details={
                "days": days,
                "last_activity": last_activity(session, user).isoformat(),
                "sessions_ended": ended,
                "api_keys_revoked": keys,
            },
        )
        disabled.append(user.id)
    session.commit()
    return disabled
