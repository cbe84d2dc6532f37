"""Fixtures shared by the whole suite: temporary deployments and the shared face photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from facesearch.config import Settings, load_settings
from facesearch.deployment import Deployment, init_deployment
from facesearch.gallery.collections import ensure_collection
from facesearch.ingest.runner import FolderIngest, IngestSummary
from tests import pg  # noqa: F401  (reads FACESEARCH_TEST_PG before the clean-up below)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO_ROOT.parent / "shared" / "faces"
SKIP_NO_FACES = (
    f"needs the shared face photos at {SHARED_FACES} (the `shared/faces` folder beside the "
    "repository); absent here"
)

# Never let a developer's environment leak into the tests.
for _name in [n for n in os.environ if n.startswith("FACESEARCH_")]:
    del os.environ[_name]


def faces_dir(*parts: str) -> Path:
    """A folder of the shared face photos, or skip the test with a clear message."""
    path = SHARED_FACES.joinpath(*parts)
    if not path.exists():
        pytest.skip(SKIP_NO_FACES)
    return path


def new_settings(root: Path, **overrides: object) -> Settings:
    return load_settings(root / "home", key_file=root / "keys" / "master.key", **overrides)


def new_deployment(root: Path, **overrides: object) -> Deployment:
    settings = new_settings(root, **overrides)
    init_deployment(settings)
    return Deployment.open(settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return new_settings(tmp_path)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = new_deployment(tmp_path)
    yield dep
    dep.close()


def ingest(
    dep: Deployment, collection: str | int, folder: Path, *, workers: int = 1
) -> IngestSummary:
    """Ingest `folder` into a collection given by id, or by name (the operator's collection,
    created if missing), as the CLI does."""
    cid = collection if isinstance(collection, int) else ensure_collection(dep, collection)
    return FolderIngest(dep, cid, workers=workers).run(folder)
