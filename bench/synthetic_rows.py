"""Database rows of a synthetic gallery (one file and one face per vector, sealed embedding),
shared by the benchmarks that fill a data directory without running the face model."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from facesearch.store.gallery import FileStatus, embedding_aad


def synthetic_rows(
    cid: int, model_id: str, sealer: Any, first: int, vectors: npt.NDArray[np.float32]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(files, faces) rows for `vectors`, ids from `first`, in collection `cid`."""
    files, faces = [], []
    for row in range(vectors.shape[0]):
        fid = first + row
        files.append(
            {
                "id": fid,
                "collection_id": cid,
                "source": f"/synthetic/{fid:09d}.jpg",
                "source_kind": "file",
                "content_hash": f"{fid:064x}",
                "byte_size": 40_000,
                "status": FileStatus.OK,
                "face_count": 1,
            }
        )
        faces.append(
            {
                "id": fid,
                "file_id": fid,
                "collection_id": cid,
                "face_index": 0,
                "model_id": model_id,
                "runtime": "synthetic",
                "detector": "synthetic",
                "left": 10,
                "top": 10,
                "right": 110,
                "bottom": 110,
                "landmarks": [],
                "confidence": 0.99,
                "quality": 0.8,
                "quality_detail": {"score": 0.8},
                "low_quality": False,
                "embedding": sealer.seal(vectors[row].tobytes(), embedding_aad(fid, 0, model_id)),
            }
        )
    return files, faces
