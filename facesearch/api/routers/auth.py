"""Sign-in, the second factor and sign-out.

A password opens a session whose second factor is not yet verified; such a session can do
nothing but enrol (first sign-in) and verify a TOTP or recovery code. Verifying rotates the
session token, so a token seen before the second factor is useless afterwards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response, status
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
    require_session,
    session_policy,
)
from facesearch.security import accounts, audit, recovery, sessions
from facesearch.store.accounts import User

router = APIRouter(tags=["auth"])
SessionPrincipal = Annotated[Principal, require_session()]


class SignInBody(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class SignInReply(BaseModel):
    mfa_required: bool = True
    mfa_enrolled: bool
    next: str
    csrf_token: str


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
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure,
                        path="/")
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure,
                        path="/")


def _clear_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")


def _refuse(exc: accounts.AccountError) -> HTTPException:
    return HTTPException(exc.status, detail=str(exc))


@router.post("/api/v1/auth/signin", response_model=SignInReply)
def sign_in(body: SignInBody, request: Request, response: Response, s: DbSession) -> SignInReply:
    """Email and password. Opens a session that still needs the second factor."""
    ip = client_ip(request)
    enforce_rate_limit(request, "signin:address", ip or "unknown")
    enforce_rate_limit(request, "signin:account", body.email.strip().lower())
    try:
        user = accounts.sign_in(s, body.email, body.password, ip=ip)
    except accounts.AccountError as exc:
        s.commit()  # keep the failure count, the lockout and the audit record
        raise _refuse(exc) from None
    new = sessions.create(s, user.id, session_policy(request), ip=ip,
                          user_agent=request.headers.get("user-agent"))
    _set_cookies(request, response, new.token, new.row.csrf_token)
    enrolled = user.totp_verified_at is not None
    return SignInReply(
        mfa_enrolled=enrolled,
        next="/api/v1/auth/mfa/verify" if enrolled else "/api/v1/auth/mfa/enrol",
        csrf_token=new.row.csrf_token,
    )


@router.post("/api/v1/auth/mfa/enrol", response_model=EnrolReply)
def mfa_enrol(request: Request, s: DbSession, dep: DeploymentDep) -> EnrolReply:
    """First sign-in: a new TOTP secret as an otpauth URI and a QR code (SVG)."""
    _row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    try:
        enrolment = accounts.start_enrolment(s, dep.keys.secrets, user, ip=client_ip(request))
    except accounts.AccountError as exc:
        raise _refuse(exc) from None
    return EnrolReply(otpauth_uri=enrolment.uri, secret=enrolment.secret,
                      qr_svg=enrolment.qr_svg)


@router.post("/api/v1/auth/mfa/verify", response_model=VerifyReply)
def mfa_verify(body: CodeBody, request: Request, response: Response, s: DbSession,
               dep: DeploymentDep) -> VerifyReply:
    """A TOTP code (or a recovery code). The first valid code completes enrolment and returns
    the ten recovery codes, once."""
    row, user = cookie_session(request, s)
    enforce_rate_limit(request, "mfa:account", str(user.id))
    ip = client_ip(request)
    try:
        outcome = accounts.verify_second_factor(s, dep.keys.secrets, user, body.code, ip=ip)
    except accounts.AccountError as exc:
        s.commit()
        raise _refuse(exc) from None
    if not outcome.ok:
        s.commit()
        if outcome.locked_until is not None:
            raise _refuse(accounts.AccountLocked(outcome.locked_until))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="wrong or already used code")
    row.mfa_verified = True
    token = sessions.rotate(s, row)
    _set_cookies(request, response, token, row.csrf_token)
    return VerifyReply(
        csrf_token=row.csrf_token, recovery_codes=outcome.recovery_codes,
        recovery_codes_remaining=recovery.remaining(s, user.id),
        used_recovery_code=outcome.used_recovery_code,
    )


@router.post("/api/v1/auth/signout", status_code=204, response_class=Response)
def sign_out(request: Request, s: DbSession) -> Response:
    """End this session (verified or not). Needs the CSRF header when a session exists."""
    response = Response(status_code=204)
    if request.cookies.get(SESSION_COOKIE):
        try:
            row, user = cookie_session(request, s)
        except HTTPException as exc:
            if exc.status_code != status.HTTP_401_UNAUTHORIZED:
                raise
        else:
            sessions.revoke(s, row)
            audit.record(s, action="session.signout", actor_user_id=user.id,
                         org_id=user.org_id, target_type="session", target_id=row.id,
                         ip=client_ip(request))
    _clear_cookies(response)
    return response


@router.post("/api/v1/auth/signout-all", status_code=204, response_class=Response)
def sign_out_everywhere(request: Request, s: DbSession, principal: SessionPrincipal) -> Response:
    """End every session of the signed-in user, this one included."""
    count = sessions.revoke_all(s, principal.user_id)
    user = s.get(User, principal.user_id)
    audit.record(s, action="session.signout_all", actor_user_id=principal.user_id,
                 org_id=user.org_id if user else None, target_type="user",
                 target_id=principal.user_id, ip=principal.ip, details={"sessions": count})
    response = Response(status_code=204)
    _clear_cookies(response)
    return response
