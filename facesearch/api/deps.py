"""Dependencies every router uses: the deployment, a database session, the current principal
and scope checks.

Authentication (in `authenticate`): an `Authorization: Bearer fsk_...` API key, or the `fs_session`
cookie of a server-side session whose second factor has been verified. Cookie requests that
change state (POST/PUT/PATCH/DELETE) must carry the session's CSRF token in `X-CSRF-Token`.
`guard` runs for every route of the app (an app-wide dependency) and refuses anything but the
routes listed in `public_routes.PUBLIC_ROUTES` unless a principal is established, so a route that
forgets to ask for a principal is still closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import params as fastapi_params
from sqlalchemy.orm import Session

from facesearch.api.ids import MAX_ID as MAX_ID  # re-exported: the bound of integer ids
from facesearch.api.public_routes import PUBLIC_ROUTES
from facesearch.deployment import Deployment
from facesearch.errors import Forbidden, TooManyRequests, Unauthenticated
from facesearch.security import api_keys, reauth, sessions
from facesearch.security.accounts import active_user, locked_until
from facesearch.security.actor import Principal as Principal  # re-exported for routers
from facesearch.security.ratelimit import RateLimiter
from facesearch.security.roles import scopes_for
from facesearch.store.accounts import User, UserSession

SESSION_COOKIE = "fs_session"
CSRF_COOKIE = "fs_csrf"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# -- plumbing -------------------------------------------------------------------------------------
def get_deployment(request: Request) -> Deployment:
    dep = request.app.state.deployment
    assert isinstance(dep, Deployment)
    return dep


DeploymentDep = Annotated[Deployment, Depends(get_deployment)]


def get_db(dep: DeploymentDep) -> Iterator[Session]:
    """A unit of work around the handler: committed when it returns (before the response is
    sent), rolled back when it raises."""
    with dep.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_db, scope="function")]


def client_ip(request: Request) -> str | None:
    """The caller's address (X-Forwarded-For believed only from settings.trusted_proxies)."""
    ip = getattr(request.state, "client_ip", None)
    if isinstance(ip, str):
        return ip
    return request.client.host if request.client else None


def is_https(request: Request) -> bool:
    return bool(getattr(request.state, "https", request.url.scheme == "https"))


def limiter(request: Request) -> RateLimiter:
    lim = request.app.state.limiter
    assert isinstance(lim, RateLimiter)
    return lim


def enforce_rate_limit(request: Request, policy: str, key: str) -> None:
    """Count a request against a named policy; 429 with Retry-After when over the limit."""
    wait = limiter(request).hit(policy, key)
    if wait is not None:
        raise TooManyRequests(wait)


def session_policy(request: Request) -> sessions.SessionPolicy:
    settings = get_deployment(request).settings
    return sessions.SessionPolicy.from_minutes_hours(
        settings.session_idle_minutes, settings.session_absolute_hours
    )


def reauth_window(request: Request) -> timedelta:
    return timedelta(minutes=get_deployment(request).settings.reauth_minutes)


def _unauthorised(detail: str) -> Unauthenticated:
    return Unauthenticated(detail)


def check_csrf(request: Request, row: UserSession) -> None:
    if request.method.upper() not in UNSAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sessions.csrf_matches(row, sent):
        raise Forbidden(f"missing or wrong {CSRF_HEADER} header")


