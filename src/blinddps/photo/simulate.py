"""Synthetic camera photos with known blur, for tests and benchmarks.

The scene is blurred in linear light with the 'valid' model (the frame is cut from a
scene that goes on past it, so the output is ``k - 1`` pixels smaller than the scene),
highlights above 1 clip, sensor noise is added, and the result is sRGB-encoded and
quantised to 8 bits, as a camera would record it.
"""
from __future__ import annotations

import numpy as np

from ..baselines._common import valid_correlate
from .color import linear_to_srgb, srgb_to_linear

__all__ = ["simulate_photo"]


def simulate_photo(scene01: np.ndarray, k: np.ndarray, *, noise: float = 0.01, gain: float = 1.0,
                   highlights: float = 1.0, bits: int | None = 8, seed: int = 0,
                   linear_light: bool = True) -> np.ndarray:
    """``scene01`` (``(C, H, W)`` sRGB values in [0, 1]) blurred by ``k`` (correlation
    convention): returns ``(C, H - kh + 1, W - kw + 1)`` recorded values in [0, 1].
    ``gain`` scales the linear light before clipping (> 1 clips bright areas);
    ``highlights`` scales only the scene's white-clipped pixels (every channel at 1:
    light sources, which are far brighter than a sensor's range), so they clip
    after the blur as real lights do;
    ``noise`` is the std of Gaussian noise on the recorded [0, 1] scale; ``bits`` the
    quantisation (``None``: none)."""
    scene = np.asarray(scene01, dtype=np.float64)
    lin = srgb_to_linear(scene) if linear_light else scene.copy()
    if highlights != 1.0:
        lights = (scene >= 0.999).all(axis=0)
        lin[:, lights] *= highlights
    blurred = valid_correlate(lin, np.asarray(k, dtype=np.float64)) * gain
    rec = linear_to_srgb(np.clip(blurred, 0.0, 1.0)) if linear_light else np.clip(blurred, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    rec = np.clip(rec + noise * rng.standard_normal(rec.shape), 0.0, 1.0)
    if bits is not None:
        levels = 2 ** int(bits) - 1
        rec = np.round(rec * levels) / levels
    return rec
