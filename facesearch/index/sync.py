"""Reconcile a vector index with the database, its source of truth.

The index knows nothing of the database: the caller hands over what the database holds per
collection (count and highest face id) and a function that fetches a collection's embeddings
after a given face id, in chunks. Collections whose count and highest id match are used as they
are, collections that only lack faces past the index's high-water mark are caught up (fetching
only those faces), anything else is rebuilt (streamed chunk by chunk), and collections the
database no longer has are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facesearch.index.base import VectorIndex

Chunk = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]
#: (collection id, after face id) -> chunks of (ids, vectors) of the collection's faces past the
#: id, in id order.
Fetch = Callable[[int, int], Iterable[Chunk]]
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
        after = state.catch_up_from
        catch_up = not force and state.count > 0 and state.count + count_after(cid, after) == count
        if catch_up:
            for ids, vectors in fetch(cid, after):
                index.add(cid, ids, vectors)
                report.caught_up += len(ids)
        else:
            index.rebuild_collection(cid, fetch(cid, 0))
            report.rebuilt += 1
    index.save()
    return report
