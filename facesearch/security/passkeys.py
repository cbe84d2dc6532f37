"""Passkeys (WebAuthn) as a phishing-resistant second factor (ASVS 2.7/2.8, CJIS 5.6.2.2).

Registration: a fresh, MFA-verified session asks for creation options (or, at enrolment, the
password-only session of an account that has no second factor yet: the passkey is then its
first one, `enrol`), the browser runs
`navigator.credentials.create`, and the answer is verified here (challenge, origin, RP id, user
presence and verification) before the public key is stored. Authentication: a password-only
session asks for request options listing the user's passkeys, the browser runs
`navigator.credentials.get`, and a verified assertion satisfies the second factor exactly like
a TOTP code (the session token is rotated). Challenges are kept server-side, bound to the
session and purpose, expire after `CHALLENGE_TTL` and are spent on first use, success or not.

The RP id is the host name of `public_url` (else of the bind address; a loopback address
becomes `localhost`, because WebAuthn does not accept IP addresses), and the expected origin is
the service's own base URL, so an assertion made for a look-alike site is refused.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from facesearch import clock
from facesearch.crypto import KeyRing
from facesearch.errors import Conflict, InvalidRequest, Locked, Unauthenticated
from facesearch.security import accounts, audit, lifecycle, notices, recovery, sessions
from facesearch.security.actor import Actor, EnrollingUser, Principal
from facesearch.security.tenancy import own_passkey
from facesearch.store.accounts import Passkey, User, UserSession, WebAuthnChallenge

CHALLENGE_TTL = timedelta(minutes=5)
MAX_PASSKEYS = 10
RP_NAME = "facesearch"
_LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}


def relying_party(settings: Any) -> tuple[str, str]:
    """(RP id, expected origin) for this deployment."""
    parts = urlsplit(accounts.base_url(settings))
    host = (parts.hostname or "localhost").lower()
    if host in _LOOPBACK:
        port = f":{parts.port}" if parts.port else ""
        return "localhost", urlunsplit((parts.scheme, f"localhost{port}", "", "", ""))
    return host, urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def _new_challenge(session: Session, session_id: int, purpose: str) -> bytes:
    """A fresh challenge for the session; its spent and expired ones are dropped, so the table
    holds at most the live challenges of live ceremonies."""
    challenge = secrets.token_bytes(32)
    now = clock.now()
    session.execute(
        delete(WebAuthnChallenge).where(
            WebAuthnChallenge.session_id == session_id,
            or_(WebAuthnChallenge.used_at.is_not(None), WebAuthnChallenge.expires_at <= now),
        )
    )
    session.add(
        WebAuthnChallenge(
            session_id=session_id,
            purpose=purpose,
            challenge=challenge,
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
        )
    )
    session.flush()
    return challenge


def _spend_challenge(session: Session, session_id: int, purpose: str) -> bytes:
    """The session's newest live challenge of `purpose`, marked used (single use: committed
    as spent even when the answer then fails)."""
    row = session.scalar(
        select(WebAuthnChallenge)
        .where(
            WebAuthnChallenge.session_id == session_id,
            WebAuthnChallenge.purpose == purpose,
            WebAuthnChallenge.used_at.is_(None),
        )
        .order_by(WebAuthnChallenge.id.desc())
        .limit(1)
    )
    if row is None or clock.aware(row.expires_at) <= clock.now():
        raise Unauthenticated("no live passkey challenge: ask for new options and try again")
    row.used_at = clock.now()
    session.commit()
    return row.challenge


def _descriptors(session: Session, user_id: int) -> list[PublicKeyCredentialDescriptor]:
    ids = session.scalars(select(Passkey.credential_id).where(Passkey.user_id == user_id)).all()
    return [PublicKeyCredentialDescriptor(id=bytes(i)) for i in ids]


def _json(options: Any) -> dict[str, Any]:
    value = json.loads(options_to_json(options))
    assert isinstance(value, dict)
    return value


# -- registration (a fresh, verified session) -----------------------------------------------------
def user_handle(keys: KeyRing, user_id: int) -> bytes:
    """The WebAuthn user handle of an account: stable, and a keyed hash of the id, so the
    browser (and the authenticator) never learn the account's database id (ADR 0015)."""
    return bytes.fromhex(keys.blind_index("webauthn-user-handle", str(user_id)))[:16]


def registration_options(
    session: Session, settings: Any, principal: Principal, keys: KeyRing
) -> dict[str, Any]:
    """Creation options for another passkey of a signed-in (MFA-verified, fresh) person."""
    user = session.get(User, principal.user_id)
    assert user is not None and principal.session_id is not None
    return _creation_options(session, settings, keys, principal.session_id, user)


