"""Typed settings. Precedence: command-line flags > environment (FACESEARCH_*) > the data
directory's facesearch.toml > defaults. Secrets never come from the TOML file or a default: the
only secret of the embedded deployment is the master key, read from a 0600 key file that lives
outside the data directory."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facesearch.errors import ConfigError, CredentialsInSettingsFile

APP_NAME = "facesearch"
#: settings that hold secrets: the environment (or a flag) only, never the settings file
ENV_ONLY = ("milvus_token",)
SETTINGS_FILE = "facesearch.toml"


def default_home() -> Path:
    """--home, else FACESEARCH_HOME, else the per-user data directory."""
    env = os.environ.get("FACESEARCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_key_file(home: Path) -> Path:
    """A per-deployment key file under the user's config directory, never inside the home."""
    tag = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    return Path(platformdirs.user_config_dir(APP_NAME)) / "keys" / f"{tag}.key"


class Settings(BaseSettings):
    """Every setting of facesearch. Each one is documented in docs/settings.md (a test checks)."""

    #: errors name the setting and the rule, never the value (it may carry a credential)
    model_config = SettingsConfigDict(
        env_prefix="FACESEARCH_", extra="ignore", hide_input_in_errors=True
    )

    home: Path = Field(default_factory=default_home, description="data directory")
    key_file: Path | None = Field(
        default=None, description="master key file (outside the data directory, mode 0600)"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in WAL mode inside the home"
    )
    model: Literal["sface", "dlib", "dlib-onnx"] = Field(
        default="sface",
        description="face model of new collections (and of verify and eval): sface (YuNet "
        "+ SFace), dlib-onnx or dlib (dlib's ResNet); a collection keeps the model it was "
        "created with",
    )
    detector: Literal["yunet", "hog", "cnn", "centerface"] | None = Field(
        default=None,
        description="face detector of that model; default: the model's own (yunet for sface, "
        "hog for dlib)",
    )
    probe_detection: Literal["quick", "thorough"] = Field(
        default="quick",
        description="how a probe photo is searched for faces: quick (no pass enlarges the "
        "photo; every pass when that finds nothing) or thorough (as ingest does)",
    )
    workers: int = Field(default=0, ge=0, description="ingest worker processes; 0 = every core")
    ingest_nice: int = Field(
        default=10, ge=0, le=19, description="niceness of ingest worker processes"
    )
    embed_batch_size: int = Field(default=32, ge=1, le=1024, description="faces per embed call")
    onnx_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads per model; 0 = one per core"
    )
    onnx_providers: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="ONNX Runtime execution provider: auto = CUDA when available, else CPU",
    )
    max_file_bytes: int = Field(default=50_000_000, ge=1, description="largest accepted file")
    max_image_pixels: int = Field(
        default=60_000_000, ge=1, description="largest accepted image (pixels)"
    )
    max_image_side: int = Field(default=20_000, ge=1, description="largest accepted image side")
    max_decode_pixels: int = Field(
        default=12_000_000,
        ge=10_000,
        description="larger images are decoded reduced to at most this many pixels",
    )
    max_request_pixels: int = Field(
        default=200_000_000, ge=1, description="most image pixels (by their headers) per request"
    )
    searches_per_minute_per_account: int = Field(
        default=60, ge=1, le=100_000, description="searches and verifications one account may run"
    )
    searches_per_minute_per_address: int = Field(
        default=120, ge=1, le=100_000, description="searches and verifications from one address"
    )
    service_socket: bool = Field(
        default=True,
        description="the service answers CLI searches of its data directory on a private "
        "Unix socket (run/service.sock)",
    )
    model_slots: int = Field(
        default=2, ge=1, le=64, description="searches analysed by the model at the same time"
    )
    model_queue_size: int = Field(
        default=16, ge=0, description="searches waiting for a model slot, all organisations"
    )
    model_queue_per_org: int = Field(
        default=4, ge=1, description="searches one organisation may have running or waiting"
    )
    model_queue_wait_seconds: float = Field(
        default=30.0, gt=0, description="longest wait for a model slot before 503"
    )
    ingest_queue_per_org: int = Field(
        default=4, ge=1, description="ingest jobs one organisation may have queued or running"
    )
    ingest_queue_size: int = Field(
        default=32, ge=1, description="ingest jobs queued or running, all organisations"
    )
    job_runner: Literal["inprocess", "procrastinate"] = Field(
        default="inprocess",
        description="who runs server-side ingest jobs (uploads, server folders, re-embeds): "
        "inprocess (one worker thread of the service) or procrastinate (a job queue on the "
        "deployment's PostgreSQL database, run by `facesearch worker` processes on any host)",
    )
    job_queue: str = Field(
        default="ingest",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the procrastinate queue jobs are deferred to (job_runner = procrastinate)",
    )
    worker_heartbeat_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="how often a `facesearch worker` tells the database it is alive",
    )
    worker_stalled_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="a worker silent this long is dead: another worker retries its jobs, "
        "which resume where it stopped",
    )
    store_images: bool = Field(
        default=True, description="keep an encrypted copy of each ingested image"
    )

    # -- where sealed images and crops live (docs/scaling.md) -------------------------------------
    blob_store: Literal["local", "s3"] = Field(
        default="local",
        description="where sealed images and crops are stored: local (the data directory) or s3",
    )
    s3_bucket: str | None = Field(
        default=None, description="the bucket of blob_store = s3 (required with it)"
    )
    s3_prefix: str = Field(
        default="", description="key prefix of the blobs in the bucket (e.g. facesearch/)"
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="endpoint of an S3-compatible server (MinIO, Ceph...); default: AWS S3",
    )
    s3_region: str | None = Field(
        default=None, description="the bucket's region; default: the AWS chain's"
    )
    min_face_size: int = Field(
        default=60, ge=1, description="faces smaller than this (px) are marked low quality"
    )
    index_shortlist: int = Field(
        default=3000,
        ge=1,
        description="faces of a collection kept by the PQ fast scan for re-ranking (shared "
        "out among its segments by size)",
    )
    index_rerank: int = Field(
        default=40,
        ge=1,
        description="best short-listed faces (by 8-bit codes) re-scored from the exact vectors",
    )
    index_search_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="threads one search spreads its segment scans over (0: the cores, up to 4)",
    )
    index_backend: Literal["segments", "milvus"] = Field(
        default="segments",
        description="where vectors are searched: segments (the embedded, sealed segment index) "
        "or milvus (Milvus Lite or a Milvus server, see milvus_uri)",
    )
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus to use when index_backend = milvus: a local file path ending in .db "
        "(Milvus Lite, in this process) or http(s)://host:port (a server); default: milvus.db "
        "in the home",
    )
    milvus_token: SecretStr | None = Field(
        default=None,
        description="Milvus credentials (user:password or an API key); only from the "
        "environment (FACESEARCH_MILVUS_TOKEN), refused in the settings file",
    )
    milvus_ca_file: Path | None = Field(
        default=None,
        description="CA certificate (PEM) that signs the Milvus server's TLS certificate",
    )
    milvus_collection_prefix: str = Field(
        default="facesearch",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="prefix of the Milvus collections of this deployment (one set per model)",
    )
    milvus_index: Literal["HNSW", "IVF_FLAT", "FLAT"] = Field(
        default="HNSW", description="Milvus index type of new Milvus collections"
    )
    milvus_shortlist: int = Field(
        default=256,
        ge=1,
        le=16_384,
        description="candidates per query asked of Milvus, then re-scored exactly",
    )
    milvus_hnsw_ef: int = Field(
        default=4096,
        ge=16,
        le=32_768,
        description="how wide an HNSW search walks the graph (at least the short list)",
    )

    # -- the service (facesearch serve) ----------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="address the service binds to")
    port: int = Field(default=8600, ge=1, le=65535, description="port the service listens on")
    public_url: str | None = Field(
        default=None, description="external base URL used in enrolment and invitation links"
    )
    tls_cert: Path | None = Field(default=None, description="TLS certificate chain (PEM)")
    tls_key: Path | None = Field(default=None, description="TLS private key (PEM, mode 0600)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of reverse proxies whose X-Forwarded-* headers are believed",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS (never '*')"
    )
    debug: bool = Field(default=False, description="debug mode (never in production)")
    max_request_bytes: int = Field(
        default=25_000_000, ge=1024, le=2_000_000_000, description="largest accepted request body"
    )
    request_header_timeout: float = Field(
        default=10.0, ge=1, le=300, description="seconds a client has to send request headers"
    )
    request_body_timeout: float = Field(
        default=60.0, ge=1, le=3600, description="seconds a client has to send a request body"
    )
    max_header_bytes: int = Field(
        default=16_384, ge=4096, le=1_048_576, description="largest accepted request head"
    )
    session_idle_minutes: int = Field(
        default=30, ge=1, le=1440, description="session idle timeout (at most a day)"
    )
    session_absolute_hours: int = Field(
        default=12, ge=1, le=720, description="session absolute lifetime (at most 30 days)"
    )
    reauth_minutes: int = Field(
        default=10,
        ge=1,
        le=24 * 60,
        description="sensitive actions need a password and second factor proved this recently",
    )
    inactive_days: int = Field(
        default=90,
        ge=0,
        description="accounts unused for this many days are disabled by the sweep (0: never)",
    )
    system_use_banner: str = Field(
        default="",
        max_length=4000,
        description="system-use notice shown before sign-in (GET /api/v1/banner) and on sign-in",
    )
    max_platform_admins: int = Field(
        default=2, ge=1, description="the doctor warns above this many platform administrators"
    )
    log_file: Path | None = Field(default=None, description="service log file")
    backup_dir: Path | None = Field(default=None, description="where backups are written")
    audit_anchor_dir: Path | None = Field(
        default=None,
        description="where signed audit checkpoints are appended (default: the key file's folder)",
    )
    audit_checkpoint_every: int = Field(
        default=1, ge=1, le=10_000, description="audit entries between two signed checkpoints"
    )
    audit_forward_syslog: str | None = Field(
        default=None, description="also send each audit checkpoint to syslog (host:port or path)"
    )
    audit_forward_url: str | None = Field(
        default=None, description="also POST each audit checkpoint to this HTTP sink"
    )

    @field_validator("s3_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        value = value.strip()
        if value and (
            not _S3_PREFIX.match(value) or any(p in (".", "..") for p in value.split("/"))
        ):
            raise ValueError(
                "segments of letters, digits, '.', '_' or '-' separated by '/', no leading '/'"
            )
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("no credentials in the URL: use the AWS environment or role")
        return value.strip()

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.blob_store == "s3" and not (self.s3_bucket or "").strip():
            raise ValueError("blob_store = 's3' needs s3_bucket")
        return self

    @property
    def resolved_key_file(self) -> Path:
        return (self.key_file or default_key_file(self.home)).expanduser()

    @property
    def db_path(self) -> Path:
        return self.home / "facesearch.db"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def settings_file(self) -> Path:
        return self.home / SETTINGS_FILE

    @property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str(self.home / "milvus.db")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.db_path}"

    @property
    def uses_job_queue(self) -> bool:
        """Whether jobs go through the PostgreSQL job queue (to `facesearch worker`s)."""
        return self.job_runner == "procrastinate"

    def model_options(self, processes: int = 1) -> dict[str, Any]:
        """Options for `build_model`: ONNX threads are divided among `processes` workers."""
        cores = os.cpu_count() or 1
        threads = self.onnx_threads or max(1, cores // max(1, processes))
        return {
            "batch_size": self.embed_batch_size,
            "threads": threads,
            "providers": self.onnx_providers,
        }

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)


