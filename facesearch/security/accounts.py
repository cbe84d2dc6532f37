"""Authentication of people: sign-in with lockout, the mandatory second factor, sign-out,
accepting an invitation and the bootstrap of the first platform administrator. Every change is
written to the audit log in the same transaction as the change itself; a refusal that must be
remembered (a failed attempt, a lockout) is committed before the error is raised.

There is no self-registration: an account exists only because an invitation (or the bootstrap
enrolment link, an invitation without organisation) was accepted. Administration (organisations,
invitations, users) lives in `security.admin`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, exists, or_, select, update
from sqlalchemy.orm import Session

from facesearch import clock
from facesearch.crypto import KeyRing, Sealer
from facesearch.errors import Conflict, Gone, InvalidRequest, Locked, Unauthenticated
from facesearch.security import (
    api_keys,
    audit,
    notices,
    passwords,
    recovery,
    sessions,
    throttle,
    totp,
)
from facesearch.security.actor import Actor, EnrollingUser, SystemActor
from facesearch.security.roles import ORG_ROLES, Role, validate_roles
from facesearch.security.tenancy import live_organisation
from facesearch.store.accounts import Invitation, Organisation, Passkey, User, UserSession

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
#: Second-factor lockouts double with every five further failures, up to this long: a password
#: holder gets five guesses per lock period, ever fewer per day.
MAX_MFA_LOCK = timedelta(hours=24)
INVITATION_HOURS = 72
MAX_INVITATION_HOURS = 24 * 14
BOOTSTRAP_HOURS = 24
GENERIC_SIGNIN_FAILURE = "wrong email or password"
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL_RE.match(value) or len(value) > 320:
        raise InvalidRequest("not a valid email address")
    return value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- the second factor: one notion of "enrolled" ---------------------------------------------------
#: The kinds of second factor an account can have; either one alone makes it enrolled.
TOTP = "totp"
PASSKEY = "passkey"


def has_passkey(session: Session, user_id: int) -> bool:
    return session.scalar(select(Passkey.id).where(Passkey.user_id == user_id).limit(1)) is not None


def second_factors(session: Session, user: User) -> list[str]:
    """The account's verified second factors: "totp" (a confirmed authenticator app) and/or
    "passkey" (at least one registered passkey)."""
    found = [TOTP] if user.totp_verified_at is not None else []
    if has_passkey(session, user.id):
        found.append(PASSKEY)
    return found


def has_second_factor(session: Session, user: User) -> bool:
    """Whether the account is enrolled: a verified TOTP secret **or** at least one passkey.
    The one rule for every place that asks (sign-in, session completion, re-authentication,
    enrolment refusals, administration views, the doctor): see also `with_second_factor`."""
    return user.totp_verified_at is not None or has_passkey(session, user.id)


ALREADY_ENROLLED = (
    "this account already has a second factor: sign in with it, then add more under My account"
)


def lock_unenrolled(session: Session, user: User) -> None:
    """Before an account's first second factor is stored: lock its row (PostgreSQL
    `SELECT … FOR UPDATE`; SQLite serialises writers) and check again that it still has none,
    so two enrolments racing each other (the owner's and an intruder's with the same password)
    cannot both succeed. Call it before changing anything of the user in this transaction."""
    session.refresh(user, with_for_update=True)
    if has_second_factor(session, user):
        raise Conflict(ALREADY_ENROLLED)


def record_enrolment(
    session: Session,
    user: User,
    ip: str | None,
    action: str,
    method: str,
    reason: str | None = None,
) -> None:
    """An enrolment step of an account that has no second factor yet, on the record as the
    enrolling user (`mfa.enrolment_started`, `mfa.enrolment_refused`, ...)."""
    details: dict[str, str] = {"method": method}
    if reason is not None:
        details["reason"] = reason
    audit.record_for(
        session,
        EnrollingUser(user.id, user.org_id, ip),
        action,
        target_type="user",
        target_id=user.id,
        details=details,
    )


def refuse_if_enrolled(
    session: Session, user: User, ip: str | None, method: str, message: str
) -> None:
    """Enrolment by a password-only session is open only while the account has no second
    factor; a refusal is on the record (committed before the 409), since it is what a
    password holder trying to add a factor of their own would see."""
    if has_second_factor(session, user):
        record_enrolment(session, user, ip, "mfa.enrolment_refused", method, "already enrolled")
        raise fail(session, Conflict(message))


def with_second_factor() -> ColumnElement[bool]:
    """`has_second_factor` as a SQL condition on `User` (for lists and the doctor)."""
    return or_(User.totp_verified_at.is_not(None), exists().where(Passkey.user_id == User.id))


# -- sign-in --------------------------------------------------------------------------------------
def active_user(session: Session, user_id: int) -> User | None:
    """The user if the account and its organisation are both enabled, else None."""
    user = session.get(User, user_id)
    if user is None or user.disabled or not active_org(session, user):
        return None
    return user


def active_org(session: Session, user: User) -> bool:
    if user.org_id is None:
        return True
    org = session.get(Organisation, user.org_id)
    return org is not None and not org.disabled


def register_failure(
    session: Session, user: User, *, ip: str | None, action: str, details: dict[str, Any]
) -> datetime | None:
    """Count a failed password or second-factor attempt; locks at MAX_FAILURES. Returns the lock
    expiry when this failure locked the account.

    Password failures (`failed_logins`) reset on a correct password. Second-factor failures
    (`mfa_failures`) are counted apart and reset only by a correct second factor, so knowing
    the password does not buy fresh guesses; each further five double the lock."""
    mfa = action == "mfa.failure"
    if mfa:
        user.mfa_failures = (user.mfa_failures or 0) + 1
        failures = user.mfa_failures
    else:
        user.failed_logins = (user.failed_logins or 0) + 1
        failures = user.failed_logins
    audit.record(
        session,
        action=action,
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={**details, "failures": failures},
    )
    if failures % MAX_FAILURES:
        return None
    lock_for = LOCK_FOR
    if mfa:
        lock_for = min(LOCK_FOR * (2 ** (failures // MAX_FAILURES - 1)), MAX_MFA_LOCK)
    else:
        user.failed_logins = 0
    until = clock.now() + lock_for
    user.locked_until = until
    sessions.revoke_all(session, user.id)
    audit.record(
        session,
        action="auth.locked",
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={
            "until": until.isoformat(),
            "minutes": int(lock_for.total_seconds() // 60),
            "reason": "second factor" if mfa else "password",
        },
    )
    return until


def locked_until(user: User) -> datetime | None:
    if user.locked_until is None:
        return None
    until = clock.aware(user.locked_until)
    return until if until > clock.now() else None


def _locked(until: datetime) -> Locked:
    return Locked(until, clock.now())


def fail(session: Session, error: Exception) -> Exception:
    """Keep what a refused attempt changed (failure count, lockout, audit) and give the error
    back to raise: the caller's unit of work would otherwise roll it back."""
    session.commit()
    return error


