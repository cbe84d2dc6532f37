"""YuNet on ONNX Runtime: dynamic input size, OpenCV-equivalent decoding and NMS (checked against
OpenCV 5.0's FaceDetectorYN, fixtures/opencv_reference.json), the bounded-cost tiling, the
fallback threshold, and small faces in a 1920 x 1080 crowd."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesearch.vision import model_files, yunet
from facesearch.vision.decode import decode_image
from facesearch.vision.yunet import GLOBAL_OWNS, YuNetDetector, decode, nms, plan
from tests.conftest import faces_dir
from tests.vision.crowd import compose_crowd, matched

REFERENCE = json.loads((Path(__file__).parent / "fixtures/opencv_reference.json").read_text())
needs_models = pytest.mark.skipif(
    not model_files.available(),
    reason=f"YuNet/SFace model files not installed (`{model_files.FETCH_COMMAND}`)",
)


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector(threads=2)


def load(relative: str) -> np.ndarray:
    return decode_image((faces_dir() / relative).read_bytes()).pixels


# -- numpy parts, no model needed ----------------------------------------------------------------


def test_nms_is_opencvs() -> None:
    boxes = np.array([[0, 0, 10, 10], [1.9, 1.9, 10, 10], [50, 50, 10, 10], [0, 0, 10, 10]])
    scores = np.array([0.8, 0.9, 0.7, 0.8], dtype=np.float32)
    # Stable order by score (ties keep input order); box 1 truncates to (1, 1, 10, 10), IoU with
    # box 0 = 81 / 119 > 0.3, so 0 and 3 go; threshold is strict (> 0.7 drops box 2).
    assert nms(boxes, scores, 0.5, 0.3) == [1, 2]
    assert nms(boxes, scores, 0.7, 0.3) == [1]
    assert nms(boxes, scores, 0.5, 0.3, top_k=1) == [1]
    assert nms(boxes, scores, 0.5, 0.9) == [1, 0, 2]  # box 3 duplicates box 0 exactly (IoU 1)
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5, 0.3) == []


def test_decode_follows_the_2023mar_layout() -> None:
    # 64 x 32 padded input: stride 8 -> 8 x 4 cells, 16 -> 4 x 2, 32 -> 2 x 1.
    cells = {8: 32, 16: 8, 32: 2}
    outs = {
        s: dict(
            cls=np.zeros((1, n, 1), np.float32),
            obj=np.zeros((1, n, 1), np.float32),
            bbox=np.zeros((1, n, 4), np.float32),
            kps=np.zeros((1, n, 10), np.float32),
        )
        for s, n in cells.items()
    }
    # One face in stride 16's cell row 2, column 1 (index 2 * 2 + 1 = 5).
    outs[16]["cls"][0, 5] = 0.81
    outs[16]["obj"][0, 5] = 1.5  # clipped to 1
    outs[16]["bbox"][0, 5] = [0.5, 0.25, np.log(2.0), np.log(3.0)]
    outs[16]["kps"][0, 5] = np.arange(10) / 10
    ordered = [outs[s][kind] for kind in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    rows = decode(ordered, 64, 32, 0.5)
    assert rows.shape == (1, 15)
    x, y, w, h = rows[0, :4]
    assert (w, h) == pytest.approx((32, 48))
    assert (x + w / 2, y + h / 2) == pytest.approx(((1 + 0.5) * 16, (2 + 0.25) * 16))
    assert rows[0, 4:14:2] == pytest.approx((1 + np.arange(0, 10, 2) / 10) * 16)
    assert rows[0, 5:14:2] == pytest.approx((2 + np.arange(1, 10, 2) / 10) * 16)
    assert rows[0, 14] == pytest.approx(0.9)  # sqrt(0.81 * 1)
    assert decode(ordered, 64, 32, 0.95).shape == (0, 15)


@pytest.mark.parametrize(
    "shape", [(1080, 1920), (3000, 4000), (8000, 6000), (250, 250), (112, 92), (120, 4000)]
)
def test_plan_bounds_the_cost(shape: tuple[int, int]) -> None:
    height, width = shape
    windows = plan(height, width)
    assert sum(w.pixels for w in windows) <= yunet.MAX_PIXELS
    first, *tiles = windows
    assert max(first.width, first.height) <= yunet.GLOBAL_SIDE and first.x == first.y == 0
    if tiles:
        scale = tiles[0].scale
        assert scale <= yunet.MAX_UPSCALE and all(t.scale == scale for t in tiles)
        covered = np.zeros((round(height * scale), round(width * scale)), bool)
        for t in tiles:
            assert t.width <= yunet.TILE_SIDE and t.height <= yunet.TILE_SIDE
            covered[t.y : t.y + t.height, t.x : t.x + t.width] = True
        assert covered.all()


def test_a_full_hd_photo_is_searched_at_1_5x() -> None:
    """Faces of 20 px are found reliably from about 30 px of network input (see ADR 0005)."""
    assert plan(1080, 1920)[-1].scale >= 1.5


def test_fallback_threshold_applies_only_when_nothing_else_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = np.zeros((1, 15), np.float32)
    row[0, :4] = [10, 10, 40, 40]
    weak, strong = row.copy(), row.copy()
    weak[0, 14], strong[0, 14] = 0.5, 0.9
    strong[0, :2] = [100, 100]
    image = np.zeros((200, 200, 3), np.uint8)
    with_fallback = YuNetDetector(score_threshold=0.6, fallback_threshold=0.45)
    without = YuNetDetector(score_threshold=0.6, fallback_threshold=None)
    for det in (with_fallback, without):
        monkeypatch.setattr(det, "candidates", lambda img, t: weak[weak[:, 14] >= t])
    assert [d.confidence for d in with_fallback.detect(image)] == [pytest.approx(0.5)]
    assert without.detect(image) == []
    monkeypatch.setattr(with_fallback, "candidates", lambda img, t: np.concatenate([weak, strong]))
    assert [d.confidence for d in with_fallback.detect(image)] == [pytest.approx(0.9)]
    with pytest.raises(ValueError):
        YuNetDetector(score_threshold=0.5, fallback_threshold=0.6)


# -- with the model --------------------------------------------------------------------------------


@needs_models
@pytest.mark.parametrize("shape", [(640, 640), (100, 130), (1080, 1920), (33, 31)])
def test_any_input_size_runs(detector: YuNetDetector, shape: tuple[int, int]) -> None:
    outputs = detector.forward(np.zeros((*shape, 3), np.uint8))
    ph, pw = yunet.padded_size(*shape)
    for i, stride in enumerate(yunet.STRIDES):
        cells = (ph // stride) * (pw // stride)
        assert outputs[i].shape == (1, cells, 1) and outputs[9 + i].shape == (1, cells, 10)


@needs_models
def test_blank_image_has_no_faces(detector: YuNetDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


@needs_models
@pytest.mark.shared_faces
def test_matches_opencv_face_detector_yn(detector: YuNetDetector) -> None:
    """Same boxes, landmarks and scores as cv2.FaceDetectorYN (input size = image size)."""
    worst_xy, worst_score, faces = 0.0, 0.0, 0
    for entry in REFERENCE["images"]:
        image = load(entry["file"])
        import hashlib

        assert hashlib.sha256(image.tobytes()).hexdigest() == entry["pixels_sha256"], (
            f"{entry['file']} decodes differently from when the fixtures were made"
        )
        mine = detector.detect_single(image, REFERENCE["score_threshold"])
        theirs = np.asarray(entry["faces"], dtype=np.float32).reshape(-1, 15)
        assert mine.shape == theirs.shape, entry["file"]
        worst_xy = max(worst_xy, float(np.abs(mine[:, :14] - theirs[:, :14]).max(initial=0)))
        worst_score = max(worst_score, float(np.abs(mine[:, 14] - theirs[:, 14]).max(initial=0)))
        faces += len(theirs)
    print(
        f"\nyunet vs opencv: {faces} faces, max |dxy| {worst_xy:.2g} px, |dscore| {worst_score:.2g}"
    )
    assert faces >= 20
    assert worst_xy < 0.01 and worst_score < 1e-3


@needs_models
@pytest.mark.shared_faces
def test_finds_the_labelled_people(detector: YuNetDetector) -> None:
    for name, people in {
        "two_people.jpg": 2,
        "obama_and_biden.jpg": 2,
        "kit_with_rose.jpg": 2,
        "longoria-cooper.jpg": 2,
    }.items():
        image = load(f"small_multi/{name}")
        found = detector.detect(image)
        assert len(found) >= people, name
        areas = [d.box.width * d.box.height for d in found]
        assert areas == sorted(areas, reverse=True)
        for det in found:
            assert det.detector == "yunet" and len(det.landmarks) == 5
            assert det.confidence >= yunet.FALLBACK_THRESHOLD
            x, y = det.landmarks[2]  # nose tip inside the box
            assert det.box.left <= x <= det.box.right and det.box.top <= y <= det.box.bottom


@needs_models
@pytest.mark.shared_faces
@pytest.mark.parametrize("seed", [8, 3])
def test_every_small_face_in_a_full_hd_crowd(detector: YuNetDetector, seed: int) -> None:
    image, truth = compose_crowd(faces_dir("lfw-devtrain"), count=16, sizes=(20, 35), seed=seed)
    assert image.shape == (1080, 1920, 3)
    found = [d.box.as_list() for d in detector.detect(image)]
    assert matched(truth, found) == 16
    assert len(found) <= 17  # at most one detection that is not a pasted face


@pytest.mark.shared_faces
def test_a_quick_look_finds_the_big_faces_and_looks_thoroughly_when_it_finds_none(
    detector: YuNetDetector,
) -> None:
    """Probe searches look quickly (the global pass) unless that finds nothing."""
    scene = load("small_multi/obama_and_biden.jpg")
    quick = detector.detect(scene, thorough=False)
    thorough = detector.detect(scene)
    assert quick and len(quick) <= len(thorough)
    boxes = [d.box.as_list() for d in thorough]
    assert matched(boxes, [d.box.as_list() for d in quick]) == len(quick)
    # a 640x480 photo is one pass at its own size
    assert len(detector.plan(480, 640, thorough=False)) == 1
    assert len(detector.plan(480, 640)) > 1
    # a Full HD crowd of 20-35 px faces: the quick look still tiles at full resolution and finds
    # nearly all of them (the thorough look, at 1.5x, finds every one)
    crowd, truth = compose_crowd(faces_dir("lfw-devtrain"), count=16, sizes=(20, 35), seed=8)
    found = [d.box.as_list() for d in detector.detect(crowd, thorough=False)]
    assert matched(truth, found) >= 14


@pytest.mark.shared_faces
def test_a_face_has_the_same_landmarks_however_it_was_found(detector: YuNetDetector) -> None:
    """Landmarks come from a second look at each face on its own (refinement), so the quick
    look of a search and the thorough look of ingest align a face the same way, and the probe
    photo of a gallery face scores 1.0 against it."""
    for name in ("small_multi/obama_and_biden.jpg", "small_multi/two_people.jpg"):
        scene = load(name)
        quick = detector.detect(scene, thorough=False)
        thorough = {tuple(d.box.as_list()): d for d in detector.detect(scene)}
        # faces the global pass finds well (small ones are the detail pass's, at another scale)
        big = GLOBAL_OWNS / detector.plan(*scene.shape[:2])[0].scale
        large = [d for d in quick if min(d.box.width, d.box.height) >= big]
        assert large
        for face in large:
            same = thorough[tuple(face.box.as_list())]
            assert np.allclose(same.landmarks, face.landmarks, atol=1e-3), name


@pytest.mark.shared_faces
def test_refinement_finds_the_face_again_in_its_own_crop(detector: YuNetDetector) -> None:
    scene = load("small_multi/obama_and_biden.jpg")
    rows = detector.raw(scene)
    refined = detector.refine(scene, rows)
    assert refined.shape == rows.shape
    moved = np.abs(refined[:, 4:14] - rows[:, 4:14]).max(axis=1)
    widths = rows[:, 2]
    # the same faces, each landmark moved by a small fraction of its face's width at most
    assert (moved < 0.1 * widths).all()
    assert (refined[:, 14] == rows[:, 14]).all()  # scores are the first look's
    plain = YuNetDetector(refine_side=0, threads=2)
    assert [d.landmarks for d in plain.detect(scene)] != [
        d.landmarks for d in detector.detect(scene)
    ]
