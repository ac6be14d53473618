"""Checking the measurement :func:`blinddps.solve` is given, before any work.

The solver works on float images in [-1, 1]. Anything else used to run and return
garbage without a word: uint8 0..255 pictures, [0, 1] floats, values far outside
[-1, 1], NaN or inf. :func:`as_measurement` turns those into one-line
ValueErrors that say what to pass instead — or maps the data when the caller
states its scale with ``value_range=(lo, hi)`` (``(0, 255)`` for uint8, ``(0, 1)``,
``(-1, 1)`` to say "it really is [-1, 1]").
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["as_measurement", "RANGE_LIMIT"]

#: |y| beyond this (on the [-1, 1] scale) is not noise on a [-1, 1] image but another
#: scale: noise of std 0.2 on a white pixel reaches it once in 3.5 million pixels.
RANGE_LIMIT = 2.0


def _range(value_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a pair (lo, hi) of numbers, got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"value_range must be finite with hi > lo, got {value_range!r}")
    return lo, hi


def as_measurement(y: Any, value_range: Any = None) -> torch.Tensor:
    """``y`` as a float tensor on the [-1, 1] scale, or a one-line ``ValueError``.

    Without ``value_range`` it must be floats that already are [-1, 1] data: an
    integer dtype, NaN/inf, values beyond ±:data:`RANGE_LIMIT` or no negative value at
    all (the mark of [0, 1] data) are refused. With ``value_range=(lo, hi)`` ``lo``
    maps to -1 and ``hi`` to +1 (integer data allowed; NaN/inf still refused)."""
    if isinstance(y, np.ndarray) and y.dtype == object:
        raise ValueError("the measurement must be a numeric array or tensor, got an object array")
    try:
        t = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"the measurement must be a tensor or array, got {type(y).__name__} ({exc})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"the measurement must hold real numbers, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"the measurement is empty (shape {tuple(t.shape)})")
    if not t.is_floating_point():
        if value_range is None:
            lo, hi = (0, 255) if t.dtype == torch.uint8 else (int(t.min()), int(t.max()))
            raise ValueError(f"the measurement is {str(t.dtype).replace('torch.', '')} (values {lo}..{hi}), not "
                             f"floats in [-1, 1]; pass value_range=(0, 255) for 8-bit data (0, 65535 for 16-bit) "
                             "or convert it to [-1, 1] floats")
        t = t.double()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"the measurement holds {int(bad.sum())} NaN or infinite value(s) of {t.numel()}; "
                         "fill or crop them first")
    if value_range is not None:
        lo, hi = _range(value_range)
        t = (t.double() - lo) / (hi - lo) * 2.0 - 1.0
    mn, mx = float(t.min()), float(t.max())
    if max(-mn, mx) > RANGE_LIMIT:
        given = f" after value_range={tuple(value_range)!r}" if value_range is not None else ""
        raise ValueError(f"the measurement's values span [{mn:.4g}, {mx:.4g}]{given}, far outside [-1, 1]; pass "
                         "value_range=(lo, hi) with the values that mean black and white (e.g. (0, 255)) "
                         "or scale it to [-1, 1]")
    if value_range is None and mn >= 0.0:
        raise ValueError(f"the measurement has no negative values (range [{mn:.4g}, {mx:.4g}]): it looks like "
                         "[0, 1] data, but solve takes [-1, 1]; pass value_range=(0, 1) to map it, or "
                         "value_range=(-1, 1) if it really is [-1, 1]")
    return t if t.dtype == torch.float32 else t.float()
