"""The map in docs/architecture.md, enforced: arrows point one way.

Every `facesearch` import of every module (top-level or inside a function) is checked against
the layer of the importing module. A module may import its own package and any lower layer;
packages of one layer are peers and do not import each other (the engines: store, index and
vision know nothing of one another)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facesearch"

#: top-level module or package -> layer (lower layers never import higher ones)
LAYERS: dict[str, int] = {
    "errors": 0,
    "similarity": 0,
    "clock": 0,
    "files": 0,
    "config": 1,
    "crypto": 1,
    "workqueue": 1,
    "local_channel": 1,
    # the engines: peers
    "store": 2,
    "index": 2,
    "vision": 2,
    # the composition root
    "deployment": 3,
    # services, in the order they may use each other
    "security": 4,
    "gallery": 5,
    "ingest": 6,
    "search": 6,
    "eval": 6,
    "doctor": 7,
    # the edges (the web application's static files are mounted by the api)
    "client": 8,
    "web": 8,
    "api": 9,
    "cli": 10,
    "__main__": 11,
}


def _owner(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "facesearch":
                found += [(node.lineno, f"facesearch.{a.name}") for a in node.names]
            elif node.module.startswith("facesearch."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("facesearch.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_has_a_layer() -> None:
    tops = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in _modules()}
    assert tops - {"__init__"} <= set(LAYERS), sorted(tops - set(LAYERS) - {"__init__"})


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    source = rel.stem if len(rel.parts) == 1 else rel.parts[0]
    if source == "__init__":
        return
    upward = []
    for line, target in _imports(path):
        owner = _owner(target)
        if owner == source:
            continue
        if owner not in LAYERS:
            upward.append(f"line {line}: {target} (no layer)")
        elif LAYERS[owner] >= LAYERS[source]:
            upward.append(f"line {line}: {target} (layer {LAYERS[owner]} >= {LAYERS[source]})")
    assert not upward, f"{rel} imports upward or sideways: " + "; ".join(upward)


def test_the_client_stands_alone() -> None:
    """The remote client is used on machines that hold no deployment: it imports nothing of the
    server."""
    assert not _imports(PACKAGE / "client.py")
