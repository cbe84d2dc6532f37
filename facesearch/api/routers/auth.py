"""Sign-in, the second factor and sign-out.

A password opens a session whose second factor is not yet verified; such a session can do
nothing but enrol (first sign-in: TOTP or a passkey, while the account has no second factor)
and verify a TOTP code, a recovery code or a passkey. Verifying rotates the
session token, so a token seen before the second factor is useless afterwards."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from facesearch.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    DbSession,
    DeploymentDep,
    Principal,
    client_ip,
    cookie_session,
    enforce_rate_limit,
    is_https,
    reauth_window,
    require_session,
    session_policy,
)
from facesearch.errors import Unauthenticated
from facesearch.security import accounts, lifecycle, passkeys

router = APIRouter(tags=["auth"])
SessionPrincipal = Annotated[Principal, require_session()]


class SignInBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SignInReply(BaseModel):
    mfa_required: bool = True
    mfa_enrolled: bool
    #: the account's second factors ("totp", "passkey"); empty: enrol one (TOTP or a passkey)
    methods: list[str]
    next: str
    csrf_token: str
    banner: str | None = None  # the system-use notice (`system_use_banner`)


class EnrolReply(BaseModel):
    otpauth_uri: str
    secret: str
    qr_svg: str


class CodeBody(BaseModel):
    code: str = Field(min_length=6, max_length=40)


class VerifyReply(BaseModel):
    mfa_verified: bool = True
    csrf_token: str
    recovery_codes: list[str] | None = None
    recovery_codes_remaining: int
    used_recovery_code: bool = False


def _set_cookies(request: Request, response: Response, token: str, csrf: str) -> None:
    secure = is_https(request) or bool(
        request.app.state.deployment.settings.tls_cert
        and request.app.state.deployment.settings.tls_key
    )
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure, path="/"
    )


def _clear_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")


@router.post("/api/v1/auth/signin", response_model=SignInReply)
def sign_in(
    body: SignInBody, request: Request, response: Response, s: DbSession, dep: DeploymentDep
) -> SignInReply:
    """Email and password. Opens a session that still needs the second factor."""
    ip = client_ip(request)
    enforce_rate_limit(request, "signin:address", ip or "unknown")
    enforce_rate_limit(request, "signin:account", body.email.strip().lower())
    signed = accounts.open_session(
        s,
        dep.keys,
        body.email,
        body.password,
        session_policy(request),
        ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
    _set_cookies(request, response, signed.token, signed.csrf_token)
    if not signed.mfa_enrolled:
        after = "/api/v1/auth/mfa/enrol"  # or a passkey: /api/v1/auth/passkey/enrol/options
    elif signed.methods == ["passkey"]:
        after = "/api/v1/auth/passkey/options"
    else:
        after = "/api/v1/auth/mfa/verify"
    return SignInReply(
        mfa_enrolled=signed.mfa_enrolled,
        methods=signed.methods,
        next=after,
        csrf_token=signed.csrf_token,
        banner=dep.settings.system_use_banner or None,
    )


@router.post("/api/v1/auth/mfa/enrol", response_model=EnrolReply)
def mfa_enrol(request: Request, s: DbSession, dep: DeploymentDep) -> EnrolReply:
    """First sign-in: a new TOTP secret as an otpauth URI and a QR code (SVG)."""
    _row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    enrolment = accounts.start_enrolment(s, dep.keys.secrets, user, ip=client_ip(request))
    return EnrolReply(otpauth_uri=enrolment.uri, secret=enrolment.secret, qr_svg=enrolment.qr_svg)


@router.post("/api/v1/auth/mfa/verify", response_model=VerifyReply)
def mfa_verify(
    body: CodeBody, request: Request, response: Response, s: DbSession, dep: DeploymentDep
) -> VerifyReply:
    """A TOTP code (or a recovery code). The first valid code completes enrolment and returns
    the ten recovery codes, once."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    verified = accounts.verify_session(
        s, dep.keys.secrets, row, user, body.code, ip=client_ip(request)
    )
    _set_cookies(request, response, verified.token, verified.csrf_token)
    return VerifyReply(
        csrf_token=verified.csrf_token,
        recovery_codes=verified.recovery_codes,
        recovery_codes_remaining=verified.recovery_codes_remaining,
        used_recovery_code=verified.used_recovery_code,
    )


@router.post("/api/v1/auth/signout", status_code=204, response_class=Response)
def sign_out(request: Request, s: DbSession) -> Response:
    """End this session (verified or not). Needs the CSRF header when a session exists."""
    response = Response(status_code=204)
    if request.cookies.get(SESSION_COOKIE):
        try:
            row, user = cookie_session(request, s)
        except Unauthenticated:
            pass  # nothing to end: the cookie is cleared all the same
        else:
            accounts.sign_out(s, row, user, ip=client_ip(request))
    _clear_cookies(response)
    return response


@router.post("/api/v1/auth/signout-all", status_code=204, response_class=Response)
def sign_out_everywhere(s: DbSession, principal: SessionPrincipal) -> Response:
    """End every session of the signed-in user, this one included."""
    accounts.sign_out_everywhere(s, principal)
    response = Response(status_code=204)
    _clear_cookies(response)
    return response


class ReauthBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=6, max_length=40, description="a TOTP or recovery code")


class ReauthReply(BaseModel):
    reauthenticated_at: datetime
    fresh_until: datetime


