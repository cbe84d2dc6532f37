"""Gallery tables: collections (and their read-only shares), ingest runs, source files, faces.

The database is the source of truth; vector indexes are rebuilt from it. Embeddings are stored
sealed (AES-256-GCM, associated data binding them to their file and face position); images and
crops live in the encrypted blob store and are referenced by blob id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from facesearch.store.base import Base, utcnow


class FileStatus(StrEnum):
    OK = "ok"
    NO_FACE = "no_face"
    REJECTED = "rejected"


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"


class Collection(Base):
    """A named gallery. Every face belongs to exactly one collection."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    #: The descriptor of every face in the collection (set by the first ingest, then enforced).
    model_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: Owning organisation (tenant); None on a single-tenant embedded deployment.
    org_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    legal_basis: Mapped[str | None] = mapped_column(Text, nullable=True)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    files: Mapped[list[SourceFile]] = relationship(back_populates="collection")


class CollectionShare(Base):
    """Read-only access to a collection granted by its owner organisation to another one."""

    __tablename__ = "collection_shares"
    __table_args__ = (UniqueConstraint("collection_id", "org_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: None while offered: the receiving organisation's administrators must accept a share
    #: before the collection enters their search scope.
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ShareCode(Base):
    """A one-time code an organisation hands out so that another can share a collection with it,
    without anyone naming (or learning the existence of) organisations. Only a hash is kept."""

    __tablename__ = "share_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IngestRun(Base):
    """One run of the ingest engine over a source; counts are updated as files are committed.
    (A `Job` in `store.jobs` is what a user asked for over the API; it starts one run.)"""

    __tablename__ = "ingest_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.RUNNING)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SourceFile(Base):
    """One ingested input (an image file, later a URL or a video frame) with its outcome."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("collection_id", "content_hash"),
        #: resume: is this (path, size, mtime) already in the collection?
        Index("ix_files_collection_id_source", "collection_id", "source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("ingest_jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    #: Provenance: the path (or page URL) where the image was found.
    source: Mapped[str] = mapped_column(Text)
    source_kind: Mapped[str] = mapped_column(String(20), default="file")
    #: Image URL for web sources; None for files.
    media_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Keyed hash (HMAC-SHA256 under the deployment key) of the file's bytes.
    content_hash: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float | None] = mapped_column(Float, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    format: Mapped[str | None] = mapped_column(String(20), nullable=True)
    #: a FileStatus
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    face_count: Mapped[int] = mapped_column(Integer, default=0)
    image_blob: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    collection: Mapped[Collection] = relationship(back_populates="files")
    faces: Mapped[list[Face]] = relationship(back_populates="file", cascade="all, delete-orphan")


class FaceCount(Base):
    """How many faces of one model a collection holds, kept exact by triggers on `faces`
    (migration 0015) in the transaction that adds or removes them: the index's reconcile reads
    one row per collection instead of counting a million index entries on every open."""

    __tablename__ = "face_counts"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    faces: Mapped[int] = mapped_column(Integer, default=0)


class Face(Base):
    """One detected face with its provenance, geometry, quality and sealed embedding."""

    __tablename__ = "faces"
    __table_args__ = (
        Index("ix_faces_collection_id_id", "collection_id", "id"),
        #: the index's catch-up and counts: one model's faces of a collection, by id
        Index("ix_faces_model_id_collection_id_id", "model_id", "collection_id", "id"),
        #: one face per file, model and position, whichever worker commits it
        Index(
            "uq_faces_file_id_model_id_face_index",
            "file_id",
            "model_id",
            "face_index",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    face_index: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(100))
    runtime: Mapped[str] = mapped_column(String(50))
    detector: Mapped[str] = mapped_column(String(50))
    left: Mapped[int] = mapped_column(Integer)
    top: Mapped[int] = mapped_column(Integer)
    right: Mapped[int] = mapped_column(Integer)
    bottom: Mapped[int] = mapped_column(Integer)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    quality: Mapped[float] = mapped_column(Float)
    quality_detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    low_quality: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Seconds from the start of a video for frames; None for still images.
    frame_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    crop_blob: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    file: Mapped[SourceFile] = relationship(back_populates="faces")

    @property
    def box(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]

    @property
    def embedding_aad(self) -> bytes:
        return embedding_aad(self.file_id, self.face_index, self.model_id)


def embedding_aad(file_id: int, face_index: int, model_id: str) -> bytes:
    """Associated data sealing an embedding to its face: a swapped ciphertext fails to open."""
    return f"face:{file_id}:{face_index}:{model_id}".encode()
