"""Roles and the API scopes they grant. Least privilege: nothing implies anything else."""

from __future__ import annotations

from collections.abc import Iterable

from facesearch.store.accounts import ROLES, SCOPES

#: role -> scopes it grants. A key may only carry scopes its owner's roles grant.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "investigator": frozenset({"search"}),
    "ingestor": frozenset({"ingest"}),
    "reviewer": frozenset({"review"}),
    "auditor": frozenset({"audit"}),
    "org_admin": frozenset({"admin", "ingest"}),
    "platform_admin": frozenset({"admin"}),
}

#: Roles an organisation's administrator may hand out inside its organisation.
ORG_ROLES = ("org_admin", "investigator", "reviewer", "auditor", "ingestor")

assert set(ROLE_SCOPES) == set(ROLES)
assert set().union(*ROLE_SCOPES.values()) <= set(SCOPES)


def scopes_for(roles: Iterable[str]) -> frozenset[str]:
    """Every scope the given roles grant (unknown roles grant nothing)."""
    out: set[str] = set()
    for role in roles:
        out |= ROLE_SCOPES.get(role, frozenset())
    return frozenset(out)


def validate_roles(roles: Iterable[str], *, allowed: Iterable[str] = ROLES) -> list[str]:
    """Deduplicated, ordered roles; ValueError naming an unknown or disallowed role."""
    allowed_set = set(allowed)
    out: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role not in allowed_set:
            raise ValueError(f"role {role!r} cannot be granted here")
        if role not in out:
            out.append(role)
    if not out:
        raise ValueError("at least one role is required")
    if "platform_admin" in out and len(out) > 1:
        raise ValueError("a platform administrator holds no other role")
    return out
