"""Exceptions that carry a message meant for the user (CLI and API show them as they are)."""


class FacesearchError(Exception):
    """Base of every error that facesearch reports to a user without a traceback."""


class ConfigError(FacesearchError):
    """The deployment is misconfigured (missing key, wrong permissions, bad setting)."""


class NotInitialisedError(ConfigError):
    """The data directory has not been created with `facesearch init`."""


class KeyMismatchError(ConfigError):
    """The key file does not belong to this data directory."""


class ImageRejected(FacesearchError):
    """An input file is not an acceptable image. `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelMismatchError(FacesearchError):
    """Embeddings of different face models must never share an index."""


class NotFoundError(FacesearchError):
    """A named object (collection, face, file) does not exist."""
