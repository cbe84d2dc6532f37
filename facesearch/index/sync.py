"""Reconcile a vector index with the database, its source of truth.

The index knows nothing of the database: the caller hands over what the database holds per
collection (count and highest face id) and a function that fetches a collection's embeddings
after a given face id. Collections whose count and highest id match are used as they are,
collections that only lack newer faces are caught up, anything else is rebuilt, and collections
the database no longer has are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facesearch.index.base import VectorIndex

#: (collection id, after face id) -> (ids, vectors) of that collection's faces past the id.
Fetch = Callable[[int, int], tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]
#: (collection id, after face id) -> how many faces the collection has past the id.
CountAfter = Callable[[int, int], int]


@dataclass
class SyncReport:
    caught_up: int = 0
    rebuilt: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"caught_up": self.caught_up, "rebuilt": self.rebuilt, "dropped": self.dropped}


def reconcile(
    index: VectorIndex,
    in_db: Mapping[int, tuple[int, int]],
    fetch: Fetch,
    count_after: CountAfter,
    *,
    force: bool = False,
) -> SyncReport:
    """Bring `index` in line with `in_db` ({collection id: (count, max face id)}) and save it."""
    report = SyncReport()
    for cid in index.collections():
        if cid not in in_db:
            index.drop_collection(cid)
            report.dropped += 1
    for cid, (count, max_id) in in_db.items():
        state = index.state(cid)
        if not force and state.count == count and state.max_id == max_id:
            continue
        catch_up = (
            not force and state.count > 0 and state.count + count_after(cid, state.max_id) == count
        )
        ids, vectors = fetch(cid, state.max_id if catch_up else 0)
        if catch_up:
            index.add(cid, ids, vectors)
            report.caught_up += len(ids)
        else:
            index.replace_collection(cid, ids, vectors)
            report.rebuilt += 1
    index.save()
    return report
