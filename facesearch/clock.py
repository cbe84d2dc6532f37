"""The one clock of the whole system, so tests can move time without sleeping.

Everything that stamps a time (rows, audit entries, sessions, lockouts, jobs) reads `now()`.
It depends on nothing, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def _wall() -> datetime:
    return datetime.now(UTC)


_now: Callable[[], datetime] = _wall


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return _now()


def set_clock(fn: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); None restores the wall clock."""
    global _now
    _now = fn if fn is not None else _wall


def aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def aware_or_none(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None
