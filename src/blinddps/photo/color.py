"""Camera data: the sRGB transfer curve and clipped (saturated) pixels.

Blur happens in linear light (photons add up before the camera's tone curve), so the
pipeline undoes the sRGB curve before estimating and deconvolving and re-applies it
on output. A clipped pixel's recorded value is only a lower bound of the blurred
light, so it is left out of the data terms.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["srgb_to_linear", "linear_to_srgb", "clipped_mask"]


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 decoding of values in [0, 1] (clipped to it first)."""
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(v.dtype, copy=False)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 encoding of linear values (clipped to [0, 1] first)."""
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055).astype(v.dtype, copy=False)


def clipped_mask(y01: np.ndarray, level: float = 0.98, grow: int = 1, per_channel: bool = False) -> np.ndarray:
    """Bool mask of clipped pixels of ``y01`` (``(C, H, W)`` or ``(H, W)`` in [0, 1], as
    recorded): values reaching ``level``, grown by ``grow`` pixels (the demosaicing and
    JPEG neighbourhood of a clipped pixel is unreliable too). ``(H, W)``: clipped in any
    channel (for the luminance); ``per_channel=True``: ``(C, H, W)``, each channel's own
    (a sky clipped in blue still measures red and green)."""
    m = np.asarray(y01) >= level
    if m.ndim == 3 and not per_channel:
        m = m.any(axis=0)
    if grow > 0 and m.any():
        st = np.ones((3, 3), bool) if m.ndim == 2 else np.ones((1, 3, 3), bool)
        m = ndimage.binary_dilation(m, structure=st, iterations=int(grow))
    return m