def cookie_session(
    request: Request, session: Session, *, csrf: bool = True
) -> tuple[UserSession, User]:
    """The live session named by the cookie (verified or not) and its active user; 401 if none.
    Checks the CSRF header on state-changing requests."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _unauthorised("not signed in")
    row = sessions.lookup(session, token, session_policy(request))
    if row is None:
        raise _unauthorised("the session has expired or was ended; sign in again")
    user = active_user(session, row.user_id)
    if user is None:
        raise _unauthorised("the session has expired or was ended; sign in again")
    if csrf:
        check_csrf(request, row)
    return row, user


def _authenticate(request: Request) -> Principal:
    dep = get_deployment(request)
    ip = client_ip(request)
    header = request.headers.get("Authorization", "")
    with dep.db.session() as s:
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise _unauthorised("use 'Authorization: Bearer fsk_...'")
            key = api_keys.verify(s, credential)
            if key is None:
                raise _unauthorised("the API key is invalid, expired or revoked")
            user = active_user(s, key.user_id)
            if user is None or user.org_id != key.org_id or locked_until(user) is not None:
                # a locked account's keys stop working while the lock lasts
                raise _unauthorised("the API key is invalid, expired or revoked")
            roles = frozenset(user.roles)
            return Principal(
                user.id,
                user.org_id,
                roles,
                frozenset(key.scopes) & scopes_for(roles),
                key.id,
                None,
                ip,
            )
        row, user = cookie_session(request, s, csrf=False)
        if not row.mfa_verified:
            raise _unauthorised("second factor required: verify a code at /api/v1/auth/mfa/verify")
        check_csrf(request, row)
        roles = frozenset(user.roles)
        fresh = reauth.is_fresh(row, reauth_window(request))
        return Principal(user.id, user.org_id, roles, scopes_for(roles), None, row.id, ip, fresh)


def authenticate(request: Request) -> Principal:
    """The request's principal, established once per request; 401/403 otherwise."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = _authenticate(request)
    request.state.principal = principal
    return principal


def is_public(request: Request) -> bool:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    method = request.method.upper()
    if method == "HEAD":
        method = "GET"
    return (method, path) in PUBLIC_ROUTES


def guard(request: Request) -> None:
    """App-wide: deny by default. Public routes pass; every other route needs a principal."""
    if not is_public(request):
        authenticate(request)


def get_principal(request: Request) -> Principal:
    return authenticate(request)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


# -- authorisation --------------------------------------------------------------------------------
class _Require(fastapi_params.Depends):
    """`require(scope)` is both a `Depends` (use it directly: `p: Principal = require("x")` or
    `Annotated[Principal, require("x")]`) and a dependency callable (`Depends(require("x"))`)."""

    scope_required: str
    roles_required: frozenset[str]

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        return self.dependency(principal) if self.dependency else principal  # pragma: no cover


def require(
    scope: str,
    *,
    roles: frozenset[str] | set[str] | None = None,
    session_only: bool = False,
    fresh: bool = False,
) -> Any:
    """Dependency: the principal, which must hold `scope` (and, when given, one of `roles`;
    with `session_only`, be a signed-in person rather than an API key; with `fresh`, a session
    must have proved its password and second factor within `reauth_minutes`). 401 when there is
    no MFA-verified principal or the session is not fresh, 403 when it lacks the scope, role or
    kind."""
    wanted_roles = frozenset(roles or ())

    def check(principal: CurrentPrincipal) -> Principal:
        if scope and scope not in principal.scopes:
            raise Forbidden(f"this needs the {scope!r} scope")
        if wanted_roles and not (principal.roles & wanted_roles):
            raise Forbidden("your role does not allow this")
        if session_only and principal.api_key_id is not None:
            raise Forbidden("this needs a signed-in session, not an API key")
        if fresh:
            reauth.require_fresh(principal)
        return principal

    check.__facesearch_scope__ = scope or ("session" if session_only else "")  # type: ignore[attr-defined]
    check.__facesearch_session_only__ = session_only  # type: ignore[attr-defined]
    dep = _Require(dependency=check)
    object.__setattr__(dep, "scope_required", scope)
    object.__setattr__(dep, "roles_required", wanted_roles)
    return dep


def require_session(*, fresh: bool = False) -> Any:
    """Dependency: a signed-in person (not an API key) with a verified second factor (and, with
    `fresh`, one proved within `reauth_minutes`)."""
    return require("", session_only=True, fresh=fresh)


def need_any(principal: Principal, *scopes: str) -> Principal:
    """Forbidden unless the principal holds at least one of `scopes`."""
    if not principal.scopes & set(scopes):
        raise Forbidden(f"this needs one of the scopes {', '.join(scopes)}")
    return principal
