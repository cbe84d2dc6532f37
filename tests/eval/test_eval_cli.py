"""`facesearch eval pairs` and `eval identify` end to end on a tiny LFW tree built in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facesearch.cli import app
from facesearch.eval.embedding import choose_face
from facesearch.vision.model import Box, Detection
from tests.conftest import faces_dir

PEOPLE = {  # name -> image numbers copied from lfw-devtrain
    "Aaron_Peirsol": [1, 2, 3],
    "Aaron_Sorkin": [1, 2],
    "Abdel_Nasser_Assidi": [1, 2],
    "AJ_Cook": [1],
    "Marsha_Thomason": [1],
}
BLANK = "Blank_Wall"  # a single grey image: no face is detected, the centred box is used

PAIRS = """3
Aaron_Peirsol\t1\t3
Aaron_Sorkin\t1\t2
Abdel_Nasser_Assidi\t1\t2
AJ_Cook\t1\tMarsha_Thomason\t1
Aaron_Sorkin\t2\tBlank_Wall\t1
Abdel_Nasser_Assidi\t2\tAaron_Peirsol\t2
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = faces_dir("lfw-devtrain")
    root = tmp_path_factory.mktemp("lfw")
    for name, numbers in PEOPLE.items():
        (root / name).mkdir()
        for n in numbers:
            shutil.copyfile(
                source / name / f"{name}_{n:04d}.jpg", root / name / f"{name}_{n:04d}.jpg"
            )
    (root / BLANK).mkdir()
    Image.fromarray(np.full((250, 250, 3), 128, dtype=np.uint8)).save(
        root / BLANK / f"{BLANK}_0001.jpg"
    )
    (root / "pairs.txt").write_text(PAIRS)
    (root / "notes.txt").write_text("not a person folder")
    return root


def _run(*args: str) -> tuple[int, str]:
    """Exit code and stdout (the JSON, or the table); on failure, everything printed."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


@pytest.mark.shared_faces
def test_pairs_json(tree: Path) -> None:
    code, out = _run(
        "eval", "pairs", str(tree), str(tree / "pairs.txt"), "--json", "--workers", "2"
    )
    assert code == 0, out
    data = json.loads(out)
    assert {"accuracy", "tar_at_far_1e-3", "no_face", "pairs"} <= data.keys()
    assert data["pairs"] == 6
    assert data["images"] == 10
    assert data["no_face"] == 1  # the grey image, embedded from the centred box
    assert data["folds"] == 1 and "3 stratified contiguous folds" in data["fold_protocol"]
    assert data["accuracy"] >= 5 / 6  # dlib gets these easy genuine pairs right
    assert 0.0 <= data["tar_at_far_1e-3"] <= 1.0


@pytest.mark.shared_faces
def test_identify_json(tree: Path) -> None:
    code, out = _run("eval", "identify", str(tree), "--json", "--workers", "1")
    assert code == 0, out
    data = json.loads(out)
    assert {"rank1", "rank10", "tpir_at_fpir_0.01", "gallery", "probes", "distractors"} <= (
        data.keys()
    )
    assert data["gallery"] == 3  # Aaron_Peirsol, Aaron_Sorkin, Abdel_Nasser_Assidi
    assert data["probes"] == 4  # 2 + 1 + 1
    assert data["distractors"] == 3  # AJ_Cook, Marsha_Thomason, the blank wall
    assert data["no_face"] == 1
    assert data["rank1"] == 1.0 and data["rank10"] == 1.0  # three distinct people, clear photos
    assert 0.0 <= data["tpir_at_fpir_0.01"] <= 1.0


@pytest.mark.shared_faces
def test_pairs_table_output(tree: Path) -> None:
    code, out = _run(
        "eval", "pairs", str(tree), str(tree / "pairs.txt"), "--workers", "1", "--no-progress"
    )
    assert code == 0, out
    assert "TAR @ FAR=1e-3" in out and "accuracy" in out


@pytest.mark.shared_faces
def test_missing_image_is_a_clear_error(tree: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAaron_Sorkin 1 7\nAJ_Cook 1 Marsha_Thomason 1\n")
    code, out = _run("eval", "pairs", str(tree), str(pairs), "--json")
    assert code == 2
    assert "missing" in out and "Aaron_Sorkin_0007.jpg (line 2)" in out


@pytest.mark.shared_faces
def test_malformed_pairs_file_is_a_clear_error(tree: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\nAaron_Sorkin 1\nAJ_Cook 1 Marsha_Thomason 1\n")
    code, out = _run("eval", "pairs", str(tree), str(pairs))
    assert code == 2
    assert "line 2" in out and "expected 'name i j'" in out


@pytest.mark.shared_faces
def test_identify_without_distractors_is_a_clear_error(tmp_path: Path) -> None:
    source = faces_dir("lfw-devtrain")
    (tmp_path / "Aaron_Sorkin").mkdir()
    for n in (1, 2):
        shutil.copyfile(
            source / "Aaron_Sorkin" / f"Aaron_Sorkin_{n:04d}.jpg",
            tmp_path / "Aaron_Sorkin" / f"Aaron_Sorkin_{n:04d}.jpg",
        )
    code, out = _run("eval", "identify", str(tmp_path))
    assert code == 2 and "no person has a single image" in out


@pytest.mark.shared_faces
def test_cache_reuses_embeddings(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = (
        "eval",
        "pairs",
        str(tree),
        str(tree / "pairs.txt"),
        "--json",
        "--workers",
        "1",
        "--cache",
        str(cache),
    )
    code, first = _run(*args)
    assert code == 0, first
    assert len(list(cache.glob("eval-embeddings-*.npz"))) == 1
    code, second = _run(*args)
    assert code == 0, second
    a, b = json.loads(first), json.loads(second)
    for key in ("accuracy", "tar_at_far_1e-3", "no_face", "pairs", "threshold"):
        assert a[key] == b[key]
    assert b["seconds"] < a["seconds"]


def _det(left: int, top: int, side: int) -> Detection:
    return Detection(Box(left, top, left + side, top + side), (), 1.0, "test")


def test_choose_face_largest_or_central() -> None:
    bystander = _det(150, 20, 100)  # larger, off centre
    subject = _det(85, 85, 80)  # centred on (125, 125)
    assert choose_face([subject, bystander], 250, 250, "largest") is bystander
    assert choose_face([bystander, subject], 250, 250, "central") is subject
    with pytest.raises(ValueError, match="unknown face choice"):
        choose_face([subject], 250, 250, "first")


@pytest.mark.shared_faces
def test_face_option_is_reported_and_validated(tree: Path) -> None:
    code, out = _run("eval", "identify", str(tree), "--json", "--workers", "1", "--face", "central")
    assert code == 0, out
    assert json.loads(out)["face"] == "central"
    code, out = _run("eval", "identify", str(tree), "--face", "biggest")
    assert code == 2 and "--face" in out
