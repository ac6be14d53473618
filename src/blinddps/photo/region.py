"""Where to estimate the kernel: the most informative window of an image.

A kernel is pinned down by edges in several directions; flat sky, clipped highlights
and the blur's unseen border say nothing about it. The score of a window is the
geometric mean of its horizontal and vertical gradient energies (both directions
needed), each gradient capped at a high percentile (one strong edge must not decide),
and windows with more than ``max_excluded`` of their pixels excluded are not taken.
"""
from __future__ import annotations

import numpy as np

__all__ = ["informative_region", "region_score"]


def _box_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of ``a`` over every ``h x w`` window (top-left anchored), by integral images."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    c[1:, 1:] = a.cumsum(0).cumsum(1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def region_score(gray: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel horizontal and vertical gradient energies of ``gray`` (``(H, W)``),
    capped at their 99th percentile, zero where ``exclude``."""
    gx = np.zeros_like(gray, dtype=np.float64)
    gy = np.zeros_like(gray, dtype=np.float64)
    gx[:, :-1] = np.diff(gray, axis=1)
    gy[:-1, :] = np.diff(gray, axis=0)
    ex, ey = gx * gx, gy * gy
    for e in (ex, ey):
        cap = np.percentile(e, 99.0)
        if cap > 0:
            np.minimum(e, cap, out=e)
        if exclude is not None:
            e[exclude] = 0.0
    return ex, ey


def informative_region(gray: np.ndarray, size: int | tuple[int, int], exclude: np.ndarray | None = None,
                       max_excluded: float = 0.02, stride: int | None = None) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the best ``size`` window of ``gray``
    (``(H, W)``; ``size`` is clipped to the image). ``exclude`` (bool ``(H, W)``) marks
    pixels that must not inform the estimate (clipped highlights); windows holding
    more than ``max_excluded`` of them are avoided unless every window does (then the
    one with the fewest). ``stride``: the candidate grid (default size/16)."""
    H, W = gray.shape
    h, w = (size, size) if isinstance(size, int) else size
    h, w = min(int(h), H), min(int(w), W)
    if h == H and w == W:
        return 0, 0, H, W
    ex, ey = region_score(gray, exclude)
    score = np.sqrt(np.maximum(_box_sums(ex, h, w) * _box_sums(ey, h, w), 0.0))  # rounding can dip below 0
    if exclude is not None:
        frac = _box_sums(exclude.astype(np.float64), h, w) / float(h * w)
        ok = frac <= max_excluded
        score = np.where(ok, score, -1.0 - frac) if ok.any() else -frac
    step = max(1, stride or min(h, w) // 16)
    sub = score[::step, ::step]
    i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
    return int(i * step), int(j * step), h, w