def sign_in(session: Session, keys: KeyRing, email: str, password: str, *, ip: str | None) -> User:
    """Check a password. Raises Unauthenticated (same message and similar work whether or not
    the account exists) or Locked; both are committed first, so failures and lockouts are
    kept. Emails without an account are counted and locked in the database too
    (`security.throttle`), so a restart does not tell them apart from real ones."""
    try:
        norm = normalise_email(email)
    except InvalidRequest:
        passwords.burn_verify(password)
        raise Unauthenticated(GENERIC_SIGNIN_FAILURE) from None
    user = session.scalar(select(User).where(User.email == norm))
    if user is None or user.disabled or not active_org(session, user):
        passwords.burn_verify(password)
        until = throttle.ghost_locked_until(session, keys, norm)
        audit.record(
            session,
            action="auth.signin.failure",
            ip=ip,
            details={"email": norm, "reason": "locked" if until else "unknown"},
        )
        if until is not None:
            raise fail(session, _locked(until))
        until = throttle.ghost_fail(
            session, keys, norm, max_failures=MAX_FAILURES, lock_for=LOCK_FOR
        )
        if until is not None:
            raise fail(session, _locked(until))
        raise fail(session, Unauthenticated(GENERIC_SIGNIN_FAILURE))
    until = locked_until(user)
    if until is not None:
        passwords.burn_verify(password)
        audit.record(
            session,
            action="auth.signin.failure",
            actor_user_id=user.id,
            org_id=user.org_id,
            target_type="user",
            target_id=user.id,
            ip=ip,
            details={"reason": "locked"},
        )
        raise fail(session, _locked(until))
    if not passwords.verify_password(user.password_hash, password):
        until = register_failure(
            session, user, ip=ip, action="auth.signin.failure", details={"reason": "password"}
        )
        if until is not None:
            raise fail(session, _locked(until))
        raise fail(session, Unauthenticated(GENERIC_SIGNIN_FAILURE))
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    audit.record(
        session,
        action="auth.signin.success",
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={"mfa_enrolled": has_second_factor(session, user)},
    )
    return user


