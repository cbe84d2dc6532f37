"""Fixtures shared by the vision tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def onnx_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Path:
    """A private model cache for the whole module (the ONNX conversion happens once, here)."""
    path = tmp_path_factory.mktemp("cache")
    monkeypatch_module.setenv("FACESEARCH_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp
