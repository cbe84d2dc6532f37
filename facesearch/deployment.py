"""The composition root of one deployment: settings, key ring, database, blobs, vector index and
face model. `init` creates a data directory; `open` checks it and wires the parts together."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from facesearch.config import Settings
from facesearch.crypto import KeyRing
from facesearch.errors import ConfigError, KeyMismatchError, NotInitialisedError
from facesearch.index.faiss_index import FaissIndex
from facesearch.store.blobs import BlobStore
from facesearch.store.db import Database, migrate
from facesearch.store.models import Collection, Face
from facesearch.vision.model import FaceModel
from facesearch.vision.registry import build_model
from facesearch.vision.threadsafe import ThreadSafeFaceModel

MARKER = "deployment"


def is_inside(child: Path, parent: Path) -> bool:
    """Whether `child` lies inside `parent` once both are resolved."""
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def init_deployment(settings: Settings) -> Path:
    """Create the data directory, its database and a new key file (outside it, mode 0600)."""
    home = settings.home
    key_file = settings.resolved_key_file
    if is_inside(key_file, home):
        raise ConfigError(
            f"the key file {key_file} must live outside the data directory {home}: "
            "a copy of the data directory must never carry its own key"
        )
    if settings.settings_file.exists():
        raise ConfigError(f"{home} is already a facesearch data directory")
    if key_file.exists():
        raise ConfigError(
            f"a key file already exists at {key_file}; pass --key-file with a new path, or "
            "remove the old one if its data directory is gone"
        )
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    keyring = KeyRing.create(key_file)
    settings.blobs_dir.mkdir(exist_ok=True, mode=0o700)
    settings.index_dir.mkdir(exist_ok=True, mode=0o700)
    db = Database(settings.sqlalchemy_url)
    try:
        migrate(db.engine)
    finally:
        db.dispose()
    if settings.db_path.exists():
        os.chmod(settings.db_path, 0o600)
    settings.settings_file.write_text(
        "# facesearch data directory. Non-secret settings may be added under [settings].\n"
        f"[{MARKER}]\n"
        f'key_file = "{key_file}"\n'
        f'key_fingerprint = "{keyring.fingerprint}"\n'
        "\n[settings]\n"
    )
    os.chmod(settings.settings_file, 0o600)
    return key_file


class Deployment:
    """An opened data directory. Cheap parts are built eagerly, the model and index on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if not settings.settings_file.exists():
            raise NotInitialisedError(
                f"{settings.home} is not a facesearch data directory; run "
                f"`facesearch --home {settings.home} init` first"
            )
        with settings.settings_file.open("rb") as fh:
            marker = tomllib.load(fh).get(MARKER, {})
        key_file = settings.key_file or Path(marker.get("key_file", settings.resolved_key_file))
        self.key_file = key_file.expanduser()
        if is_inside(self.key_file, settings.home):
            raise ConfigError(f"the key file {self.key_file} is inside the data directory")
        self.keys = KeyRing.load(self.key_file)
        if marker.get("key_fingerprint") and marker["key_fingerprint"] != self.keys.fingerprint:
            raise KeyMismatchError(
                f"the key file {self.key_file} does not belong to {settings.home}"
            )
        self.db = Database(settings.sqlalchemy_url)
        migrate(self.db.engine)
        self.blobs = BlobStore(settings.blobs_dir, self.keys)

    @classmethod
    def open(cls, settings: Settings) -> Deployment:
        return cls(settings)

    @cached_property
    def model(self) -> FaceModel:
        """The configured model, safe to share between threads (API requests, ingest jobs)."""
        return ThreadSafeFaceModel(
            build_model(
                self.settings.model,
                detector=self.settings.detector,
                **self.settings.model_options(),
            )
        )

    def new_index(self) -> FaissIndex:
        """An index object for this deployment's model, loaded from disk as it is."""
        return FaissIndex(
            self.settings.index_dir,
            self.keys.index,
            self.model.model_id,
            self.model.embedding_size,
            exact_limit=self.settings.exact_index_limit,
            nprobe=self.settings.index_nprobe,
            rerank_factor=self.settings.rerank_factor,
        )

    @cached_property
    def index(self) -> FaissIndex:
        """The vector index, reconciled with the database on first use."""
        index = self.new_index()
        self.sync_index(index)
        return index

    def open_embedding(self, face: Face) -> np.ndarray:
        raw = self.keys.embeddings.open(face.embedding, face.embedding_aad)
        return np.frombuffer(raw, dtype=np.float32)

    def sync_index(
        self,
        index: FaissIndex,
        *,
        force: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Make the index agree with the database: catch up new faces, rebuild diverged shards."""
        stats = {"caught_up": 0, "rebuilt": 0, "dropped": 0}
        with self.db.session() as s:
            rows = s.execute(
                select(Face.collection_id, func.count(Face.id), func.max(Face.id))
                .where(Face.model_id == index.model_id)
                .group_by(Face.collection_id)
            ).all()
            in_db = {cid: (int(n), int(mx)) for cid, n, mx in rows}
            for cid in index.collections():
                if cid not in in_db:
                    index.drop_collection(cid)
                    stats["dropped"] += 1
            for cid, (count, max_id) in in_db.items():
                state = index.state(cid)
                if not force and state.count == count and state.max_id == max_id:
                    continue
                newer = 0
                if not force and state.count:
                    newer = (
                        s.scalar(
                            select(func.count(Face.id)).where(
                                Face.collection_id == cid,
                                Face.model_id == index.model_id,
                                Face.id > state.max_id,
                            )
                        )
                        or 0
                    )
                catch_up = not force and state.count and state.count + newer == count
                after = state.max_id if catch_up else 0
                ids, vectors = self._embeddings_of(s, cid, index.model_id, after, on_progress)
                if catch_up:
                    index.add(cid, ids, vectors)
                    stats["caught_up"] += len(ids)
                else:
                    index.replace_collection(cid, ids, vectors)
                    stats["rebuilt"] += 1
        index.save()
        return stats

    def _embeddings_of(
        self,
        s: object,
        collection_id: int,
        model_id: str,
        after_id: int,
        on_progress: Callable[[int], None] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        ids: list[int] = []
        vectors: list[np.ndarray] = []
        query = (
            select(Face.id, Face.file_id, Face.face_index, Face.embedding)
            .where(
                Face.collection_id == collection_id, Face.model_id == model_id, Face.id > after_id
            )
            .order_by(Face.id)
            .execution_options(yield_per=5000)
        )
        from facesearch.store.models import embedding_aad

        for face_id, file_id, face_index, sealed in s.execute(query):
            raw = self.keys.embeddings.open(sealed, embedding_aad(file_id, face_index, model_id))
            ids.append(face_id)
            vectors.append(np.frombuffer(raw, dtype=np.float32))
            if on_progress and len(ids) % 1000 == 0:
                on_progress(1000)
        dim = vectors[0].shape[0] if vectors else 128
        return (
            np.asarray(ids, dtype=np.int64),
            np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32),
        )

    def collection_ids(self, names: list[str] | None) -> list[int]:
        from facesearch.errors import NotFoundError

        with self.db.session() as s:
            if not names:
                return list(s.scalars(select(Collection.id)))
            found = dict(
                s.execute(
                    select(Collection.name, Collection.id).where(Collection.name.in_(names))
                ).all()
            )
        missing = sorted(set(names) - set(found))
        if missing:
            raise NotFoundError(f"no collection named {', '.join(missing)}")
        return [found[n] for n in names]

    def close(self) -> None:
        if "index" in self.__dict__:
            self.index.save()
        self.db.dispose()


def permissions_problem(path: Path) -> str | None:
    """A human sentence if `path` can be read by group or others, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return f"{path} has mode {mode:o}; others can read it"
    return None