def enrolment_options(
    session: Session,
    settings: Any,
    keys: KeyRing,
    row: UserSession,
    user: User,
    *,
    ip: str | None = None,
) -> dict[str, Any]:
    """Creation options for the account's **first** second factor, asked for by its
    password-only session at enrolment (invitation or bootstrap link). Refused as soon as the
    account has a second factor (TOTP or a passkey): from then on a password alone (an
    enrolment link's password, say) adds nothing; more passkeys come from a verified, fresh
    session under My account."""
    _may_enrol(session, user, ip)
    accounts.record_enrolment(session, user, ip, "mfa.enrolment_started", accounts.PASSKEY)
    return _creation_options(session, settings, keys, row.id, user)


def _may_enrol(session: Session, user: User, ip: str | None) -> None:
    """Enrolment is open only while the account is not locked and has no second factor."""
    until = accounts.locked_until(user)
    if until is not None:
        raise Locked(until, clock.now())
    accounts.refuse_if_enrolled(session, user, ip, accounts.PASSKEY, accounts.ALREADY_ENROLLED)


def _creation_options(
    session: Session, settings: Any, keys: KeyRing, session_id: int, user: User
) -> dict[str, Any]:
    count = len(_descriptors(session, user.id))
    if count >= MAX_PASSKEYS:
        raise Conflict(f"at most {MAX_PASSKEYS} passkeys; remove one first")
    rp_id, _origin = relying_party(settings)
    challenge = _new_challenge(session, session_id, "register")
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.email,
        user_id=user_handle(keys, user.id),
        user_display_name=user.display_name or user.email,
        challenge=challenge,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(session, user.id),
    )
    session.commit()
    return _json(options)


def register(
    session: Session, settings: Any, principal: Principal, credential: dict[str, Any], name: str
) -> Passkey:
    """Another passkey of a signed-in person (the route asks for a fresh session)."""
    assert principal.session_id is not None
    user = session.get(User, principal.user_id)
    assert user is not None
    row = _register(session, settings, principal, principal.session_id, user, credential, name)
    session.commit()
    return row


def enrol(
    session: Session,
    settings: Any,
    row: UserSession,
    user: User,
    credential: dict[str, Any],
    name: str,
    *,
    ip: str | None,
) -> tuple[Passkey, accounts.Verified]:
    """The account's first second factor is this passkey: registered (for the session's own
    user only), ten recovery codes issued (shown once), and the password-only session becomes
    verified and fresh with a new token, as the first TOTP code does. Checked again after the
    ceremony: a second password-only session that asked for options before the account
    enrolled gets nothing."""
    _may_enrol(session, user, ip)
    actor = EnrollingUser(user.id, user.org_id, ip)
    key = _register(session, settings, actor, row.id, user, credential, name, first=True)
    codes = accounts.complete_enrolment(session, user, method=accounts.PASSKEY, ip=ip)
    user.mfa_failures = 0
    row.mfa_verified = True
    row.reauth_at = clock.now()
    token, csrf = sessions.rotate(session, row)
    session.commit()
    return key, accounts.Verified(token, csrf, codes, len(codes), False)


def _register(
    session: Session,
    settings: Any,
    actor: Actor,
    session_id: int,
    user: User,
    credential: dict[str, Any],
    name: str,
    *,
    first: bool = False,
) -> Passkey:
    """Verify a registration answer and store the passkey; with `first` (enrolment), only if
    the account still has no second factor once its row is locked."""
    name = (name or "").strip()[:200] or "passkey"
    challenge = _spend_challenge(session, session_id, "register")
    rp_id, origin = relying_party(settings)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"the passkey could not be verified: {exc}") from None
    if first:
        accounts.lock_unenrolled(session, user)
    if session.scalar(select(Passkey.id).where(Passkey.credential_id == verified.credential_id)):
        raise Conflict("this passkey is already registered")
    row = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    audit.record_for(
        session,
        actor,
        "mfa.passkey_registered",
        org_id=user.org_id,
        target_type="passkey",
        target_id=row.id,
        details={"name": name},
    )
    notices.notify(
        session,
        user.id,
        "passkey.registered",
        f"a passkey {name!r} was added to your account; if it was not you, remove it",
        {"passkey_id": row.id},
    )
    return row


def passkey_view(row: Passkey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": clock.aware(row.created_at),
        "last_used_at": clock.aware_or_none(row.last_used_at),
    }


def list_mine(session: Session, principal: Principal) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Passkey).where(Passkey.user_id == principal.user_id).order_by(Passkey.id)
    ).all()
    return [passkey_view(r) for r in rows]


