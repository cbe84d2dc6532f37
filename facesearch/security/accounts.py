"""Account life cycle: bootstrap of the first platform administrator, invitations, sign-in with
lockout, the mandatory second factor, role changes and disabling. Every change is written to the
audit log in the same transaction as the change itself.

There is no self-registration: an account exists only because an invitation (or the bootstrap
enrolment link, an invitation without organisation) was accepted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from facesearch.crypto import Sealer
from facesearch.errors import FacesearchError
from facesearch.security import audit, clock, passwords, recovery, sessions, totp
from facesearch.security.roles import ORG_ROLES, validate_roles
from facesearch.store.accounts import Invitation, Organisation, User

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
INVITATION_HOURS = 72
MAX_INVITATION_HOURS = 24 * 14
BOOTSTRAP_HOURS = 24
GENERIC_SIGNIN_FAILURE = "wrong email or password"
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


class AccountError(FacesearchError):
    """A refused account operation; `status` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class SignInFailed(AccountError):
    status = 401


class AccountLocked(AccountError):
    status = 423

    def __init__(self, until: datetime) -> None:
        minutes = max(1, int((until - clock.now()).total_seconds() // 60) + 1)
        super().__init__(
            f"too many failed attempts: the account is locked for about {minutes} more "
            f"minute{'s' if minutes != 1 else ''}"
        )
        self.until = until


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL_RE.match(value) or len(value) > 320:
        raise AccountError("not a valid email address", 422)
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- lockout of names that have no account --------------------------------------------------------
class _GhostLockouts:
    """Failed sign-ins for emails without an account lock exactly like real ones, so the answer
    (401 then 423) never tells whether an account exists."""

    def __init__(self, max_entries: int = 50_000) -> None:
        self._data: dict[str, tuple[int, datetime | None]] = {}
        self._lock = threading.Lock()
        self._max = max_entries

    def locked_until(self, email: str) -> datetime | None:
        with self._lock:
            _, until = self._data.get(email, (0, None))
        return until if until is not None and until > clock.now() else None

    def fail(self, email: str) -> datetime | None:
        with self._lock:
            if len(self._data) >= self._max:
                self._data.clear()
            count, until = self._data.get(email, (0, None))
            if until is not None and until <= clock.now():
                count = 0
            count += 1
            if count >= MAX_FAILURES:
                until = clock.now() + LOCK_FOR
                self._data[email] = (0, until)
                return until
            self._data[email] = (count, None)
            return None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


GHOSTS = _GhostLockouts()


# -- sign-in --------------------------------------------------------------------------------------
def _active_org(session: Session, user: User) -> bool:
    if user.org_id is None:
        return True
    org = session.get(Organisation, user.org_id)
    return org is not None and not org.disabled


def _register_failure(session: Session, user: User, *, ip: str | None, action: str,
                      details: dict[str, Any]) -> datetime | None:
    """Count a failed password or second-factor attempt; locks at MAX_FAILURES. Returns the lock
    expiry when this failure locked the account."""
    user.failed_logins = (user.failed_logins or 0) + 1
    audit.record(session, action=action, actor_user_id=user.id, org_id=user.org_id,
                 target_type="user", target_id=user.id, ip=ip,
                 details={**details, "failures": user.failed_logins})
    if user.failed_logins >= MAX_FAILURES:
        until = clock.now() + LOCK_FOR
        user.locked_until = until
        user.failed_logins = 0
        sessions.revoke_all(session, user.id)
        audit.record(session, action="auth.locked", actor_user_id=user.id, org_id=user.org_id,
                     target_type="user", target_id=user.id, ip=ip,
                     details={"until": until.isoformat(), "minutes": LOCK_FOR.seconds // 60})
        return until
    return None


def locked_until(user: User) -> datetime | None:
    if user.locked_until is None:
        return None
    until = clock.aware(user.locked_until)
    return until if until > clock.now() else None


def sign_in(session: Session, email: str, password: str, *, ip: str | None) -> User:
    """Check a password. Raises SignInFailed (same message and similar work whether or not the
    account exists) or AccountLocked. The caller commits even when this raises, so that
    failures and lockouts are kept."""
    try:
        norm = normalise_email(email)
    except AccountError:
        passwords.burn_verify(password)
        raise SignInFailed(GENERIC_SIGNIN_FAILURE) from None
    user = session.scalar(select(User).where(User.email == norm))
    if user is None or user.disabled or not _active_org(session, user):
        passwords.burn_verify(password)
        until = GHOSTS.locked_until(norm)
        audit.record(session, action="auth.signin.failure", ip=ip,
                     details={"email": norm, "reason": "locked" if until else "unknown"})
        if until is not None:
            raise AccountLocked(until)
        until = GHOSTS.fail(norm)
        if until is not None:
            raise AccountLocked(until)
        raise SignInFailed(GENERIC_SIGNIN_FAILURE)
    until = locked_until(user)
    if until is not None:
        passwords.burn_verify(password)
        audit.record(session, action="auth.signin.failure", actor_user_id=user.id,
                     org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                     details={"reason": "locked"})
        raise AccountLocked(until)
    if not passwords.verify_password(user.password_hash, password):
        until = _register_failure(session, user, ip=ip, action="auth.signin.failure",
                                  details={"reason": "password"})
        if until is not None:
            raise AccountLocked(until)
        raise SignInFailed(GENERIC_SIGNIN_FAILURE)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    audit.record(session, action="auth.signin.success", actor_user_id=user.id,
                 org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                 details={"mfa_enrolled": user.totp_verified_at is not None})
    return user


# -- second factor --------------------------------------------------------------------------------
def _totp_aad(user: User) -> bytes:
    return f"facesearch/totp/{user.id}".encode()


def seal_totp_secret(sealer: Sealer, user: User, secret: str) -> bytes:
    return sealer.seal(secret.encode(), _totp_aad(user))


def open_totp_secret(sealer: Sealer, user: User) -> str | None:
    if user.totp_secret is None:
        return None
    return sealer.open(user.totp_secret, _totp_aad(user)).decode()


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def start_enrolment(session: Session, sealer: Sealer, user: User, *, ip: str | None,
                    issuer: str = totp.ISSUER) -> Enrolment:
    """A new TOTP secret for a user without a verified one (replaces an unfinished enrolment)."""
    if user.totp_verified_at is not None:
        raise AccountError("a second factor is already enrolled; verify a code instead", 409)
    secret = totp.new_secret()
    user.totp_secret = seal_totp_secret(sealer, user, secret)
    user.totp_last_step = None
    uri = totp.provisioning_uri(secret, user.email, issuer)
    audit.record(session, action="mfa.enrolment_started", actor_user_id=user.id,
                 org_id=user.org_id, target_type="user", target_id=user.id, ip=ip)
    return Enrolment(secret, uri, totp.qr_svg(uri))


@dataclass(frozen=True)
class MfaOutcome:
    ok: bool
    recovery_codes: list[str] | None = None  # only on first enrolment, shown once
    used_recovery_code: bool = False
    locked_until: datetime | None = None


def verify_second_factor(session: Session, sealer: Sealer, user: User, code: str, *,
                         ip: str | None) -> MfaOutcome:
    """Check a TOTP code (or, once enrolled, a recovery code). The first valid code completes
    enrolment and issues the ten recovery codes."""
    until = locked_until(user)
    if until is not None:
        raise AccountLocked(until)
    secret = open_totp_secret(sealer, user)
    if secret is None:
        raise AccountError("no second factor enrolled yet: start with /api/v1/auth/mfa/enrol",
                           409)
    enrolled = user.totp_verified_at is not None
    step = totp.match_step(secret, code, last_step=user.totp_last_step)
    if step is not None:
        user.totp_last_step = step
        user.failed_logins = 0
        if not enrolled:
            user.totp_verified_at = clock.now()
            codes = recovery.issue(session, user.id)
            audit.record(session, action="mfa.enrolled", actor_user_id=user.id,
                         org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                         details={"recovery_codes_issued": len(codes)})
            return MfaOutcome(True, recovery_codes=codes)
        audit.record(session, action="mfa.verified", actor_user_id=user.id, org_id=user.org_id,
                     target_type="user", target_id=user.id, ip=ip, details={"method": "totp"})
        return MfaOutcome(True)
    if enrolled and recovery.looks_like_recovery_code(code) and recovery.use(session, user.id,
                                                                            code):
        user.failed_logins = 0
        audit.record(session, action="mfa.recovery_code_used", actor_user_id=user.id,
                     org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                     details={"remaining": recovery.remaining(session, user.id)})
        return MfaOutcome(True, used_recovery_code=True)
    until = _register_failure(session, user, ip=ip, action="mfa.failure",
                              details={"enrolled": enrolled})
    return MfaOutcome(False, locked_until=until)


# -- organisations and invitations ----------------------------------------------------------------
def create_organisation(session: Session, name: str, *, actor_user_id: int | None,
                        ip: str | None = None) -> Organisation:
    name = name.strip()
    if not name or len(name) > 200:
        raise AccountError("an organisation needs a name of 1 to 200 characters", 422)
    existing = session.scalar(select(Organisation.id).where(
        func.lower(Organisation.name) == name.lower()))
    if existing is not None:
        raise AccountError(f"an organisation named {name!r} already exists", 409)
    org = Organisation(name=name)
    session.add(org)
    session.flush()
    audit.record(session, action="org.created", actor_user_id=actor_user_id, org_id=org.id,
                 target_type="organisation", target_id=org.id, ip=ip, details={"name": name})
    return org


@dataclass(frozen=True)
class NewInvitation:
    row: Invitation
    token: str  # shown once


def create_invitation(
    session: Session, *, org_id: int | None, email: str, roles: list[str],
    created_by: int | None, hours: int = INVITATION_HOURS, ip: str | None = None,
    action: str = "invitation.created",
) -> NewInvitation:
    if not 1 <= hours <= MAX_INVITATION_HOURS:
        raise AccountError(f"an invitation must expire within 1 to {MAX_INVITATION_HOURS} "
                           "hours", 422)
    norm = normalise_email(email)
    try:
        if org_id is None:
            wanted = validate_roles(roles, allowed=("platform_admin",))
        else:
            wanted = validate_roles(roles, allowed=ORG_ROLES)
    except ValueError as exc:
        raise AccountError(str(exc), 422) from exc
    if org_id is not None:
        org = session.get(Organisation, org_id)
        if org is None or org.disabled:
            raise AccountError(f"no organisation {org_id}", 404)
    token = secrets.token_urlsafe(32)
    now = clock.now()
    row = Invitation(org_id=org_id, email=norm, roles=wanted, token_hash=token_hash(token),
                     created_by=created_by, created_at=now, expires_at=now + timedelta(hours=hours))
    session.add(row)
    session.flush()
    audit.record(session, action=action, actor_user_id=created_by, org_id=org_id,
                 target_type="invitation", target_id=row.id, ip=ip,
                 details={"email": norm, "roles": wanted,
                          "expires_at": row.expires_at.isoformat()})
    return NewInvitation(row, token)


def revoke_invitation(session: Session, row: Invitation, *, actor_user_id: int | None,
                      ip: str | None = None) -> None:
    if row.used_at is not None:
        raise AccountError("the invitation was already used", 409)
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        audit.record(session, action="invitation.revoked", actor_user_id=actor_user_id,
                     org_id=row.org_id, target_type="invitation", target_id=row.id, ip=ip)


def invitation_state(row: Invitation) -> str:
    if row.used_at is not None:
        return "used"
    if row.revoked_at is not None:
        return "revoked"
    if clock.aware(row.expires_at) <= clock.now():
        return "expired"
    return "pending"


def accept_invitation(session: Session, token: str, password: str, *,
                      display_name: str = "", ip: str | None = None) -> User:
    """Create the invited account (single use: a second attempt, an expired or revoked
    invitation all fail with the same message)."""
    invalid = AccountError("this invitation link is invalid, used, revoked or expired", 410)
    if not token or len(token) > 200:
        raise invalid
    row = session.scalar(select(Invitation).where(Invitation.token_hash == token_hash(token)))
    if row is None or invitation_state(row) != "pending":
        raise invalid
    if row.org_id is not None:
        org = session.get(Organisation, row.org_id)
        if org is None or org.disabled:
            raise invalid
    try:
        passwords.check_policy(password, email=row.email)
    except passwords.PasswordRejected as exc:
        raise AccountError(str(exc), 422) from exc
    if session.scalar(select(User.id).where(User.email == row.email)) is not None:
        raise AccountError("an account with this email address already exists", 409)
    now = clock.now()
    claimed = session.execute(
        update(Invitation).where(Invitation.id == row.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    if not getattr(claimed, "rowcount", 0):
        raise invalid
    user = User(org_id=row.org_id, email=row.email, display_name=display_name.strip()[:200],
                password_hash=passwords.hash_password(password), roles=list(row.roles),
                created_at=now)
    session.add(user)
    session.flush()
    row.used_by = user.id
    row.used_at = now
    audit.record(session, action="invitation.used", actor_user_id=user.id, org_id=row.org_id,
                 target_type="invitation", target_id=row.id, ip=ip)
    audit.record(session, action="user.created", actor_user_id=user.id, org_id=row.org_id,
                 target_type="user", target_id=user.id, ip=ip,
                 details={"email": user.email, "roles": user.roles, "invitation": row.id})
    return user


def platform_admin_count(session: Session) -> int:
    users = session.scalars(select(User).where(User.org_id.is_(None))).all()
    return sum(1 for u in users if "platform_admin" in (u.roles or []) and not u.disabled)


def bootstrap(session: Session, email: str, *, hours: int = BOOTSTRAP_HOURS) -> NewInvitation:
    """The one-time enrolment link of the first platform administrator. Refused once a platform
    administrator exists (they invite everyone else); an unused earlier link is revoked."""
    if platform_admin_count(session) > 0:
        raise AccountError("a platform administrator already exists; the first administrator "
                           "invites everyone else", 409)
    pending = session.scalars(select(Invitation).where(
        Invitation.org_id.is_(None), Invitation.used_at.is_(None),
        Invitation.revoked_at.is_(None))).all()
    for old in pending:
        revoke_invitation(session, old, actor_user_id=None)
    return create_invitation(session, org_id=None, email=email, roles=["platform_admin"],
                             created_by=None, hours=hours, action="invitation.created")


# -- administration -------------------------------------------------------------------------------
def change_roles(session: Session, user: User, roles: list[str], *, actor_user_id: int,
                 ip: str | None = None) -> list[str]:
    try:
        wanted = validate_roles(roles, allowed=ORG_ROLES)
    except ValueError as exc:
        raise AccountError(str(exc), 422) from exc
    if user.id == actor_user_id and "org_admin" not in wanted:
        raise AccountError("you cannot remove your own administrator role", 409)
    before = list(user.roles)
    user.roles = wanted
    audit.record(session, action="user.roles_changed", actor_user_id=actor_user_id,
                 org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                 details={"before": before, "after": wanted})
    return wanted


def disable_user(session: Session, user: User, *, actor_user_id: int,
                 ip: str | None = None) -> None:
    if user.id == actor_user_id:
        raise AccountError("you cannot disable your own account", 409)
    if not user.disabled:
        user.disabled = True
        revoked = sessions.revoke_all(session, user.id)
        audit.record(session, action="user.disabled", actor_user_id=actor_user_id,
                     org_id=user.org_id, target_type="user", target_id=user.id, ip=ip,
                     details={"sessions_revoked": revoked})


def base_url(settings: Any) -> str:
    """Where people reach the service: settings.public_url, else the bind address."""
    if settings.public_url:
        return str(settings.public_url).rstrip("/")
    scheme = "https" if settings.tls_cert and settings.tls_key else "http"
    host = settings.host if ":" not in settings.host else f"[{settings.host}]"
    return f"{scheme}://{host}:{settings.port}"


def enrolment_link(settings: Any, token: str) -> str:
    """The link given to an invited person. The token travels in the fragment, which browsers
    never send to a server, so it cannot end up in access logs or proxies; the page posts it to
    /api/v1/invitations/accept."""
    return f"{base_url(settings)}/enrol#token={token}"
