"""The one error vocabulary of facesearch.

Services raise only these; the CLI prints their message, and the API maps each class to one HTTP
status in `facesearch.api.errors` (the only place that knows about HTTP). A message is meant for
the person who made the request: it names what was wrong and, where it helps, what to do. It
never reveals another tenant's objects (a foreign object is `NotFound`, like a missing one).
"""

from __future__ import annotations

from datetime import datetime


class FacesearchError(Exception):
    """Base of every error that facesearch reports to a user without a traceback."""


# -- the request ----------------------------------------------------------------------------------
class InvalidRequest(FacesearchError):
    """A request is malformed or breaks a rule (API 422). `field` names the offending input
    when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ImageRejected(InvalidRequest):
    """An input file is not an acceptable image. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Unauthenticated(FacesearchError):
    """No valid credential (API 401): wrong password, expired session, unknown key."""


class Forbidden(FacesearchError):
    """The caller is known but may not do this (API 403)."""


class NoOrganisation(Forbidden):
    """The caller belongs to no organisation (a platform administrator): tenant data is not
    theirs to read or change."""


class NotFound(FacesearchError):
    """The object does not exist, or belongs to another tenant (API 404, the same answer)."""


class Conflict(FacesearchError):
    """The request contradicts the present state (API 409)."""


class ModelMismatch(Conflict):
    """Embeddings of different face models must never share a collection or an index."""


class Gone(FacesearchError):
    """A one-time credential that is used, revoked or expired (API 410)."""


class Locked(FacesearchError):
    """Too many failed attempts: the account is locked until `until` (API 423)."""

    def __init__(self, until: datetime, now: datetime) -> None:
        minutes = max(1, int((until - now).total_seconds() // 60) + 1)
        super().__init__(
            f"too many failed attempts: the account is locked for about {minutes} more "
            f"minute{'s' if minutes != 1 else ''}"
        )
        self.until = until


class TooManyRequests(FacesearchError):
    """Over a rate limit (API 429 with Retry-After)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; try again in {int(retry_after)} seconds")
        self.retry_after = int(retry_after)


class Unavailable(FacesearchError):
    """The service is too busy to take the request now (API 503 with Retry-After)."""

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(
            message or f"the service is busy; try again in {max(1, int(retry_after))} seconds"
        )
        self.retry_after = max(1, int(retry_after))


class PayloadTooLarge(FacesearchError):
    """An uploaded file or body is over the configured limit (API 413)."""


# -- the deployment -------------------------------------------------------------------------------
class ConfigError(FacesearchError):
    """The deployment is misconfigured (missing key, wrong permissions, bad setting). The API
    answers a generic 500 and logs the message; the CLI prints it."""


class NotInitialisedError(ConfigError):
    """The data directory has not been created with `facesearch init`."""


class KeyMismatchError(ConfigError):
    """The key file does not belong to this data directory."""


class CredentialsInSettingsFile(ConfigError):
    """`facesearch.toml` holds a storage credential (an AWS access key or secret): credentials
    come only from the environment or the instance role, never from a file that travels with the
    data directory and its backups."""


# -- storage --------------------------------------------------------------------------------------
class BlobIntegrityError(ConfigError, ValueError):
    """A stored blob failed its AES-GCM check: it was altered, truncated, swapped for another
    blob's ciphertext or sealed under another key. Nothing of it is returned. A `ValueError`, so
    a reader that can do without the blob (a crop, a re-embed) treats it as unreadable; anywhere
    else the API answers a generic 500 and logs it, like any fault of the deployment."""
