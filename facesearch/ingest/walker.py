"""Folder source: every image file under a root, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facesearch.vision.decode import IMAGE_SUFFIXES


@dataclass(frozen=True)
class FoundFile:
    path: Path
    size: int
    mtime: float


def walk_images(root: Path) -> Iterator[FoundFile]:
    """Image files (by suffix) under `root`, sorted, following no symlinked directories.

    A single file given as root is yielded as it is, whatever its suffix.
    """
    if root.is_file():
        st = root.stat()
        yield FoundFile(root, st.st_size, st.st_mtime)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:
                continue
            if not path.is_file():
                continue
            yield FoundFile(path, st.st_size, st.st_mtime)
