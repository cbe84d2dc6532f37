"""`init` and opening a data directory: the key lives outside, mismatches are caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from facesearch.cli import app
from facesearch.config import load_settings
from facesearch.deployment import Deployment, init_deployment
from facesearch.errors import ConfigError, KeyMismatchError, NotInitialisedError
from facesearch.store.db import current_revision


def test_init_creates_private_layout(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home", key_file=tmp_path / "keys" / "k.key")
    init_deployment(settings)
    home = settings.home
    assert (home.stat().st_mode & 0o777) == 0o700
    assert (tmp_path / "keys" / "k.key").stat().st_mode & 0o777 == 0o600
    assert settings.db_path.exists() and settings.blobs_dir.is_dir()
    dep = Deployment.open(settings)
    try:
        assert current_revision(dep.db.engine) is not None
        with dep.db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        dep.close()
    with pytest.raises(ConfigError, match="already"):
        init_deployment(settings)


def test_key_file_inside_the_data_directory_is_refused(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home", key_file=tmp_path / "home" / "k.key")
    with pytest.raises(ConfigError, match="outside"):
        init_deployment(settings)


def test_wrong_key_file_is_detected(tmp_path: Path) -> None:
    a = load_settings(tmp_path / "a", key_file=tmp_path / "ka.key")
    b = load_settings(tmp_path / "b", key_file=tmp_path / "kb.key")
    init_deployment(a)
    init_deployment(b)
    with pytest.raises(KeyMismatchError):
        Deployment.open(load_settings(tmp_path / "a", key_file=tmp_path / "kb.key"))


def test_opening_an_uninitialised_home_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotInitialisedError, match=r"facesearch --home .* init"):
        Deployment.open(load_settings(tmp_path / "nothing"))


def test_home_comes_from_flag_then_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("FACESEARCH_KEY_FILE", str(tmp_path / "env.key"))
    runner = CliRunner()
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-env" / "facesearch.toml").exists()
    result = runner.invoke(
        app,
        ["--home", str(tmp_path / "from-flag"), "--key-file", str(tmp_path / "flag.key"), "init"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-flag" / "facesearch.toml").exists()
