"""The operator's names of collections, resolved to ids (the CLI), and the models of given
collections: light queries, importable without the collection rules (a CLI search loads no
account, tenancy or audit module)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from facesearch.errors import NotFound
from facesearch.store.gallery import Collection


def collection_models(session: Session, ids: list[int], default: str) -> dict[str, list[int]]:
    """{model id: collection ids} of the given collections (a collection without a model
    yet is the default model's)."""
    rows = session.execute(
        select(Collection.id, Collection.model_id).where(Collection.id.in_(ids))
    ).all()
    out: dict[str, list[int]] = {}
    for cid, model_id in rows:
        out.setdefault(model_id or default, []).append(int(cid))
    return out


def ids_by_name(session: Session, names: list[str] | None) -> list[int]:
    """The operator's view: collection ids for names (every collection when none are named)."""
    if not names:
        return [int(i) for i in session.scalars(select(Collection.id).order_by(Collection.id))]
    found = dict(
        session.execute(
            select(Collection.name, Collection.id).where(Collection.name.in_(names))
        ).all()
    )
    missing = sorted(set(names) - set(found))
    if missing:
        raise NotFound(f"no collection named {', '.join(missing)}")
    return [int(found[n]) for n in names]
