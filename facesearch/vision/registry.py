"""Build the configured FaceModel by name. New runtimes register here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from facesearch.vision.model import FaceModel

_FACTORIES: dict[str, Callable[..., FaceModel]] = {}


def register(name: str, factory: Callable[..., FaceModel]) -> None:
    _FACTORIES[name] = factory


def _dlib(detector: str = "hog", threads: int = 0, **_: object) -> FaceModel:
    if detector == "centerface":
        from facesearch.vision.centerface import DlibCenterFaceModel

        return DlibCenterFaceModel(threads=threads)
    from facesearch.vision.dlib_model import DlibFaceModel

    return DlibFaceModel(detector=detector)


register("dlib", _dlib)


def _dlib_onnx(
    detector: str = "hog",
    batch_size: int = 32,
    threads: int = 0,
    providers: str = "auto",
    **_: object,
) -> FaceModel:
    from facesearch.vision.onnx_model import OnnxFaceModel

    return OnnxFaceModel(
        detector=detector, batch_size=batch_size, threads=threads, providers=providers
    )


register("dlib-onnx", _dlib_onnx)


def _sface(
    detector: str = "yunet",
    batch_size: int = 8,
    threads: int = 0,
    providers: str = "auto",
    **options: object,
) -> FaceModel:
    from facesearch.vision.sface import SFaceModel

    extra: dict[str, Any] = {
        k: v
        for k, v in options.items()
        if k in ("score_threshold", "fallback_threshold", "max_pixels", "model_dir")
    }
    return SFaceModel(
        detector=detector, batch_size=batch_size, threads=threads, providers=providers, **extra
    )


register("sface", _sface)

#: The detector each model uses when none is named.
DEFAULT_DETECTORS = {"dlib": "hog", "dlib-onnx": "hog", "sface": "yunet"}

#: The descriptor (model id) each registered runtime computes. Two runtimes with one id give
#: interchangeable embeddings (dlib's own and its ONNX conversion, docs/decisions/0004).
MODEL_IDS = {"dlib": "dlib-resnet-v1", "dlib-onnx": "dlib-resnet-v1", "sface": "sface-2021dec"}
#: The runtime used for a model id when the configured one computes another descriptor.
RUNTIME_FOR_ID = {"dlib-resnet-v1": "dlib-onnx", "sface-2021dec": "sface"}
#: The default for new collections (and for `verify` and `eval`).
DEFAULT_MODEL = "sface"


def model_id_of(name: str) -> str:
    """The descriptor a runtime computes (without loading it)."""
    try:
        return MODEL_IDS[name]
    except KeyError:
        raise ValueError(
            f"unknown face model {name!r}; available: {', '.join(available_models())}"
        ) from None


def runtime_for(model_id: str, preferred: str) -> str:
    """The runtime that computes `model_id`: the preferred one when it does, else the default
    runtime of that id."""
    if MODEL_IDS.get(preferred) == model_id:
        return preferred
    try:
        return RUNTIME_FOR_ID[model_id]
    except KeyError:
        raise ValueError(
            f"no registered runtime computes {model_id!r} embeddings; known: "
            f"{', '.join(sorted(RUNTIME_FOR_ID))}"
        ) from None


def default_detector(name: str) -> str:
    return DEFAULT_DETECTORS.get(name, "hog")


def available_models() -> list[str]:
    return sorted(_FACTORIES)


def build_model(name: str = "dlib", detector: str | None = None, **options: object) -> FaceModel:
    """The face model `name` with `detector` (default: the model's own, see DEFAULT_DETECTORS)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown face model {name!r}; available: {', '.join(available_models())}"
        ) from None
    return factory(detector=detector or default_detector(name), **options)
