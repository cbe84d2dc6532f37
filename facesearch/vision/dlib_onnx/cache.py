"""Convert at first use, into the user's cache directory, keyed by the source file's checksum.

Layout: ``<cache>/onnx/<source stem>-<sha256[:16]>-c<CONVERTER_VERSION>.onnx`` plus a ``.json``
sidecar holding the full SHA-256 of the source and of the ONNX file. A cached file whose checksum
no longer matches its sidecar is rebuilt. ``<cache>`` is $FACESEARCH_CACHE_DIR when set, else
platformdirs' user cache directory for "facesearch". Converted weights are never shipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import platformdirs

from facesearch.vision.dlib_onnx.converter import build_onnx
from facesearch.vision.dlib_onnx.reader import read_network

#: Bump when the generated graph changes; old cache entries are then ignored.
CONVERTER_VERSION = 1
CACHE_ENV = "FACESEARCH_CACHE_DIR"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("facesearch"))
    return base / "onnx"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_source() -> Path:
    from facesearch.vision.dlib_model import RECOGNITION_WEIGHTS, weights_path

    return weights_path(RECOGNITION_WEIGHTS)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _valid(onnx_path: Path, meta_path: Path, source_sha: str) -> bool:
    if not (onnx_path.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return bool(
        meta.get("source_sha256") == source_sha
        and meta.get("converter_version") == CONVERTER_VERSION
        and meta.get("onnx_sha256") == sha256_of(onnx_path)
    )


def converted_model(source: Path | None = None, directory: Path | None = None) -> Path:
    """Path of the ONNX equivalent of the dlib network `source`, converting it if needed.

    Safe when several processes start at once: each writes its own temporary file and renames it
    into place (the results are byte-identical).
    """
    src = source or default_source()
    source_sha = sha256_of(src)
    where = directory or cache_dir()
    stem = f"{src.stem}-{source_sha[:16]}-c{CONVERTER_VERSION}"
    onnx_path = where / f"{stem}.onnx"
    meta_path = where / f"{stem}.json"
    if _valid(onnx_path, meta_path, source_sha):
        return onnx_path
    model = build_onnx(read_network(src.read_bytes()))
    model.metadata_props.add(key="source_sha256", value=source_sha)
    model.metadata_props.add(key="source_name", value=src.name)
    model.metadata_props.add(key="converter_version", value=str(CONVERTER_VERSION))
    data = model.SerializeToString()
    _atomic_write(onnx_path, data)
    meta = {
        "source": src.name,
        "source_sha256": source_sha,
        "converter_version": CONVERTER_VERSION,
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
    }
    _atomic_write(meta_path, json.dumps(meta, indent=2).encode())
    return onnx_path
