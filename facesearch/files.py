"""Private files and directories: what the data directory holds is its owner's only.

Depends on nothing, so every layer may use it. `Path.mkdir(parents=True, mode=0o700)` gives
only the last directory that mode (the parents get the umask's), and `open(path, "wb")` the
umask's 0644: these two give 0700 and 0600 whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


def private_dirs(path: Path) -> None:
    """Create `path` and any missing parents as 0700 directories."""
    missing = []
    at = path
    while not at.exists():
        missing.append(at)
        at = at.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


def create_private(path: Path) -> BinaryIO:
    """Open `path` for writing, created or truncated, 0600, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older version keeps its mode otherwise
    return os.fdopen(fd, "wb")