@dataclass(frozen=True)
class SignedIn:
    token: str  # the session cookie, never stored
    csrf_token: str
    mfa_enrolled: bool
    #: the second factors the account has ("totp", "passkey"): what the sign-in asks for next
    methods: list[str]


def open_session(
    session: Session,
    keys: KeyRing,
    email: str,
    password: str,
    policy: sessions.SessionPolicy,
    *,
    ip: str | None,
    user_agent: str | None,
) -> SignedIn:
    """Sign in with a password: a new session that can do nothing until the second factor is
    verified."""
    user = sign_in(session, keys, email, password, ip=ip)
    notices.signed_in(session, user.id, ip, user_agent)
    new = sessions.create(session, user.id, policy, ip=ip, user_agent=user_agent)
    methods = second_factors(session, user)
    session.commit()
    return SignedIn(new.token, new.csrf_token, bool(methods), methods)


@dataclass(frozen=True)
class Verified:
    token: str  # the rotated session cookie
    csrf_token: str
    recovery_codes: list[str] | None
    recovery_codes_remaining: int
    used_recovery_code: bool


def verify_session(
    session: Session, sealer: Sealer, row: UserSession, user: User, code: str, *, ip: str | None
) -> Verified:
    """Verify the second factor of a password-only session; the session's token is rotated, so
    a token seen before verification is worthless afterwards."""
    outcome = verify_second_factor(session, sealer, user, code, ip=ip)
    row.mfa_verified = True
    row.reauth_at = clock.now()  # password and second factor proved just now
    token, csrf = sessions.rotate(session, row)
    session.commit()
    return Verified(
        token,
        csrf,
        outcome.recovery_codes,
        recovery.remaining(session, user.id),
        outcome.used_recovery_code,
    )


def sign_out(session: Session, row: UserSession, user: User, *, ip: str | None) -> None:
    sessions.revoke(session, row)
    audit.record(
        session,
        action="session.signout",
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="session",
        target_id=row.id,
        ip=ip,
    )
    session.commit()


def sign_out_everywhere(session: Session, actor: Actor) -> int:
    """End every session of the actor's user and revoke its API keys; returns how many
    sessions."""
    assert actor.user_id is not None
    count = sessions.revoke_all(session, actor.user_id)
    keys = api_keys.revoke_all(session, actor.user_id)  # "everywhere" includes programs
    audit.record_for(
        session,
        actor,
        "session.signout_all",
        target_type="user",
        target_id=actor.user_id,
        details={"sessions": count, "api_keys_revoked": keys},
    )
    session.commit()
    return count


# -- second factor --------------------------------------------------------------------------------
def _totp_aad(user: User) -> bytes:
    return f"facesearch/totp/{user.id}".encode()


def seal_totp_secret(sealer: Sealer, user: User, secret: str) -> bytes:
    return sealer.seal(secret.encode(), _totp_aad(user))


def open_totp_secret(sealer: Sealer, user: User) -> str | None:
    if user.totp_secret is None:
        return None
    return open_sealed_totp(sealer, user, user.totp_secret)


def open_sealed_totp(sealer: Sealer, user: User, sealed: bytes) -> str:
    return sealer.open(sealed, _totp_aad(user)).decode()


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def start_enrolment(
    session: Session, sealer: Sealer, user: User, *, ip: str | None, issuer: str = totp.ISSUER
) -> Enrolment:
    """A new TOTP secret for an account without any second factor yet (replaces an unfinished
    enrolment). Once the account has one (TOTP or a passkey), a password-only session can add
    nothing: a second TOTP is added under My account, with both factors proven."""
    refuse_if_enrolled(
        session, user, ip, TOTP, "a second factor is already enrolled; verify it instead"
    )
    secret = totp.new_secret()
    user.totp_secret = seal_totp_secret(sealer, user, secret)
    user.totp_last_step = None
    uri = totp.provisioning_uri(secret, user.email, issuer)
    record_enrolment(session, user, ip, "mfa.enrolment_started", TOTP)
    session.commit()
    return Enrolment(secret, uri, totp.qr_svg(uri))


