"""The composition root of one deployment: settings, key ring, database, blobs, vector index and
face model. `init` creates a data directory; `open` checks it and wires the parts together.

It holds no rules of its own: services receive a `Deployment` and use its parts."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facesearch.config import Settings
from facesearch.crypto import KeyRing
from facesearch.errors import ConfigError, KeyMismatchError, NotInitialisedError
from facesearch.files import private_dirs
from facesearch.index.base import VectorIndex
from facesearch.index.database_only import DatabaseOnlyIndex
from facesearch.index.segments import SegmentIndex, drop_collection_files
from facesearch.index.sync import SyncReport, reconcile
from facesearch.store import faces, queue
from facesearch.store.anchor import AnchorWriter, anchor_file, forwarders_for
from facesearch.store.blobs import BlobStore, LocalBlobStore, S3BlobStore, s3_client
from facesearch.store.db import Database, encrypt_plaintext, migrate
from facesearch.vision.model import FaceModel
from facesearch.vision.registry import build_model, model_id_of, runtime_for
from facesearch.vision.threadsafe import ThreadSafeFaceModel
from facesearch.workqueue import FairQueue

if TYPE_CHECKING:  # imported when a deployment uses Milvus
    from facesearch.index.milvus_index import MilvusIndex

log = logging.getLogger(__name__)

MARKER = "deployment"


def is_inside(child: Path, parent: Path) -> bool:
    """Whether `child` lies inside `parent` once both are resolved."""
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def anchor_dir_of(settings: Settings, key_file: Path) -> Path:
    """The audit checkpoint folder: `audit_anchor_dir`, else the key file's folder."""
    return (settings.audit_anchor_dir or key_file.parent).expanduser()


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
    private_dirs(home)
    os.chmod(home, 0o700)
    keyring = KeyRing.create(key_file)
    if settings.blob_store == "local":
        settings.blobs_dir.mkdir(exist_ok=True, mode=0o700)
    settings.index_dir.mkdir(exist_ok=True, mode=0o700)
    if settings.uses_job_queue:
        queue.conninfo(settings.sqlalchemy_url)  # PostgreSQL, or a clear ConfigError
    db = Database(settings.sqlalchemy_url, database_key(settings, keyring))
    try:
        migrate(db.engine)
        if settings.uses_job_queue:
            queue.ensure_schema(db.engine)
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


