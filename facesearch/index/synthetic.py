"""Synthetic galleries with the statistics of real face embeddings, for benchmarks and tests.

A real gallery is mostly people with one to three photos and a long tail of people with
hundreds; identity centres are spread over the whole space (SFace descriptors are nearly
isotropic: effective dimension ~100 of 128) and two photos of one person agree only so far.
`RealisticGallery` draws such a gallery: identity sizes from a mix of 1/2/3 and a Pareto tail,
centres from an anisotropic Gaussian whose spectrum gives the requested effective dimension,
and photos as centre + per-photo noise (its scale varies from photo to photo, as real photo
quality does). The defaults are calibrated on SFace embeddings of LFW photos (see
docs/decisions/0006-segment-index.md; 748 photos of 380 LFW people): genuine-pair cosine
0.65 +- 0.11, impostor cosine 0.10 +- 0.09 (99.99th percentile 0.42).

Vectors are unit float32, like SFace's (dlib-style raw vectors can be had with `unit=False`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def spectrum_for(dim: int, effective_dim: float) -> npt.NDArray[np.float64]:
    """Per-axis variances (summing to 1) decaying geometrically, with participation ratio
    (sum l)^2 / sum l^2 equal to `effective_dim`."""
    if effective_dim >= dim:
        return np.full(dim, 1.0 / dim)
    lo, hi = 0.0, 1.0  # decay rate r in l_i = r^i; r=1 is isotropic
    for _ in range(60):
        r = (lo + hi) / 2
        lam = r ** np.arange(dim)
        pr = lam.sum() ** 2 / (lam**2).sum()
        lo, hi = (r, hi) if pr < effective_dim else (lo, r)
    lam = ((lo + hi) / 2) ** np.arange(dim)
    return np.asarray(lam / lam.sum(), dtype=np.float64)


@dataclass
class RealisticGallery:
    dim: int = 128
    effective_dim: float = 100.0
    #: median of the per-photo noise norm relative to the (unit) centre
    noise: float = 0.75
    #: spread (log-normal sigma) of the per-photo noise scale
    noise_spread: float = 0.3
    #: probabilities of 1, 2 and 3 photos; the rest follow 4 + Pareto(alpha) capped at max_photos
    p_small: tuple[float, float, float] = (0.55, 0.22, 0.10)
    alpha: float = 1.3
    max_photos: int = 500
    #: norm of a direction every descriptor shares (real SFace vectors: mean norm ~0.3)
    offset: float = 0.4
    unit: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        self._scale = np.sqrt(spectrum_for(self.dim, self.effective_dim)).astype(np.float32)
        self.rng = np.random.default_rng(self.seed)
        common = np.random.default_rng(12345).standard_normal(self.dim).astype(np.float32)
        self._offset = common / np.linalg.norm(common) * np.float32(self.offset)

    def identity_sizes(self, n_faces: int) -> I64:
        """Photos per identity, summing to exactly `n_faces`."""
        rng = self.rng
        sizes: list[I64] = []
        total = 0
        p1, p2, p3 = self.p_small
        while total < n_faces:
            m = max(1024, (n_faces - total) // 2)
            u = rng.random(m)
            tail = 4 + np.floor(3 * (rng.pareto(self.alpha, m))).astype(np.int64)
            s = np.where(
                u < p1, 1, np.where(u < p1 + p2, 2, np.where(u < p1 + p2 + p3, 3, tail))
            ).astype(np.int64)
            s = np.minimum(s, self.max_photos)
            sizes.append(s)
            total += int(s.sum())
        out = np.concatenate(sizes)
        cum = np.cumsum(out)
        last = int(np.searchsorted(cum, n_faces))
        out = out[: last + 1].copy()
        out[-1] -= int(cum[last] - n_faces)
        return out[out > 0]

    def centres(self, n: int) -> F32:
        z = self.rng.standard_normal((n, self.dim), dtype=np.float32) * self._scale
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        return z

    def photos(self, centres: F32) -> F32:
        """One photo per row of `centres` (repeat rows for several photos of one person)."""
        n = centres.shape[0]
        noise = self.rng.standard_normal((n, self.dim), dtype=np.float32) * self._scale
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        size = self.noise * np.exp(self.noise_spread * self.rng.standard_normal(n))
        out = centres + noise * size[:, None].astype(np.float32) + self._offset
        if self.unit:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        else:
            out *= 0.6
            out += 0.05
        return np.asarray(out, dtype=np.float32)

    def gallery(self, n_faces: int, block: int = 250_000) -> Iterator[tuple[I64, F32]]:
        """Yield (identity labels, vectors) blocks that together hold `n_faces` photos, in
        shuffled order; identities are numbered from 0. Centres are kept on `self.centre_of`."""
        sizes = self.identity_sizes(n_faces)
        self.centre_of = self.centres(sizes.shape[0])
        labels = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
        self.rng.shuffle(labels)
        self.sizes = sizes
        for start in range(0, n_faces, block):
            lab = labels[start : start + block]
            yield lab, self.photos(self.centre_of[lab])

    def queries(self, n: int, known: float = 0.8) -> tuple[I64, F32]:
        """Fresh photos: a fraction `known` of people in the gallery (label >= 0, chosen in
        proportion to their photo count's square root), the rest strangers (label -1)."""
        rng = self.rng
        n_known = round(n * known)
        w = np.sqrt(self.sizes.astype(np.float64))
        lab = rng.choice(self.sizes.shape[0], size=n_known, p=w / w.sum())
        centres = np.vstack([self.centre_of[lab], self.centres(n - n_known)])
        labels = np.concatenate([lab, np.full(n - n_known, -1, dtype=np.int64)])
        return labels, self.photos(centres)
