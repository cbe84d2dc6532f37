"""Folder source: every image file under a root, in a stable order, read without following links.

A folder is walked and read through directory descriptors: every component below the anchor is
opened with `O_NOFOLLOW` relative to its parent's descriptor, so a symbolic link anywhere below
the anchor (a file, a folder, a folder swapped for a link after the job was checked) is refused,
never followed. Each file is checked when it is opened, not when the job was submitted:

- it is first opened with `O_PATH` (which neither reads it nor, when closed, drops the POSIX
  locks the process holds on it: SQLite's locks on its database survive) and `fstat`-ed;
- it must be a regular file with a single name (a hard link can make any file of the machine,
  the database included, appear inside a drop folder), be none of the protected files (the
  database and its WAL and SHM files, the settings file, the key file), and have the device and
  inode the walk saw;
- only then is that very inode opened for reading, through `/proc/self/fd`.

Sources are named relative to a display root when one is given (drop folders: relative to the
organisation's drop root), and a folder an operator named is labelled `folder:<its name>/<path
below it>` (`Tree.at`), so no server path reaches provenance, a job summary or an API answer; the
folder itself is recorded only on the ingest run row, which no API shows.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from facesearch.crypto import Sealer
from facesearch.vision.formats import IMAGE_SUFFIXES

#: Sealed files carry at most this many bytes more than their plaintext (magic, nonce, tag).
SEAL_OVERHEAD = 64


def upload_aad(name: str) -> bytes:
    """What a staged upload is bound to: its file name in the staging folder."""
    return b"facesearch/upload/v1\x00" + name.encode("utf-8", "surrogatepass")


MAX_DEPTH = 64
NAME_MAX = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH = getattr(os, "O_PATH", 0)
_PROC_FD = Path("/proc/self/fd")


class Refused(OSError):
    """A file or folder the walker will not open (a link, not a regular file, protected)."""

    def __init__(self, reason: str, code: int = errno.EPERM) -> None:
        super().__init__(code, reason)


def check_name(part: str) -> None:
    """One path component given by a caller: refuse what the file system would choke on."""
    if "\x00" in part:
        raise ValueError("a folder name holds a NUL character")
    if part in ("..", "") or "/" in part:
        raise ValueError("a folder must lie below the drop folder ('..' is not allowed)")
    if len(os.fsencode(part)) > NAME_MAX:
        raise ValueError(f"a folder name is longer than {NAME_MAX} bytes")


def _display(parts: tuple[str, ...]) -> str:
    return "/".join(p.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for p in parts)


def folder_label(root: Path) -> str:
    """How provenance names a folder an operator ingested: by its name, never its path."""
    return f"folder:{_display((root.name or 'root',))}"


@dataclass(frozen=True)
class Tree:
    """A folder `anchor/parts...`; `anchor` is trusted (the data directory, or a folder the
    operator named on the command line), nothing below it is followed if it is a link.

    `display_from`: sources are named by their components from this index of `parts` on
    (relative names); None names them by absolute path, or, with `source_label`, as
    `<source_label>/<path below the folder>`."""

    anchor: Path
    parts: tuple[str, ...] = ()
    display_from: int | None = None
    protected: frozenset[tuple[int, int]] = field(default_factory=frozenset)
    single_file: str | None = None
    #: files of this folder are sealed (staged uploads, ADR 0010): opened with this key
    sealer: Sealer | None = None
    #: a stable label for the root in provenance (`folder:<root name>`), instead of its path
    source_label: str | None = None

    @classmethod
    def at(cls, root: Path, *, protected: frozenset[tuple[int, int]] = frozenset()) -> Tree:
        """The folder (or one file) an operator named: the root itself may be reached through
        links, nothing below it is."""
        resolved = root.expanduser().resolve()
        if resolved.is_file():
            label = folder_label(resolved.parent)
            return cls(
                resolved.parent, (), None, protected, single_file=resolved.name, source_label=label
            )
        return cls(resolved, (), None, protected, source_label=folder_label(resolved))

    @property
    def label(self) -> str:
        if self.display_from is None:
            return str(self.anchor.joinpath(*self.parts))
        return _display(self.parts[self.display_from :]) or "."

    def source_of(self, rel: tuple[str, ...]) -> str:
        if self.display_from is None and self.source_label is not None:
            return f"{self.source_label}/{_display(self.parts + rel)}"
        if self.display_from is None:
            return str(self.anchor.joinpath(*self.parts, *rel))
        return _display(self.parts[self.display_from :] + rel)

    # -- opening --------------------------------------------------------------------------------
    def open_dir(self, rel: tuple[str, ...] = ()) -> int:
        """A descriptor of `anchor/parts/rel`, every component opened without following links.
        Raises Refused for a link or a non-folder, FileNotFoundError when missing."""
        fd = os.open(self.anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in self.parts + rel:
                try:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                        raise
                    if _is_link(fd, part):
                        raise Refused("a symbolic link; links are not followed") from None
                    raise Refused("not a folder", exc.errno) from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def exists(self) -> None:
        """Raise unless the tree's folder opens (see open_dir)."""
        os.close(self.open_dir())

    def walk(self) -> Iterator[FoundFile]:
        """Image files (by suffix) in sorted order, files of a folder before its sub-folders.
        Links with an image suffix are yielded too, so that their refusal is reported."""
        fd = self.open_dir()
        try:
            if self.single_file is not None:
                st = os.stat(self.single_file, dir_fd=fd, follow_symlinks=False)
                yield FoundFile(self, (self.single_file,), st.st_size, st.st_mtime, _id(st))
                return
            yield from self._walk(fd, (), 0)
        finally:
            os.close(fd)

    def _walk(self, fd: int, rel: tuple[str, ...], depth: int) -> Iterator[FoundFile]:
        with os.scandir(fd) as it:
            names = sorted(e.name for e in it)
        folders: list[tuple[str, os.stat_result]] = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                folders.append((name, st))
            elif Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield FoundFile(self, (*rel, name), st.st_size, st.st_mtime, _id(st))
        if depth >= MAX_DEPTH:
            return
        for name, st in folders:
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # a link put in its place since the listing, or gone
            try:
                if _id(os.fstat(sub)) == _id(st):
                    yield from self._walk(sub, (*rel, name), depth + 1)
            finally:
                os.close(sub)

    def read(self, found: FoundFile, limit: int | None = None) -> bytes:
        """The bytes of a found file (at most `limit`), after the checks in the module text."""
        with self.open_file(found) as fh:
            if self.sealer is None:
                return fh.read() if limit is None else fh.read(limit)
            sealed = fh.read() if limit is None else fh.read(limit + SEAL_OVERHEAD)
        try:
            return self.sealer.open(sealed, upload_aad(found.parts[-1]))
        except Exception:
            raise Refused("not a sealed upload of this deployment") from None

    def open_file(self, found: FoundFile) -> BinaryIO:
        """The found file opened for reading, after the checks in the module text."""
        dir_fd = self.open_dir(found.parts[:-1])
        try:
            name = found.parts[-1]
            self._check(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), found)
            if not _O_PATH or not _PROC_FD.is_dir():  # pragma: no cover - not Linux
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                return os.fdopen(fd, "rb")
            pfd = os.open(name, _O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                self._check(os.fstat(pfd), found)
                fd = os.open(_PROC_FD / str(pfd), os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
            finally:
                os.close(pfd)  # an O_PATH descriptor: closing it releases no lock
            if _id(os.fstat(fd)) != found.file_id:  # pragma: no cover - cannot happen
                os.close(fd)
                raise Refused("the file changed while it was opened")
            return os.fdopen(fd, "rb")
        finally:
            os.close(dir_fd)

    def _check(self, st: os.stat_result, found: FoundFile) -> None:
        if stat.S_ISLNK(st.st_mode):
            raise Refused("a symbolic link; links are not followed", errno.ELOOP)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file")
        if _id(st) in self.protected:
            raise Refused("a file of the data or key directory; refused")
        if st.st_nlink > 1:
            raise Refused("a hard link (the file has another name); links are not followed")
        if _id(st) != found.file_id:
            raise Refused("the file was replaced since the folder was listed")


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _id(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


@dataclass(frozen=True)
class FoundFile:
    tree: Tree
    parts: tuple[str, ...]  # below the tree's folder
    size: int
    mtime: float
    file_id: tuple[int, int] = (0, 0)  # device and inode as listed

    @property
    def path(self) -> Path:
        """Where the file is (for messages on the operator's machine only; never opened)."""
        return self.tree.anchor.joinpath(*self.tree.parts, *self.parts)

    @property
    def source(self) -> str:
        """Its provenance: relative to the display root, or labelled by the root's name."""
        return self.tree.source_of(self.parts)

    def read(self, limit: int | None = None) -> bytes:
        return self.tree.read(self, limit)


def protected_files(*paths: Path) -> frozenset[tuple[int, int]]:
    """Device and inode of each existing path (and of SQLite's -wal, -shm and -journal files
    beside a database): files no walk may open."""
    found: set[tuple[int, int]] = set()
    for path in paths:
        for candidate in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))):
            try:
                found.add(_id(os.stat(candidate)))
            except OSError:
                continue
    return frozenset(found)


def walk_images(root: Path | Tree) -> Iterator[FoundFile]:
    """Image files under `root` (a folder or one file given as a path, or a Tree), sorted,
    following no links below the root. A single file given as root is yielded whatever its
    suffix."""
    tree = root if isinstance(root, Tree) else Tree.at(root)
    yield from tree.walk()


def open_checked(path: Path, *, protected: frozenset[tuple[int, int]] = frozenset()) -> BinaryIO:
    """One file an operator named (a probe image, a log), opened for reading: links to it are
    resolved, but it must be a regular file that is none of the `protected` files and has no
    second name, checked on the opened inode before a byte is read (see the module text)."""
    resolved = path.expanduser().resolve()
    tree = Tree(resolved.parent, (), None, protected)
    st = os.stat(resolved, follow_symlinks=False)
    return tree.open_file(FoundFile(tree, (resolved.name,), st.st_size, st.st_mtime, _id(st)))


def read_checked(
    path: Path, *, protected: frozenset[tuple[int, int]] = frozenset(), limit: int | None = None
) -> bytes:
    """The bytes of `open_checked(path)` (at most `limit`)."""
    with open_checked(path, protected=protected) as fh:
        return fh.read() if limit is None else fh.read(limit)
