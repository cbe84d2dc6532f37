"""Shared by the casework routers: id parameters, error translation, multi-scope checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import HTTPException, Path, status

from facesearch.api.deps import Principal
from facesearch.ingest.collections import Conflict
from facesearch.search.casework import InvalidRequest
from facesearch.search.review import ReviewConflict, ReviewForbidden

MAX_ID = 2_147_483_647
#: A database id in a path (bounded so that no value reaches the database as an overflow).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


@contextmanager
def service_errors() -> Iterator[None]:
    """Map the services' refusals to HTTP answers. NotFoundError (404), NoOrganisation (403)
    and ImageRejected (422) are mapped by the app's handlers."""
    try:
        yield
    except InvalidRequest as exc:
        raise HTTPException(422,
                            detail=[{"loc": ["body", exc.field], "msg": exc.message,
                                     "type": "value_error"}]) from exc
    except ReviewForbidden as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from exc
    except (ReviewConflict, Conflict) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


def need_any(principal: Principal, *scopes: str) -> Principal:
    """403 unless the principal holds at least one of `scopes`."""
    if not principal.scopes & set(scopes):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"this needs one of the scopes {', '.join(scopes)}")
    return principal
