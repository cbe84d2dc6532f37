"""Who acts. Every service takes the caller as an `Actor`; the API builds a `Principal` (an
actor with roles and scopes) for each request, the CLI acts as `system_actor()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from facesearch.security.roles import Role


class Actor(Protocol):
    """The attributes every service needs to check tenancy and write the audit record."""

    @property
    def user_id(self) -> int | None: ...

    @property
    def org_id(self) -> int | None: ...

    @property
    def api_key_id(self) -> int | None: ...

    @property
    def ip(self) -> str | None: ...


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a person's MFA-verified session or an API key."""

    user_id: int
    org_id: int | None  # None for platform admins
    roles: frozenset[str]
    scopes: frozenset[str]  # session: the roles' scopes; key: key scopes ∩ role scopes
    api_key_id: int | None
    session_id: int | None
    ip: str | None
    #: The session proved its password and second factor within `reauth_minutes` (sign-in or
    #: re-authentication). Always False for API keys.
    fresh: bool = False

    @property
    def is_platform_admin(self) -> bool:
        return Role.PLATFORM_ADMIN in self.roles


@dataclass(frozen=True)
class EnrollingUser:
    """A person whose password is proven but whose account has no second factor yet (a
    password-only session at enrolment): an actor for the audit record of its own enrolment
    steps, with no roles or scopes, so it can be handed to nothing that authorises."""

    user_id: int
    org_id: int | None
    ip: str | None
    api_key_id: int | None = None


@dataclass(frozen=True)
class SystemActor:
    """The operator at the command line: no account, recorded as such in the audit log."""

    user_id: int | None = None
    org_id: int | None = None
    api_key_id: int | None = None
    ip: str | None = "cli"


def system_actor() -> SystemActor:
    return SystemActor()