def remove(session: Session, principal: Principal, passkey_id: int) -> None:
    """Remove one of your passkeys; refused when it is your only second factor (no TOTP, no
    other passkey): an account is never left without one."""
    row = own_passkey(session, principal, passkey_id)
    user = session.get(User, principal.user_id)
    others = session.scalar(
        select(Passkey.id).where(Passkey.user_id == row.user_id, Passkey.id != row.id).limit(1)
    )
    if others is None and (user is None or user.totp_verified_at is None):
        audit.record_for(
            session,
            principal,
            "mfa.passkey_remove_refused",
            org_id=user.org_id if user else None,
            target_type="passkey",
            target_id=passkey_id,
            details={"reason": "last second factor"},
        )
        session.commit()
        raise Conflict(
            "this passkey is your only second factor: add an authenticator app or another "
            "passkey first"
        )
    session.delete(row)
    audit.record_for(
        session,
        principal,
        "mfa.passkey_removed",
        org_id=user.org_id if user else None,
        target_type="passkey",
        target_id=passkey_id,
    )
    notices.notify(
        session, principal.user_id, "passkey.removed", f"the passkey {row.name!r} was removed"
    )
    session.commit()


# -- authentication (the second factor of a password-only session) --------------------------------
def authentication_options(
    session: Session, settings: Any, row: UserSession, user: User, *, purpose: str = "authenticate"
) -> dict[str, Any]:
    """Request options for the user's passkeys: `authenticate` (the second factor of a
    password-only session) or `reauth` (re-authentication of a verified one)."""
    until = accounts.locked_until(user)
    if until is not None:
        raise Locked(until, clock.now())
    allowed = _descriptors(session, user.id)
    if not allowed:
        raise Conflict("no passkey registered: use a TOTP code instead")
    rp_id, _origin = relying_party(settings)
    challenge = _new_challenge(session, row.id, purpose)
    options = generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    session.commit()
    return _json(options)


def _check_assertion(
    session: Session,
    settings: Any,
    row: UserSession,
    user: User,
    credential: dict[str, Any],
    *,
    purpose: str,
    ip: str | None,
) -> Passkey:
    """The passkey that made a valid assertion for the session's live challenge of `purpose`;
    anything else counts as a second-factor failure (committed) and raises."""
    until = accounts.locked_until(user)
    if until is not None:
        raise Locked(until, clock.now())
    challenge = _spend_challenge(session, row.id, purpose)
    rp_id, origin = relying_party(settings)
    raw_id = credential.get("rawId") or credential.get("id")
    key = None
    if isinstance(raw_id, str):
        try:
            wanted = base64url_to_bytes(raw_id)
        except (ValueError, TypeError):
            wanted = b""
        key = session.scalar(
            select(Passkey).where(Passkey.user_id == user.id, Passkey.credential_id == wanted)
        )
    verified = None
    if key is not None:
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=key.public_key,
                credential_current_sign_count=key.sign_count,
                require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError):
            verified = None
    if key is None or verified is None:
        until = accounts.register_failure(
            session, user, ip=ip, action="mfa.failure", details={"method": "passkey"}
        )
        if until is not None:
            raise accounts.fail(session, Locked(until, clock.now()))
        raise accounts.fail(session, Unauthenticated("the passkey could not be verified"))
    key.sign_count = verified.new_sign_count
    key.last_used_at = clock.now()
    user.mfa_failures = 0
    return key


def verify(
    session: Session,
    settings: Any,
    row: UserSession,
    user: User,
    credential: dict[str, Any],
    *,
    ip: str | None,
) -> accounts.Verified:
    """A passkey assertion completes sign-in like a TOTP code: the session is verified, fresh
    and gets a new token. A bad assertion counts as a second-factor failure."""
    key = _check_assertion(session, settings, row, user, credential, purpose="authenticate", ip=ip)
    audit.record(
        session,
        action="mfa.verified",
        actor_user_id=user.id,
        org_id=user.org_id,
        target_type="user",
        target_id=user.id,
        ip=ip,
        details={"method": "passkey", "passkey": key.id},
    )
    row.mfa_verified = True
    row.reauth_at = clock.now()
    token, csrf = sessions.rotate(session, row)
    session.commit()
    return accounts.Verified(token, csrf, None, recovery.remaining(session, user.id), False)


def reauth_options(session: Session, settings: Any, principal: Principal) -> dict[str, Any]:
    row, user = _verified(session, principal)
    return authentication_options(session, settings, row, user, purpose="reauth")


def reauthenticate(
    session: Session, settings: Any, principal: Principal, password: str, credential: dict[str, Any]
) -> datetime:
    """Re-authentication with the password and a passkey instead of a code."""
    row, user = _verified(session, principal)
    lifecycle.check_password(session, user, password, ip=principal.ip, action="auth.reauth.failure")
    key = _check_assertion(
        session, settings, row, user, credential, purpose="reauth", ip=principal.ip
    )
    return lifecycle.record_reauth(
        session, principal, row, user, {"method": "passkey", "passkey": key.id}
    )


def _verified(session: Session, principal: Principal) -> tuple[UserSession, User]:
    row = session.get(UserSession, principal.session_id) if principal.session_id else None
    user = session.get(User, principal.user_id)
    if row is None or user is None:  # pragma: no cover - routes ask for a session
        raise Unauthenticated("this needs a signed-in session")
    return row, user
