"""SFace: ArcFace alignment and embeddings checked against OpenCV's FaceRecognizerSF
(fixtures/opencv_reference.json), dynamic batching, the FaceModel contract, and verify without
the shared photos."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesearch import similarity
from facesearch.vision import model_files
from facesearch.vision.align import ARCFACE_TEMPLATE, align_face, similarity_transform, warp_affine
from facesearch.vision.decode import decode_image
from facesearch.vision.model import Box, Detection, FaceModel
from facesearch.vision.registry import build_model, default_detector
from facesearch.vision.sface import (
    MODEL_ID,
    SFaceModel,
    cosine_to_score,
    score_to_cosine,
)
from tests.conftest import faces_dir

REFERENCE = json.loads((Path(__file__).parent / "fixtures/opencv_reference.json").read_text())
ALIGNED = [e for e in REFERENCE["images"] if "align" in e]
needs_models = pytest.mark.skipif(
    not model_files.available(),
    reason=f"YuNet/SFace model files not installed (`{model_files.FETCH_COMMAND}`)",
)


@pytest.fixture(scope="module")
def model() -> SFaceModel:
    return SFaceModel(threads=2, providers="cpu", batch_size=8)


def load(relative: str) -> np.ndarray:
    return decode_image((faces_dir() / relative).read_bytes()).pixels


def landmarks_of(entry: dict[str, object]) -> list[tuple[float, float]]:
    row = entry["faces"][entry["align"]["face"]]  # type: ignore[index]
    return [(row[4 + 2 * k], row[5 + 2 * k]) for k in range(5)]


# -- alignment, no model needed ----------------------------------------------------------------


def test_similarity_transform_recovers_a_known_one() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    source = (ARCFACE_TEMPLATE - shift) @ np.linalg.inv(scale * rotation).T
    matrix = similarity_transform(source)
    assert matrix[:, :2] == pytest.approx(scale * rotation, abs=1e-9)
    assert source @ matrix[:, :2].T + matrix[:, 2] == pytest.approx(ARCFACE_TEMPLATE, abs=1e-9)
    mirrored = source * [-1, 1]  # a reflection is never used: the fit stays a rotation
    assert np.linalg.det(similarity_transform(mirrored)[:, :2]) > 0
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)))


def test_warp_affine_conventions() -> None:
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert np.array_equal(warp_affine(image, identity, (6, 5)), image)
    shifted = warp_affine(image, np.array([[1.0, 0, 2], [0, 1.0, 1]]), (6, 5))
    assert np.array_equal(shifted[1:, 2:], image[:-1, :-2])
    assert not shifted[0].any() and not shifted[:, :2].any()  # outside the source: 0
    half = warp_affine(image, np.array([[1.0, 0, 0.5], [0, 1.0, 0]]), (6, 5))  # src x - 0.5
    expected = np.rint((image[:, :-1].astype(float) + image[:, 1:]) / 2)
    assert np.array_equal(half[:, 1:], expected.astype(np.uint8))


@pytest.mark.shared_faces
def test_alignment_matches_opencv_align_crop() -> None:
    """Same matrix and the same chip (within one grey level) as FaceRecognizerSF.alignCrop."""
    grid = [tuple(p) for p in REFERENCE["chip_grid"]]
    worst_matrix, worst_pixel = 0.0, 0
    for entry in ALIGNED:
        image = load(entry["file"])
        points = landmarks_of(entry)
        matrix = similarity_transform(points)
        worst_matrix = max(worst_matrix, float(np.abs(matrix - entry["align"]["matrix"]).max()))
        chip = align_face(image, points)
        samples = np.array([chip[r, c] for r, c in grid], dtype=int)
        worst_pixel = max(
            worst_pixel, int(np.abs(samples - entry["align"]["chip_rgb_samples"]).max())
        )
        assert chip.mean(axis=(0, 1)) == pytest.approx(entry["align"]["chip_rgb_mean"], abs=0.05)
    print(f"\nalignment vs opencv: max |dM| {worst_matrix:.2g}, max |dpixel| {worst_pixel}")
    assert len(ALIGNED) >= 12
    assert worst_matrix < 1e-3 and worst_pixel <= 1


# -- embeddings ----------------------------------------------------------------------------------


@needs_models
@pytest.mark.shared_faces
def test_embeddings_match_opencv_feature(model: SFaceModel) -> None:
    chips = [align_face(load(e["file"]), landmarks_of(e)) for e in ALIGNED]
    raw = model.raw_embed(chips)
    theirs = np.asarray([e["feature"] for e in ALIGNED], dtype=np.float32)
    cos = (raw * theirs).sum(1) / np.linalg.norm(raw, axis=1) / np.linalg.norm(theirs, axis=1)
    relative = np.abs(raw - theirs).max(axis=1) / np.abs(theirs).max(axis=1)
    print(f"\nsface vs opencv: min cosine {cos.min():.7f}, max relative |d| {relative.max():.2g}")
    assert cos.min() > 0.99999 and relative.max() < 1e-2


@needs_models
def test_batches_give_the_same_embeddings(model: SFaceModel) -> None:
    rng = np.random.default_rng(3)
    chips = list(rng.integers(0, 256, (11, 112, 112, 3), dtype=np.uint8))
    whole = model.raw_embed(chips)  # batches of 8 and 3
    single = np.concatenate([model.raw_embed([c]) for c in chips])
    assert model.batched
    assert whole.shape == (11, 128) and np.abs(whole - single).max() < 1e-5
    unit = model.embed(chips)
    assert np.linalg.norm(unit, axis=1) == pytest.approx(np.ones(11), abs=1e-5)


@needs_models
def test_model_identity_and_options() -> None:
    built = build_model("sface", threads=1, providers="cpu", batch_size=4)
    assert isinstance(built, SFaceModel) and isinstance(built, FaceModel)
    assert default_detector("sface") == "yunet" and default_detector("dlib") == "hog"
    assert built.model_id == MODEL_ID == "sface-2021dec"
    assert (built.embedding_size, built.detector_name, built.runtime) == (
        128,
        "yunet",
        "onnxruntime-cpu",
    )
    assert built.batch_size == 4 and built.threads == 1
    assert 0 < built.default_threshold < 1
    assert built.embed([]).shape == (0, 128)
    with pytest.raises(ValueError, match="112x112"):
        built.embed([np.zeros((150, 150, 3), np.uint8)])
    with pytest.raises(ValueError, match="landmarks"):
        SFaceModel(detector="hog")
    dlib_face = Detection(Box(0, 0, 9, 9), ((1.0, 1.0),) * 5, 1.0, "dlib-hog")
    with pytest.raises(ValueError, match="five eye/nose/mouth"):
        built.align(np.zeros((9, 9, 3), np.uint8), dlib_face)


def test_score_is_monotone_in_cosine() -> None:
    cosines = np.linspace(-1, 1, 41)
    scores = [cosine_to_score(c) for c in cosines]
    assert scores == sorted(scores) and scores[-1] == 1.0 and scores[0] == 0.0
    assert score_to_cosine(cosine_to_score(0.363)) == pytest.approx(0.363)
    a, b = np.eye(2, dtype=np.float32)[0], np.array([0.6, 0.8], dtype=np.float32)
    assert similarity.score(a, b) == pytest.approx(cosine_to_score(0.6), abs=1e-6)


# -- the pipeline without ../shared/faces ------------------------------------------------------


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _cartoon_face(seed: int) -> np.ndarray:
    """A drawn face (skin ellipse, eyes, brows, nose, mouth) on a plain background: no photo."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (320, 320), tuple(int(v) for v in rng.integers(150, 230, 3)))
    draw = ImageDraw.Draw(image)
    skin = (224, 172, 140) if seed % 2 == 0 else (150, 100, 70)
    draw.ellipse((90, 60, 230, 250), fill=skin)
    eye = int(rng.integers(8, 12))
    for cx in (130, 190):
        draw.ellipse((cx - 14, 125, cx + 14, 143), fill=(250, 250, 250))
        draw.ellipse((cx - eye // 2, 128, cx + eye // 2, 140), fill=(40, 30, 20))
        draw.line((cx - 18, 112, cx + 18, 108 + seed % 5), fill=(60, 40, 30), width=5)
    draw.polygon([(160, 140), (148, 185), (172, 185)], fill=tuple(int(v * 0.85) for v in skin))
    draw.chord((128, 195, 192, 225), 0, 180, fill=(150, 40, 50))
    return np.asarray(image)


@needs_models
def test_verify_works_without_the_shared_photos() -> None:
    from facesearch.search.engine import verify_images

    # Drawn faces score 0.6-0.7 with YuNet; a lower detection threshold keeps the test robust.
    model = SFaceModel(threads=2, providers="cpu", score_threshold=0.4, fallback_threshold=0.25)
    a, b = _jpeg(_cartoon_face(0)), _jpeg(_cartoon_face(6))
    same = verify_images(model, a, a)
    assert same.model_id == "sface-2021dec" and same.same_person
    assert same.score == pytest.approx(1.0, abs=1e-4)
    other = verify_images(model, a, b)
    assert other.score < same.score
    assert other.threshold == model.default_threshold


@needs_models
def test_search_works_without_the_shared_photos() -> None:
    """SFace descriptors in the (dimension-agnostic) index: a re-encoded, slightly shifted copy
    of a face finds that face first, above the model's threshold, among 200 distractors."""
    from facesearch.index.faiss_index import FaissShard
    from facesearch.vision.pipeline import analyse, embed_faces

    model = SFaceModel(threads=2, providers="cpu", score_threshold=0.4, fallback_threshold=0.25)
    gallery = []
    for seed in (0, 6):
        faces = analyse(model, decode_image(_jpeg(_cartoon_face(seed))).pixels)
        assert len(faces) == 1 and faces[0].chip.shape == (112, 112, 3)
        gallery.append(embed_faces(model, faces)[0])
    rng = np.random.default_rng(1)
    distractors = rng.normal(size=(200, 128)).astype(np.float32)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)
    shard = FaissShard(dim=128, exact_limit=10_000, nprobe=8, rerank_factor=4)
    shard.add(np.arange(202, dtype=np.int64), np.vstack([np.stack(gallery), distractors]))
    probe_pixels = np.roll(_cartoon_face(6), (3, -4), axis=(0, 1))
    probe_faces = analyse(model, decode_image(_jpeg(probe_pixels)).pixels)
    scores, ids = shard.search(embed_faces(model, probe_faces), 3)
    assert ids[0, 0] == 1 and scores[0, 0] >= model.default_threshold
    assert scores[0, 1] < scores[0, 0]


def test_eval_pairs_takes_a_model_option(tmp_path: Path) -> None:
    """`facesearch eval pairs --model sface` on a tiny tree of drawn faces (no shared photos)."""
    from typer.testing import CliRunner

    from facesearch.cli import app

    if not model_files.available():
        pytest.skip(f"YuNet/SFace model files not installed (`{model_files.FETCH_COMMAND}`)")
    for name, seeds in {"Ann": (0, 2), "Bob": (6, 4)}.items():
        (tmp_path / name).mkdir()
        for i, seed in enumerate(seeds, start=1):
            (tmp_path / name / f"{name}_{i:04d}.jpg").write_bytes(_jpeg(_cartoon_face(seed)))
    (tmp_path / "pairs.txt").write_text("2\nAnn\t1\t2\nBob\t1\t2\nAnn\t1\tBob\t1\nAnn\t2\tBob\t2\n")
    args = [
        "eval",
        "pairs",
        str(tmp_path),
        str(tmp_path / "pairs.txt"),
        "--json",
        "--workers",
        "1",
        "--model",
        "sface",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "sface-2021dec" and data["runtime"] == "onnxruntime-cpu/yunet"
    assert data["pairs"] == 4 and data["images"] == 4 and data["fallback_detected"] == 0
    bad = CliRunner().invoke(app, [*args[:-1], "nope"])
    assert bad.exit_code != 0 and "--model" in bad.output
