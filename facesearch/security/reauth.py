"""Re-authentication before sensitive actions (ASVS 3.7.1).

A session records when it last proved its password and second factor (`UserSession.reauth_at`:
at sign-in, when the second factor is verified, and at `POST /api/v1/auth/reauth`). Sensitive
actions need that to lie within `reauth_minutes`; otherwise they are refused with
`Unauthenticated` and a reason that names the way out. API keys are not re-checked: a key cannot
re-authenticate, and a key with the `admin` scope can only be created by a fresh session.
"""

from __future__ import annotations

from datetime import timedelta

from facesearch import clock
from facesearch.errors import Unauthenticated
from facesearch.security.actor import Principal
from facesearch.store.accounts import UserSession

STALE = (
    "re-authentication required: this action needs your password and second factor again; "
    "POST them to the auth/reauth endpoint and retry"
)


def is_fresh(row: UserSession, window: timedelta) -> bool:
    if row.reauth_at is None:
        return False
    return clock.now() - clock.aware(row.reauth_at) < window


def require_fresh(principal: Principal) -> None:
    """Refuse a session that has not re-authenticated recently (keys pass, see above)."""
    if principal.session_id is not None and not principal.fresh:
        raise Unauthenticated(STALE)
