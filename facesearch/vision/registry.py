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
