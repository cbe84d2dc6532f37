"""The `VectorIndex` protocol: what ingest and search need from any ANN engine (FAISS, Milvus)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Hit:
    face_id: int
    score: float
    collection_id: int


@dataclass(frozen=True)
class ShardState:
    """What an index holds for one collection: used to check it against the database."""

    count: int
    max_id: int
    #: the highest face id the index has durably covered (deleted or not): catching up fetches
    #: only faces past it. None: same as max_id.
    high_water: int | None = None

    @property
    def catch_up_from(self) -> int:
        return self.max_id if self.high_water is None else max(self.high_water, self.max_id)


class VectorIndex(Protocol):
    model_id: str
    dim: int

    def add(
        self, collection_id: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None: ...

    def remove(self, collection_id: int, ids: Sequence[int]) -> None: ...

    def drop_collection(self, collection_id: int) -> None: ...

    def replace_collection(
        self, collection_id: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None: ...

    def rebuild_collection(
        self,
        collection_id: int,
        chunks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    ) -> None:
        """Replace a collection's contents by `chunks` (streamed, so a rebuild never holds the
        whole collection twice), switching atomically when all are in."""
        ...

    def warm(self) -> None:
        """Load everything a search will need now rather than on the first search."""
        ...

    def search(
        self, queries: npt.NDArray[np.float32], k: int, collections: Sequence[int]
    ) -> list[list[Hit]]: ...

    def state(self, collection_id: int) -> ShardState: ...

    def count(self, collection_id: int) -> int:
        """How many faces the index holds for the collection, for the figures a search reports
        (the gallery size behind its expected false candidates). Exact for the indexes that live
        in this process; a remote engine may answer from a cache a few seconds old."""
        ...

    def collections(self) -> list[int]: ...

    def size(self) -> int: ...

    def nbytes(self) -> int: ...

    def save(self) -> None: ...