@router.post("/api/v1/auth/reauth", response_model=ReauthReply)
def reauthenticate(
    body: ReauthBody,
    request: Request,
    s: DbSession,
    dep: DeploymentDep,
    principal: SessionPrincipal,
) -> ReauthReply:
    """Prove the password and second factor again before a sensitive action (password change,
    second-factor re-enrolment, recovery codes, admin-scoped keys, role changes, invitations,
    password resets, unlocks); the session stays fresh for `reauth_minutes`."""
    enforce_rate_limit(request, "mfa:account", str(principal.user_id))
    at = lifecycle.reauthenticate(s, dep.keys.secrets, principal, body.password, body.code)
    window: timedelta = reauth_window(request)
    return ReauthReply(reauthenticated_at=at, fresh_until=at + window)


class ResetAcceptBody(BaseModel):
    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class ResetAccepted(BaseModel):
    email: str
    next: str


@router.post("/api/v1/auth/password-reset/accept", response_model=ResetAccepted)
def accept_password_reset(body: ResetAcceptBody, request: Request, s: DbSession) -> ResetAccepted:
    """Public: set a new password with the one-time link an administrator issued. Every session
    of the account ends; sign in again and verify (or, when the administrator also cleared it,
    enrol) the second factor."""
    ip = client_ip(request)
    enforce_rate_limit(request, "reset:address", ip or "unknown")
    email = lifecycle.accept_reset(s, body.token, body.password, ip=ip)
    return ResetAccepted(
        email=email, next="sign in at /api/v1/auth/signin and verify the second factor"
    )


class PasskeyOptions(BaseModel):
    """WebAuthn options for `navigator.credentials.get` / `.create` (JSON, base64url fields;
    `PublicKeyCredential.parse*OptionsFromJSON` reads them)."""

    options: dict[str, Any]


class PasskeyAssertion(BaseModel):
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of the answer")


@router.post("/api/v1/auth/passkey/options", response_model=PasskeyOptions)
def passkey_options(request: Request, s: DbSession, dep: DeploymentDep) -> PasskeyOptions:
    """Second factor by passkey: request options (a single-use, expiring challenge kept on the
    server) for the password-only session."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    return PasskeyOptions(options=passkeys.authentication_options(s, dep.settings, row, user))


@router.post("/api/v1/auth/passkey/verify", response_model=VerifyReply)
def passkey_verify(
    body: PasskeyAssertion,
    request: Request,
    response: Response,
    s: DbSession,
    dep: DeploymentDep,
) -> VerifyReply:
    """Second factor by passkey: the browser's assertion. Like a TOTP code, it verifies the
    session and rotates its token."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    verified = passkeys.verify(s, dep.settings, row, user, body.credential, ip=client_ip(request))
    _set_cookies(request, response, verified.token, verified.csrf_token)
    return VerifyReply(
        csrf_token=verified.csrf_token,
        recovery_codes_remaining=verified.recovery_codes_remaining,
    )


class PasskeyEnrolment(BaseModel):
    name: str = Field(default="passkey", max_length=200)
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of the answer")


@router.post("/api/v1/auth/passkey/enrol/options", response_model=PasskeyOptions)
def passkey_enrolment_options(request: Request, s: DbSession, dep: DeploymentDep) -> PasskeyOptions:
    """Enrolment with a passkey instead of TOTP, step 1: creation options for the
    password-only session of an account that has **no** second factor yet (409 once it has
    one: add further passkeys under My account)."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    return PasskeyOptions(
        options=passkeys.enrolment_options(
            s, dep.settings, dep.keys, row, user, ip=client_ip(request)
        )
    )


@router.post("/api/v1/auth/passkey/enrol", response_model=VerifyReply)
def passkey_enrol(
    body: PasskeyEnrolment,
    request: Request,
    response: Response,
    s: DbSession,
    dep: DeploymentDep,
) -> VerifyReply:
    """Enrolment with a passkey, step 2: the browser's answer, verified; the passkey is the
    account's second factor, the ten recovery codes are in this answer only, and the session is
    verified (its token rotated), as after the first TOTP code."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    _key, verified = passkeys.enrol(
        s, dep.settings, row, user, body.credential, body.name, ip=client_ip(request)
    )
    _set_cookies(request, response, verified.token, verified.csrf_token)
    return VerifyReply(
        csrf_token=verified.csrf_token,
        recovery_codes=verified.recovery_codes,
        recovery_codes_remaining=verified.recovery_codes_remaining,
    )


class PasskeyReauthBody(BaseModel):
    password: str = Field(min_length=1, max_length=1024)
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON() of the answer")


@router.post("/api/v1/auth/reauth/passkey/options", response_model=PasskeyOptions)
def reauth_passkey_options(
    request: Request, s: DbSession, dep: DeploymentDep, principal: SessionPrincipal
) -> PasskeyOptions:
    """Re-authentication with a passkey, step 1: request options (single-use challenge)."""
    enforce_rate_limit(request, "mfa:account", str(principal.user_id))
    return PasskeyOptions(options=passkeys.reauth_options(s, dep.settings, principal))


@router.post("/api/v1/auth/reauth/passkey", response_model=ReauthReply)
def reauth_passkey(
    body: PasskeyReauthBody,
    request: Request,
    s: DbSession,
    dep: DeploymentDep,
    principal: SessionPrincipal,
) -> ReauthReply:
    """Re-authentication with the password and a passkey assertion instead of a code."""
    enforce_rate_limit(request, "mfa:account", str(principal.user_id))
    at = passkeys.reauthenticate(s, dep.settings, principal, body.password, body.credential)
    return ReauthReply(reauthenticated_at=at, fresh_until=at + reauth_window(request))
