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
from tests import pg  # (reads FACESEARCH_TEST_PG before the clean-up below)

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
    """Settings of a new deployment in `root` (its own PostgreSQL database on that backend)."""
    return settings_for(root / "home", root / "keys" / "master.key", **overrides)


def settings_for(home: Path, key_file: Path, **overrides: object) -> Settings:
    if pg.ON_PG and overrides.get("database_url") is None:
        overrides["database_url"] = pg.deployment_database()
    return load_settings(home, key_file=key_file, **overrides)


def init_home(home: Path, key_file: Path, **overrides: object) -> Settings:
    """Initialise a data directory as `facesearch init` does; on PostgreSQL its database URL is
    kept in its facesearch.toml, so that reopening the home finds the same database."""
    settings = settings_for(home, key_file, **overrides)
    init_deployment(settings)
    pg.remember_in_settings_file(settings)
    return settings


def new_deployment(root: Path, **overrides: object) -> Deployment:
    settings = init_home(root / "home", root / "keys" / "master.key", **overrides)
    return Deployment.open(settings)


# -- one PostgreSQL database per deployment (FACESEARCH_TEST_BACKEND=postgresql, tests/pg.py) --


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> Iterator[None]:
    pg.scope_stack.append(fixturedef.scope)
    try:
        yield
    finally:
        pg.scope_stack.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    if not pg.ON_PG:
        return
    scopes = ["function"]
    if nextitem is None or nextitem.getparent(pytest.Class) is not item.getparent(pytest.Class):
        scopes.append("class")
    if nextitem is None or nextitem.module is not item.module:  # type: ignore[attr-defined]
        scopes += ["module", "package"]
    pg.drop_created(tuple(scopes))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if pg.ON_PG:
        pg.drop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `sqlite_only` are deselected on PostgreSQL, those marked `postgresql_only`
    on SQLite; the reason is printed."""
    other, reason = (
        ("sqlite_only", pg.SQLITE_ONLY_REASON)
        if pg.ON_PG
        else ("postgresql_only", pg.PG_ONLY_REASON)
    )
    dropped = [i for i in items if i.get_closest_marker(other) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i.get_closest_marker(other) is None]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"{len(dropped)} tests deselected: {reason} (marker {other})")


@pytest.fixture
def empty_db_url(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the run's backend (SQLite file, or a new PostgreSQL
    database dropped afterwards)."""
    if not pg.ON_PG:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = pg.create_database()
    try:
        yield url
    finally:
        pg.drop_database(url)


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
