"""An index that holds nothing: what a `facesearch worker` uses with the embedded segment index.

The embedded index lives on the serving host's disk and only the service writes it; a worker on
another host commits faces to the database (the source of truth) and the service catches up from
its high-water mark (`Deployment.index_for`). An index backend that every host reaches (Milvus)
is written by the workers directly instead."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from facesearch.index.base import Hit, ShardState


class DatabaseOnlyIndex:
    def __init__(self, model_id: str, dim: int) -> None:
        self.model_id = model_id
        self.dim = dim

    def add(
        self, collection_id: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None:
        pass

    def remove(self, collection_id: int, ids: Sequence[int]) -> None:
        pass

    def drop_collection(self, collection_id: int) -> None:
        pass

    def replace_collection(
        self, collection_id: int, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
    ) -> None:
        pass

    def rebuild_collection(
        self,
        collection_id: int,
        chunks: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]],
    ) -> None:
        pass

    def warm(self) -> None:
        pass

    def search(
        self, queries: npt.NDArray[np.float32], k: int, collections: Sequence[int]
    ) -> list[list[Hit]]:
        raise RuntimeError("a worker's database-only index cannot be searched")

    def state(self, collection_id: int) -> ShardState:
        return ShardState(0, 0)

    def count(self, collection_id: int) -> int:
        return self.state(collection_id).count

    def collections(self) -> list[int]:
        return []

    def size(self) -> int:
        return 0

    def nbytes(self) -> int:
        return 0

    def save(self) -> None:
        pass