@dataclass(frozen=True)
class MfaOutcome:
    recovery_codes: list[str] | None = None  # only on first enrolment, shown once
    used_recovery_code: bool = False


def verify_second_factor(
    session: Session, sealer: Sealer, user: User, code: str, *, ip: str | None
) -> MfaOutcome:
    """Check a TOTP code (or, once enrolled by TOTP or a passkey, a recovery code). While the
    account has no second factor, the first valid code of its pending TOTP secret completes
    enrolment and issues the ten recovery codes. An unconfirmed TOTP secret of an account that
    has meanwhile enrolled a passkey is dead: its codes prove nothing. A wrong code raises
    Unauthenticated (or Locked when it was one too many), committed first."""
    until = locked_until(user)
    if until is not None:
        raise _locked(until)
    enrolled = has_second_factor(session, user)
    totp_enrolled = user.totp_verified_at is not None
    secret = open_totp_secret(sealer, user)
    if secret is None and not enrolled:
        raise Conflict("no second factor enrolled yet: start with /api/v1/auth/mfa/enrol")
    step = None
    if secret is not None and (totp_enrolled or not enrolled):
        step = totp.match_step(secret, code, last_step=user.totp_last_step)
    if step is not None:
        if not totp_enrolled:
            lock_unenrolled(session, user)
        user.totp_last_step = step
        user.mfa_failures = 0
        if not totp_enrolled:
            user.totp_verified_at = clock.now()
            codes = complete_enrolment(session, user, method=TOTP, ip=ip)
            return MfaOutcome(recovery_codes=codes)
        audit.record(
            session,
            action="mfa.verified",
            actor_user_id=user.id,
            org_id=user.org_id,
            target_type="user",
            target_id=user.id,
            ip=ip,
            details={"method": "totp"},
        )
        return MfaOutcome()
    if (
        enrolled
        and recovery.looks_like_recovery_code(code)
        and recovery.use(session, user.id, code)
    ):
        user.mfa_failures = 0
        audit.record(
            session,
            action="mfa.recovery_code_used",
            actor_user_id=user.id,
            org_id=user.org_id,
            target_type="user",
            target_id=user.id,
            ip=ip,
            details={"remaining": recovery.remaining(session, user.id)},
        )
        return MfaOutcome(used_recovery_code=True)
    until = register_failure(
        session, user, ip=ip, action="mfa.failure", details={"enrolled": enrolled}
    )
    if until is not None:
        raise fail(session, _locked(until))
    raise fail(session, Unauthenticated("wrong or already used code"))


def complete_enrolment(session: Session, user: User, *, method: str, ip: str | None) -> list[str]:
    """The account's first second factor (`method`: TOTP or a passkey) is in place: ten recovery
    codes (shown once, the way back from a lost device whichever the factor), audited."""
    if method == PASSKEY:
        # an authenticator secret started before and never confirmed must not become a way in
        user.totp_secret = None if user.totp_verified_at is None else user.totp_secret
    codes = recovery.issue(session, user.id)
    audit.record_for(
        session,
        EnrollingUser(user.id, user.org_id, ip),
        "mfa.enrolled",
        target_type="user",
        target_id=user.id,
        details={"method": method, "recovery_codes_issued": len(codes)},
    )
    return codes


# -- invitations: creating and accepting ----------------------------------------------------------
@dataclass(frozen=True)
class NewInvitation:
    row: Invitation
    token: str  # shown once


