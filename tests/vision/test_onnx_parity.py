"""dlib's descriptor network on ONNX Runtime: the .dat reader, the converter, the cache, and
parity with dlib's own runtime (max absolute difference per component <= 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesearch.vision.decode import decode_image
from facesearch.vision.dlib_model import DlibFaceModel
from facesearch.vision.dlib_onnx import (
    DlibFormatError,
    build_onnx,
    cache_dir,
    converted_model,
    read_network,
)
from facesearch.vision.dlib_onnx.cache import default_source
from facesearch.vision.dlib_onnx.reader import AddPrev, Conv, Fc, TagOrSkip
from facesearch.vision.onnx_model import OnnxFaceModel, choose_providers, runtime_name
from facesearch.vision.registry import build_model

FACES = Path(__file__).resolve().parents[2] / "../shared/faces"
TOLERANCE = 1e-4
LFW_FACES = 500

needs_faces = pytest.mark.skipif(
    not FACES.is_dir(), reason=f"test data not found at {FACES} (see its README.md)"
)


@pytest.fixture(scope="module")
def dlib_model() -> DlibFaceModel:
    return DlibFaceModel()


@pytest.fixture(scope="module")
def onnx_model(onnx_cache: Path) -> OnnxFaceModel:
    return OnnxFaceModel(batch_size=16, threads=2, providers="cpu")


# -- reader and converter ----------------------------------------------------------------------


def test_reader_recovers_the_face_resnet() -> None:
    net = read_network(default_source().read_bytes())
    assert net.loss == "loss_metric_2"
    assert net.input.rows == net.input.cols == 150
    assert net.input.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    convs = [layer for layer in net.layers if isinstance(layer, Conv)]
    assert len(convs) == 29
    assert convs[0].weights.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2)
    assert convs[-1].weights.shape == (256, 256, 3, 3)
    assert sum(isinstance(layer, AddPrev) for layer in net.layers) == 14
    assert sum(isinstance(layer, TagOrSkip) for layer in net.layers) == 22
    fc = net.layers[-1]
    assert isinstance(fc, Fc) and fc.weights.shape == (256, 128) and fc.bias is None


def test_reader_rejects_truncated_and_foreign_data() -> None:
    data = default_source().read_bytes()
    with pytest.raises(DlibFormatError):
        read_network(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        read_network(b"\x01\x01\x01\x05hello")


def test_random_chips_match_dlib(onnx_model: OnnxFaceModel, dlib_model: DlibFaceModel) -> None:
    rng = np.random.default_rng(4)
    chips = list(rng.integers(0, 256, (6, 150, 150, 3), dtype=np.uint8))
    chips.append(np.zeros((150, 150, 3), np.uint8))
    chips.append(np.full((150, 150, 3), 255, np.uint8))
    diff = np.abs(onnx_model.raw_embed(chips) - dlib_model.raw_embed(chips)).max()
    assert diff <= TOLERANCE


def test_unfolded_graph_is_equivalent() -> None:
    import onnxruntime as ort

    net = read_network(default_source().read_bytes())
    rng = np.random.default_rng(1)
    chips = rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    outs = []
    for fold in (True, False):
        sess = ort.InferenceSession(
            build_onnx(net, fold_affine=fold).SerializeToString(),
            providers=["CPUExecutionProvider"],
        )
        outs.append(sess.run(None, {"chips": chips})[0])
    assert np.abs(outs[0] - outs[1]).max() < 1e-5


# -- cache --------------------------------------------------------------------------------------


def test_cache_converts_once_and_checks_the_checksum(onnx_cache: Path) -> None:
    path = converted_model()
    assert path.parent == cache_dir() and str(path).startswith(str(onnx_cache))
    meta = json.loads(path.with_suffix(".json").read_text())
    from facesearch.vision.dlib_onnx.cache import sha256_of

    assert meta["source_sha256"] == sha256_of(default_source())
    assert meta["source_sha256"][:16] in path.name
    mtime = path.stat().st_mtime_ns
    assert converted_model() == path and path.stat().st_mtime_ns == mtime  # reused
    path.write_bytes(b"corrupt")
    assert converted_model() == path  # rebuilt, since its checksum no longer matches
    assert path.stat().st_size > 20_000_000


# -- model object -------------------------------------------------------------------------------


def test_model_identity_and_options(onnx_cache: Path) -> None:
    model = build_model("dlib-onnx", detector="hog", batch_size=8, threads=1, providers="cpu")
    assert isinstance(model, OnnxFaceModel)
    assert model.model_id == DlibFaceModel.model_id == "dlib-resnet-v1"
    assert model.runtime == "onnxruntime-cpu"
    assert model.batch_size == 8 and model.threads == 1
    assert model.embed([]).shape == (0, 128)
    with pytest.raises(ValueError):
        model.embed([np.zeros((100, 100, 3), np.uint8)])
    with pytest.raises(ValueError):
        OnnxFaceModel(providers="tpu")


def test_gpu_absence_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    import facesearch.vision.onnx_model as om

    monkeypatch.setattr(om, "available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        choose_providers("cuda")
    monkeypatch.setattr(
        om, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert runtime_name(choose_providers("auto")) == "onnxruntime-cuda"
    assert choose_providers("cpu") == ["CPUExecutionProvider"]


def test_batches_give_the_same_result(onnx_model: OnnxFaceModel) -> None:
    rng = np.random.default_rng(7)
    chips = list(rng.integers(0, 256, (19, 150, 150, 3), dtype=np.uint8))
    whole = onnx_model.raw_embed(chips)
    single = np.concatenate([onnx_model.raw_embed([c]) for c in chips])
    assert np.abs(whole - single).max() < 1e-5
    # embed() gives the descriptors in dlib's own space (compared by Euclidean distance).
    assert np.array_equal(onnx_model.embed(chips), whole)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
    reason="no CUDA execution provider (onnxruntime-gpu and an NVIDIA GPU); CPU path tested",
)
def test_cuda_matches_dlib(onnx_cache: Path, dlib_model: DlibFaceModel) -> None:
    model = OnnxFaceModel(batch_size=64, providers="cuda")
    rng = np.random.default_rng(5)
    chips = list(rng.integers(0, 256, (64, 150, 150, 3), dtype=np.uint8))
    diff = np.abs(model.raw_embed(chips) - dlib_model.raw_embed(chips)).max()
    assert model.runtime == "onnxruntime-cuda"
    print(f"\ncuda: max |onnx - dlib| = {diff:.3g}")
    assert diff <= TOLERANCE


# -- parity on real faces -------------------------------------------------------------------------


def _load(path: Path) -> np.ndarray:
    return decode_image(path.read_bytes()).pixels


def _max_diff(
    onnx_model: OnnxFaceModel, dlib_model: DlibFaceModel, chips: list[np.ndarray]
) -> float:
    a = onnx_model.raw_embed(chips)
    b = dlib_model.raw_embed(chips)
    return float(np.abs(a - b).max())


@needs_faces
@pytest.mark.shared_faces
def test_parity_on_every_face_of_small(
    onnx_model: OnnxFaceModel, dlib_model: DlibFaceModel
) -> None:
    files = sorted(
        p for p in (FACES / "small").rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    files += sorted((FACES / "small_multi").glob("*.jpg"))
    chips = []
    for path in files:
        image = _load(path)
        detections = dlib_model.detect(image) or [dlib_model.centred_detection(image)]
        chips += [dlib_model.align(image, d) for d in detections]
    assert len(chips) >= 37
    diff = _max_diff(onnx_model, dlib_model, chips)
    print(f"\nsmall: {len(chips)} faces, max |onnx - dlib| = {diff:.3g}")
    assert diff <= TOLERANCE


@needs_faces
@pytest.mark.shared_faces
@pytest.mark.slow
def test_parity_on_500_lfw_faces(onnx_model: OnnxFaceModel, dlib_model: DlibFaceModel) -> None:
    files = sorted((FACES / "lfw-devtrain").glob("*/*.jpg"))
    step = max(1, len(files) // LFW_FACES)
    chosen = files[::step][:LFW_FACES]
    chips = []
    for path in chosen:
        image = _load(path)
        # LFW's centred-box protocol (the faces are centred): dlib landmarks + dlib chip.
        chips.append(dlib_model.align(image, dlib_model.centred_detection(image)))
    assert len(chips) == LFW_FACES
    diff = _max_diff(onnx_model, dlib_model, chips)
    print(f"\nlfw-devtrain: {len(chips)} faces, max |onnx - dlib| = {diff:.3g}")
    assert diff <= TOLERANCE
