"""The declarative base every table module shares, and the timestamp default."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase

from facesearch import clock


def utcnow() -> datetime:
    """Row timestamps come from the one clock (tests move it)."""
    return clock.now()


class Base(DeclarativeBase):
    pass