def create_invitation(
    session: Session,
    actor: Actor,
    *,
    org_id: int | None,
    email: str,
    roles: list[str],
    hours: int = INVITATION_HOURS,
) -> NewInvitation:
    """A single-use, expiring invitation (the caller has checked who may invite whom)."""
    if not 1 <= hours <= MAX_INVITATION_HOURS:
        raise InvalidRequest(f"an invitation must expire within 1 to {MAX_INVITATION_HOURS} hours")
    norm = normalise_email(email)
    try:
        if org_id is None:
            wanted = validate_roles(roles, allowed=(Role.PLATFORM_ADMIN,))
        else:
            wanted = validate_roles(roles, allowed=ORG_ROLES)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    if org_id is not None:
        live_organisation(session, org_id)
    token = secrets.token_urlsafe(32)
    now = clock.now()
    row = Invitation(
        org_id=org_id,
        email=norm,
        roles=wanted,
        token_hash=token_hash(token),
        created_by=actor.user_id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    audit.record_for(
        session,
        actor,
        "invitation.created",
        org_id=org_id,
        target_type="invitation",
        target_id=row.id,
        details={"email": norm, "roles": wanted, "expires_at": row.expires_at.isoformat()},
    )
    return NewInvitation(row, token)


def revoke_invitation(session: Session, actor: Actor, row: Invitation) -> None:
    if row.used_at is not None:
        raise Conflict("the invitation was already used")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        audit.record_for(
            session,
            actor,
            "invitation.revoked",
            org_id=row.org_id,
            target_type="invitation",
            target_id=row.id,
        )


class OneTimeLink(Protocol):
    """An invitation or a password reset: single use, revocable, expiring."""

    used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime


def link_state(row: OneTimeLink) -> str:
    """used, revoked, expired or pending."""
    if row.used_at is not None:
        return "used"
    if row.revoked_at is not None:
        return "revoked"
    if clock.aware(row.expires_at) <= clock.now():
        return "expired"
    return "pending"


def invitation_state(row: Invitation) -> str:
    return link_state(row)


def accept_invitation(
    session: Session, token: str, password: str, *, display_name: str = "", ip: str | None = None
) -> str:
    """Create the invited account (single use: a second attempt, an expired or revoked
    invitation all fail with the same message). Returns the invited email; an address that
    already has an account gets the same answer, and nothing is created."""
    invalid = Gone("this invitation link is invalid, used, revoked or expired")
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
        raise InvalidRequest(str(exc)) from exc
    existing = session.scalar(select(User.id).where(User.email == row.email))
    now = clock.now()
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == row.id, Invitation.used_at.is_(None))
        .values(used_at=now)
    )
    if not getattr(claimed, "rowcount", 0):
        raise invalid
    if existing is not None:
        # One answer whether or not the address has an account (elsewhere): the invitation is
        # used up, nothing is created or attached, and the record goes to the platform's part
        # of the log, not the inviting organisation's.
        audit.record(
            session,
            action="invitation.used",
            org_id=None,
            target_type="invitation",
            target_id=row.id,
            ip=ip,
            details={"existing_account": True, "invited_org_id": row.org_id},
        )
        session.commit()
        return row.email
    user = User(
        org_id=row.org_id,
        email=row.email,
        display_name=display_name.strip()[:200],
        password_hash=passwords.hash_password(password),
        roles=list(row.roles),
        created_at=now,
    )
    session.add(user)
    session.flush()
    row.used_by = user.id
    row.used_at = now
    audit.record(
        session,
        action="invitation.used",
        actor_user_id=user.id,
        org_id=row.org_id,
        target_type="invitation",
        target_id=row.id,
        ip=ip,
    )
    audit.record(
        session,
        action="user.created",
        actor_user_id=user.id,
        org_id=row.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={"email": user.email, "roles": user.roles, "invitation": row.id},
    )
    session.commit()
    return user.email


def platform_admin_count(session: Session) -> int:
    users = session.scalars(select(User).where(User.org_id.is_(None))).all()
    return sum(1 for u in users if Role.PLATFORM_ADMIN in (u.roles or []) and not u.disabled)


def bootstrap(session: Session, email: str, *, hours: int = BOOTSTRAP_HOURS) -> NewInvitation:
    """The one-time enrolment link of the first platform administrator. Refused once a platform
    administrator exists (they invite everyone else); an unused earlier link is revoked."""
    if platform_admin_count(session) > 0:
        raise Conflict(
            "a platform administrator already exists; the first administrator invites everyone else"
        )
    pending = session.scalars(
        select(Invitation).where(
            Invitation.org_id.is_(None),
            Invitation.used_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    ).all()
    nobody = SystemActor(ip=None)
    for old in pending:
        revoke_invitation(session, nobody, old)
    new = create_invitation(
        session, nobody, org_id=None, email=email, roles=[Role.PLATFORM_ADMIN], hours=hours
    )
    session.commit()
    return new


# -- links ----------------------------------------------------------------------------------------
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
