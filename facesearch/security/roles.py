"""Roles, the API scopes they grant, and who may hand out which. Least privilege: a new account
holds exactly what its invitation names, and nothing implies anything else."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_ADMIN = "org_admin"
    INVESTIGATOR = "investigator"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    INGESTOR = "ingestor"


class Scope(StrEnum):
    """What an API key (or a session, through its roles) may do."""

    SEARCH = "search"
    INGEST = "ingest"
    REVIEW = "review"
    AUDIT = "audit"
    ADMIN = "admin"


ROLES: tuple[str, ...] = tuple(Role)
SCOPES: tuple[str, ...] = tuple(Scope)

#: role -> scopes it grants. A key may only carry scopes its owner's roles grant.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.INVESTIGATOR: frozenset({Scope.SEARCH}),
    Role.INGESTOR: frozenset({Scope.INGEST}),
    Role.REVIEWER: frozenset({Scope.REVIEW}),
    Role.AUDITOR: frozenset({Scope.AUDIT}),
    Role.ORG_ADMIN: frozenset({Scope.ADMIN, Scope.INGEST}),
    Role.PLATFORM_ADMIN: frozenset({Scope.ADMIN}),
}

#: Roles an organisation's administrator may hand out inside its organisation.
ORG_ROLES: tuple[str, ...] = (
    Role.ORG_ADMIN,
    Role.INVESTIGATOR,
    Role.REVIEWER,
    Role.AUDITOR,
    Role.INGESTOR,
)

assert set(ROLE_SCOPES) == set(ROLES)
assert set().union(*ROLE_SCOPES.values()) <= set(SCOPES)


def scopes_for(roles: Iterable[str]) -> frozenset[str]:
    """Every scope the given roles grant (unknown roles grant nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(out)


def validate_roles(roles: Iterable[str], *, allowed: Iterable[str] = ROLES) -> list[str]:
    """Deduplicated, ordered roles (plain strings, as stored); ValueError naming an unknown or
    disallowed role."""
    allowed_set = set(allowed)
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role not in allowed_set:
            raise ValueError(f"role {role!r} cannot be granted here")
        if role not in out:
            out.append(str(Role(role).value))
    if not out:
        raise ValueError("at least one role is required")
    if Role.PLATFORM_ADMIN in out and len(out) > 1:
        raise ValueError("a platform administrator holds no other role")
    return out
