"""Full-resolution non-blind restoration with a known kernel, memory-bounded.

Total-variation deconvolution by ADMM with FFT solves
(:func:`blinddps.baselines.tv.tv_deconvolve_channels`): the scene outside the frame is
unknown (Almeida & Figueiredo 2013), so there is no edge taper and no wrap-around;
clipped pixels get zero weight in the data term, like the unseen border. In single
precision. Images larger than ``tile_pixels`` are cut into tiles, each solved with a
margin of ``margin_factor`` kernel sizes of the observation around it (inside the
photo) and only its core kept; the margin's far edge is just another unknown border,
so tiles need no blending.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..baselines.tv import tv_deconvolve_channels, tv_weight

__all__ = ["deconvolve", "tile_grid"]


def tile_grid(n: int, tile: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into about equal pieces of at most ``tile``: ``[(start, stop)]``."""
    count = max(1, math.ceil(n / tile))
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def deconvolve(y: np.ndarray, k: np.ndarray, *, weight: np.ndarray | None = None, lam: float | None = None,
               iters: int = 80, tile_pixels: int = 2**21, margin_factor: float = 2.0,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Restore ``y`` (``(C, H, W)``, any scale; the TV weight ``lam`` is for [-1, 1]
    data and scales with the data's range) blurred by ``k`` (``(kh, kw)``, the
    project's correlation convention, 'valid' model: the scene continues past the
    frame). ``weight`` (``(H, W)`` or per channel ``(C, H, W)``, in [0, 1]): each
    pixel's data weight (0 for clipped pixels). ``lam=None``: from the noise level
    (:func:`blinddps.baselines.tv.tv_weight`). Tiles of at
    most ``tile_pixels`` core pixels; ``progress(n)`` is called after each channel of
    each tile. Returns float32 ``(C, H, W)``."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 3:
        raise ValueError(f"deconvolve: y must be (C, H, W), got shape {y.shape}")
    C, H, W = y.shape
    k = np.asarray(k, dtype=np.float64)
    k = k / k.sum()
    lo, hi = float(y.min()), float(y.max())
    span = max(hi - lo, 1e-6)
    if weight is not None:
        weight = np.asarray(weight)
        if weight.shape not in ((H, W), (C, H, W)):
            raise ValueError(f"deconvolve: weight must be (H, W) or (C, H, W), got {weight.shape}")
    if lam is None:
        lam = tv_weight(2.0 * (y - lo) / span - 1.0) * span / 2.0
    lam = float(lam)
    rho, rho_tv = 50.0 * lam, 10.0 * lam
    side = max(int(math.sqrt(tile_pixels)), 4 * max(k.shape))
    margin = int(math.ceil(margin_factor * max(k.shape)))
    out = np.empty_like(y)
    for r0, r1 in tile_grid(H, side):
        for c0, c1 in tile_grid(W, side):
            a0, a1 = max(0, r0 - margin), min(H, r1 + margin)
            b0, b1 = max(0, c0 - margin), min(W, c1 + margin)
            for c in range(C):
                wt = None if weight is None else (weight[c] if weight.ndim == 3 else weight)[a0:a1, b0:b1]
                x = tv_deconvolve_channels(y[c:c + 1, a0:a1, b0:b1], k, lam, iters, rho, rho_tv,
                                           weight=wt, dtype=np.float32)
                out[c, r0:r1, c0:c1] = x[0, r0 - a0:r1 - a0, c0 - b0:c1 - b0]
                if progress is not None:
                    progress(1)
    return out