_S3_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*/?$")

#: Names of storage credentials that must never be written in facesearch.toml.
_CREDENTIAL_NAME = re.compile(
    r"(?i)^(?:aws_|s3_|minio_)?(?:access_key(?:_id)?|secret(?:_access)?_key|session_token)$"
)
#: An AWS access key id (long-term AKIA, temporary ASIA), whatever it is called.
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine (localhost or a loopback address)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _items(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in doc.items():
        if isinstance(value, dict):
            yield from _items(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def credentials_in(document: dict[str, Any]) -> list[str]:
    """The dotted names of storage credentials in a settings document (never their values):
    keys named like an access key or secret (aws_access_key_id, aws_secret_access_key,
    s3_secret_key, session_token...) and any value that is an AWS access key id."""
    found = []
    for name, value in _items(document):
        leaf = name.rsplit(".", 1)[-1]
        if value in (None, ""):
            continue
        if _CREDENTIAL_NAME.match(leaf) or (isinstance(value, str) and _AWS_KEY_ID.search(value)):
            found.append(name)
    return found


def read_settings_document(home: Path) -> dict[str, Any]:
    """The whole facesearch.toml of `home` (empty when absent)."""
    path = home / SETTINGS_FILE
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def read_settings_file(home: Path, *, refuse_credentials: bool = True) -> dict[str, Any]:
    """The `[settings]` table of `home`'s facesearch.toml. A file that holds storage credentials
    is refused (`CredentialsInSettingsFile`) unless `refuse_credentials` is off (the doctor, which
    reports them)."""
    data = read_settings_document(home)
    found = credentials_in(data)
    if found and refuse_credentials:
        raise CredentialsInSettingsFile(
            f"{home / SETTINGS_FILE} holds storage credentials ({', '.join(found)}): remove them "
            "and give them through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "
            "a shared credentials file outside the data directory, or the instance role; rotate "
            "them, since the file travels with backups"
        )
    return dict(data.get("settings", {}))


def load_settings(
    home: Path | None = None, *, refuse_credentials: bool = True, **overrides: Any
) -> Settings:
    """Settings for a data directory; TOML values apply where the environment sets nothing."""
    resolved_home = (home or default_home()).expanduser()
    file_values = read_settings_file(resolved_home, refuse_credentials=refuse_credentials)
    for name in ENV_ONLY if refuse_credentials else ():
        if file_values.get(name) not in (None, ""):
            raise ConfigError(
                f"{resolved_home / SETTINGS_FILE}: `{name}` is a secret; remove it and pass it "
                f"through the environment (FACESEARCH_{name.upper()}), then rotate it"
            )
    uri = file_values.get("milvus_uri")
    if refuse_credentials and isinstance(uri, str) and urlsplit(uri).password:
        raise ConfigError(
            f"{resolved_home / SETTINGS_FILE}: `milvus_uri` carries a password; pass the "
            "credentials through FACESEARCH_MILVUS_TOKEN, then rotate them"
        )
    env_set = {name for name in Settings.model_fields if f"FACESEARCH_{name.upper()}" in os.environ}
    values: dict[str, Any] = {k: v for k, v in file_values.items() if k not in env_set}
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["home"] = resolved_home
    return Settings(**values)