def blob_store_for(settings: Settings, keys: KeyRing) -> BlobStore:
    """The blob store `settings.blob_store` names: the data directory's `blobs/` folder, or the
    bucket `s3_bucket` (under `s3_prefix`) of AWS S3 or the server at `s3_endpoint_url`, with
    credentials from the AWS chain. Both hold the same sealed bytes under the same ids."""
    if settings.blob_store == "s3":
        assert settings.s3_bucket  # the settings refuse s3 without a bucket
        client = s3_client(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
        return S3BlobStore(client, settings.s3_bucket, keys, prefix=settings.s3_prefix)
    return LocalBlobStore(settings.blobs_dir, keys)


def database_key(settings: Settings, keys: KeyRing) -> bytes | None:
    """SQLCipher's key for a SQLite database (ADR 0010); None for other databases."""
    return keys.database_key if settings.sqlalchemy_url.startswith("sqlite") else None


def warm_model(model: FaceModel) -> None:
    """Detect in, align and embed a blank 640×480 photo once: the first real search then finds
    the model's sessions built and their buffers allocated."""
    import numpy as np

    blank = np.zeros((480, 640, 3), dtype=np.uint8)
    model.detect(blank, thorough=False)
    model.embed([model.align(blank, model.centred_detection(blank))])


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
        key = database_key(settings, self.keys)
        if key is not None and settings.database_url is None:
            encrypt_plaintext(settings.db_path, key)  # a database of before ADR 0010
        self.anchor = AnchorWriter(
            anchor_file(self.anchor_dir, self.keys.key_id),
            self.keys.audit_signing_seed(),
            self.keys.key_id,
            every=settings.audit_checkpoint_every,
            forwarders=forwarders_for(settings.audit_forward_syslog, settings.audit_forward_url),
        )
        if settings.uses_job_queue:
            queue.conninfo(settings.sqlalchemy_url)  # PostgreSQL, or a clear ConfigError
        self.db = Database(
            settings.sqlalchemy_url,
            key,
            audit_key=self.keys.audit_mac_key,
            on_audit_commit=self.anchor.observe,
        )
        migrate(self.db.engine)
        if settings.uses_job_queue:
            queue.ensure_schema(self.db.engine)  # procrastinate's schema, in its own schema
        #: sealed images and crops (`store.blobs.BlobStore`: put/get/exists/delete/ids)
        self.blobs: BlobStore = blob_store_for(settings, self.keys)
        self._lock = threading.RLock()
        #: held while an index is opened, reconciled or caught up (not `_lock`: a model can be
        #: built meanwhile, so the CLI opens the index beside the model's work)
        self._index_lock = threading.RLock()
        self._models: dict[str, FaceModel] = {}
        self._indexes: dict[str, VectorIndex] = {}
        self._milvus: Any = None
        #: model id -> the open file holding that model's segment-index writer lock
        self._index_locks: dict[str, int] = {}
        #: the highest face id each loaded index is known to hold everything up to
        self._synced_to: dict[str, int] = {}
        #: a `facesearch worker` writes faces to the database only (the embedded index is the
        #: serving host's; Milvus is every process's); the service then catches up (`index_for`)
        self.writes_local_index = True
        self._job_queue: object | None = None
        #: indexes being opened ahead of a search (`open_index_in_background`); close waits
        self._opening: list[threading.Thread] = []
        #: the service compacts index segments in a background thread; a CLI run inline
        self.background_compaction = False
        #: set by the service: its ingest jobs analyse images in a worker process (at
        #: `ingest_nice`) even with one worker, so that searches answered by this process keep
        #: the CPU and the interpreter lock while a job runs
        self.isolate_ingest = False
        #: Model work of searches waits here: bounded, a fair share per organisation.
        self.model_queue = FairQueue(
            slots=settings.model_slots,
            queue_size=settings.model_queue_size,
            per_key=settings.model_queue_per_org,
            wait_seconds=settings.model_queue_wait_seconds,
        )

    @classmethod
    def open(cls, settings: Settings) -> Deployment:
        return cls(settings)

    @property
    def anchor_dir(self) -> Path:
        """Where the audit chain's signed checkpoints go (default: beside the key file)."""
        return anchor_dir_of(self.settings, self.key_file)

    # -- models: one per descriptor, each collection keeps its own ---------------------------
    @property
    def default_model_id(self) -> str:
        """The model id of new collections (settings.model)."""
        return model_id_of(self.settings.model)

    def runtime_of(self, model_id: str) -> tuple[str, str | None]:
        """The runtime and detector that compute `model_id`: the configured ones when they do,
        else that model's default runtime with its own detector."""
        name = runtime_for(model_id, self.settings.model)
        return name, (self.settings.detector if name == self.settings.model else None)

    def model_for(self, model_id: str) -> FaceModel:
        """The model that computes `model_id`, built once and safe to share between threads."""
        with self._lock:
            model = self._models.get(model_id)
            if model is None:
                name, detector = self.runtime_of(model_id)
                model = ThreadSafeFaceModel(
                    build_model(name, detector=detector, **self.settings.model_options())
                )
                self._models[model_id] = model
            return model

    @property
    def model(self) -> FaceModel:
        """The model of new collections."""
        return self.model_for(self.default_model_id)

    # -- vector indexes: one per model ------------------------------------------------------------
    def new_index(self, model_id: str | None = None) -> VectorIndex:
        """An index object for one model's collections as it is on disk (segments open lazily,
        a collection's on its first search)."""
        model_id = model_id or self.default_model_id
        if self.settings.index_backend == "milvus":
            return self.milvus_index(model_id)
        if not self.writes_local_index:
            return DatabaseOnlyIndex(model_id, self.model_for(model_id).embedding_size)
        return SegmentIndex(
            self.settings.index_dir,
            self.keys.index,
            model_id,
            self.model_for(model_id).embedding_size,
            shortlist=self.settings.index_shortlist,
            rerank=self.settings.index_rerank,
            search_threads=self.settings.index_search_threads or None,
            background_compaction=self.background_compaction,
            read_only=not self._take_index_writer_lock(model_id),
        )

    def _take_index_writer_lock(self, model_id: str) -> bool:
        """One process writes a model's segment files: the first to open them (the service,
        when it runs). The lock (flock on `<index dir>/<model>.writer.lock`) lives as long as
        the deployment; a process that cannot take it reads the segments, keeps its own index
        changes in memory and leaves them to the writer, which catches up from the database."""
        with self._lock:
            if model_id in self._index_locks:
                return True
            private_dirs(self.settings.index_dir)
            path = self.settings.index_dir / f"{model_id}.writer.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                log.warning(
                    "another process (the service?) writes the %s index: this one reads it and "
                    "leaves its changes to that process, which catches up from the database",
                    model_id,
                )
                return False
            self._index_locks[model_id] = fd
            return True

    @property
    def milvus(self) -> Any:
        """The one Milvus client of this deployment (Milvus Lite starts on first use)."""
        with self._lock:
            if self._milvus is None:
                s = self.settings
                from facesearch.index.milvus_index import connect

                token = s.milvus_token.get_secret_value() if s.milvus_token else None
                self._milvus = connect(s.resolved_milvus_uri, token=token, ca_file=s.milvus_ca_file)
            return self._milvus

    def milvus_index(self, model_id: str) -> MilvusIndex:
        from facesearch.index.milvus_index import MilvusIndex

        s = self.settings
        return MilvusIndex(
            self.milvus,
            model_id,
            self.model_for(model_id).embedding_size,
            prefix=s.milvus_collection_prefix,
            index_type=s.milvus_index,
            shortlist=s.milvus_shortlist,
            hnsw_ef=s.milvus_hnsw_ef,
        )

    @property
    def catches_up(self) -> bool:
        """Whether other processes may commit faces this process must catch up with: with the
        embedded index, `facesearch worker`s and CLI commands run beside the service write the
        database only (the service holds the index's writer lock)."""
        return self.writes_local_index and self.settings.index_backend != "milvus"

    def index_for(self, model_id: str) -> VectorIndex:
        """The vector index of one model, reconciled with the database on first use. When
        workers elsewhere commit faces (`catches_up`), every call first compares the database's
        highest face id with the one the index is known to hold (one primary-key probe) and,
        when the database has moved on, adds the faces past the index's high-water mark."""
        with self._index_lock:
            index = self._indexes.get(model_id)
            if index is None:
                index = self.new_index(model_id)
                if self.writes_local_index:
                    with self.db.session() as s:
                        top = faces.max_face_id(s)
                    self.sync_index(index)
                    self._synced_to[model_id] = top
                self._indexes[model_id] = index
            elif self.catches_up:
                self.catch_up(index)
            return index

    def catch_up(self, index: VectorIndex) -> int:
        """Add the faces committed (by other processes) since `index` was last brought up to
        date; returns how many. Face ids are committed in order (`faces.serialise_face_ids`),
        so the faces past each collection's high-water mark are exactly the missing ones."""
        model_id, dim, sealer = index.model_id, index.dim, self.keys.embeddings
        added = 0
        with self._index_lock, self.db.session() as s:
            top = faces.max_face_id(s)
            seen = self._synced_to.get(model_id, 0)
            if top <= seen:
                return 0
            for cid in faces.new_faces_after(s, model_id, seen):
                after = index.state(cid).catch_up_from
                for ids, vectors in faces.embedding_chunks(
                    s, sealer, cid, model_id, after, dim=dim
                ):
                    index.add(cid, ids, vectors)
                    added += len(ids)
            self._synced_to[model_id] = top
        if added:
            index.save()
        return added

    def job_queue(self) -> object:
        """The job queue (procrastinate, opened for deferring) of `job_runner = procrastinate`."""
        with self._lock:
            if self._job_queue is None:
                app = queue.open_app(self.settings.sqlalchemy_url)
                app.open()
                self._job_queue = app
            return self._job_queue

    def open_index_in_background(
        self, model_id: str, collection_ids: list[int]
    ) -> threading.Thread:
        """Open and reconcile `model_id`'s index and the segments of `collection_ids` in a
        thread, while the caller runs the model (a one-shot CLI search: the database's work and
        the segment reads overlap the model's on another core). `index_for` then returns the
        prepared index, or waits for it; a failure here is raised there again."""

        def prepare() -> None:
            try:
                index = self.index_for(model_id)
                open_collections = getattr(index, "open_collections", None)
                if open_collections is not None:
                    open_collections(collection_ids)
            except Exception:  # index_for, called again by the search, reports it
                log.debug("opening the %s index ahead of a search failed", model_id, exc_info=True)

        thread = threading.Thread(target=prepare, name="index-open", daemon=True)
        thread.start()
        self._opening.append(thread)
        return thread

    @property
    def index(self) -> VectorIndex:
        """The index of the default model."""
        return self.index_for(self.default_model_id)

    def drop_index_collection(self, model_id: str | None, collection_id: int) -> None:
        """Remove a deleted collection's index files when no index of this process holds it."""
        if model_id and self.settings.index_backend == "milvus":
            self.milvus_index(model_id).drop_collection(collection_id)
        elif model_id:
            drop_collection_files(self.settings.index_dir, model_id, collection_id)

    def loaded_index(self, model_id: str) -> VectorIndex | None:
        """The index of `model_id` if something has already loaded it (nothing is loaded)."""
        return self._indexes.get(model_id)

    def sync_index(
        self,
        index: VectorIndex,
        *,
        force: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> SyncReport:
        """Make `index` agree with the database (see `index.sync.reconcile`)."""
        model_id, dim = index.model_id, index.dim
        sealer = self.keys.embeddings
        with self.db.session() as s:
            return reconcile(
                index,
                faces.counts_by_collection(s, model_id),
                lambda cid, after: faces.embedding_chunks(
                    s, sealer, cid, model_id, after, dim=dim, on_progress=on_progress
                ),
                lambda cid, after: faces.count_after(s, cid, model_id, after),
                force=force,
            )

    def warm(self) -> None:
        """Load and reconcile the index of every model in use, open all its segments, and run
        each model once (its runtime sessions are built on first use): the service does this
        before it answers, so no search pays for it."""
        with self.db.session() as s:
            model_ids = faces.model_ids(s)
        for model_id in dict.fromkeys([*model_ids, self.default_model_id]):
            try:
                model = self.model_for(model_id)
            except ValueError:  # a model this installation does not compute
                continue
            warm_model(model)
            if model_id in model_ids:
                self.index_for(model_id).warm()

    def close(self) -> None:
        for thread in self._opening:  # never release the writer lock under a running sync
            thread.join()
        self._opening.clear()
        for index in list(self._indexes.values()):
            index.save()
            wait = getattr(index, "wait", None)
            if wait is not None:
                wait()
        if self._milvus is not None:
            self._milvus.close()
            self._milvus = None
        if self._job_queue is not None:
            self._job_queue.close()  # type: ignore[attr-defined]
            self._job_queue = None
        for fd in self._index_locks.values():
            os.close(fd)  # releases the writer lock
        self._index_locks.clear()
        self.anchor.close()
        self.db.dispose()
