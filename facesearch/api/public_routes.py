"""The only routes that answer without an MFA-verified session or an API key.

Everything else is protected by the app-wide guard in `facesearch.api.deps.guard` and proven so
by tests/api/test_route_audit.py. Adding a path here is a security decision: say why in
docs/security.md.
"""

from __future__ import annotations

from facesearch import web

#: The web application's page and static files (ADR 0012): GET only, no data (the page asks the
#: API for everything, with the session cookie and the CSRF header).
WEB_ROUTES: frozenset[tuple[str, str]] = web.public_routes()

PUBLIC_ROUTES: frozenset[tuple[str, str]] = WEB_ROUTES | frozenset(
    {
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/ready"),
        ("GET", "/api/v1/openapi.json"),
        # the system-use notice is shown before anyone signs in
        ("GET", "/api/v1/banner"),
        # sign-in and the second factor (need, respectively, nothing or a password-only session)
        ("POST", "/api/v1/auth/signin"),
        ("POST", "/api/v1/auth/mfa/enrol"),
        ("POST", "/api/v1/auth/mfa/verify"),
        # the second factor by passkey (needs the password-only session, like mfa/verify)
        ("POST", "/api/v1/auth/passkey/options"),
        ("POST", "/api/v1/auth/passkey/verify"),
        # enrolment with a passkey instead of TOTP (the password-only session of an account
        # with no second factor yet, like mfa/enrol; refused once the account has one)
        ("POST", "/api/v1/auth/passkey/enrol/options"),
        ("POST", "/api/v1/auth/passkey/enrol"),
        # ends whatever session the cookie names, verified or not
        ("POST", "/api/v1/auth/signout"),
        # an invited person sets a password with the one-time token from the link
        ("POST", "/api/v1/invitations/accept"),
        # a user sets a new password with the one-time token of an administrator's reset link
        ("POST", "/api/v1/auth/password-reset/accept"),
    }
)

#: Routes that need an MFA-verified principal but no particular scope: any signed-in person or
#: API key may call them (about itself, or to read what every member of its organisation may
#: read). Everything else must ask for a scope with `deps.require`, and the route audit proves a
#: key without that scope is refused.
ANY_PRINCIPAL_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/api/v1/me"),
        # the casework routers let every member of an organisation list and read its collections
        # (names, legal basis, retention), whatever their role
        ("GET", "/api/v1/collections"),
        ("GET", "/api/v1/collections/{collection_id}"),
    }
)
