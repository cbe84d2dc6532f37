"""Build the configured FaceModel by name. New runtimes register here and nowhere else."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FalseMatchRate:
    """Per-comparison false-match rate of a model's scores (measured on LFW DevTrain, all pairs of
    images of two different people; docs/decisions/0008): measured points up to `u`, then an
    exponential tail FMR(t) = fmr_u * exp(-(t - u) / beta)."""

    points: tuple[tuple[float, float], ...]  # (score, FMR), increasing scores
    u: float
    fmr_u: float
    beta: float

    def at(self, score: float) -> float:
        if score >= self.u:
            return self.fmr_u * math.exp(-(score - self.u) / self.beta)
        known = [*self.points, (self.u, self.fmr_u)]
        if score <= known[0][0]:
            return known[0][1]
        for (s0, f0), (s1, f1) in itertools.pairwise(known):
            if s0 <= score <= s1:  # log-linear between measured points
                w = (score - s0) / (s1 - s0)
                return math.exp(math.log(f0) * (1 - w) + math.log(f1) * w)
        return self.fmr_u  # pragma: no cover - the points are increasing up to u


#: From `python bench/threshold_bench.py` on `facesearch eval identify` caches (ADR 0008).
FALSE_MATCH_RATES: dict[str, FalseMatchRate] = {
    "sface-2021dec": FalseMatchRate(  # 2026-12-02, landmarks refined in each face's crop
        points=(
            (0.30, 0.7996),
            (0.35, 0.2480),
            (0.40, 0.01868),
            (0.43, 2.181e-3),
            (0.45, 4.621e-4),
        ),
        u=0.4723,
        fmr_u=1.0e-4,
        beta=0.01699,
    ),
    "dlib-resnet-v1": FalseMatchRate(
        points=(
            (0.55, 0.809),
            (0.60, 0.4146),
            (0.65, 0.08946),
            (0.69, 1.142e-2),
            (0.70, 6.228e-3),
            (0.75, 2.613e-4),
        ),
        u=0.7633,
        fmr_u=1.0e-4,
        beta=0.01220,
    ),
}


def expected_false_matches(model_id: str, threshold: float, gallery_faces: int) -> float | None:
    """How many unrelated gallery faces a search is expected to raise at or above `threshold`
    (None for a model without a measured false-match rate)."""
    rates = FALSE_MATCH_RATES.get(model_id)
    return None if rates is None else gallery_faces * rates.at(threshold)


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
