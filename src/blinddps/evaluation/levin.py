"""Public blind-deblurring benchmarks read from the shared benchmark folder (never
copied into the project): Levin et al. 2009 (``levin.npz``: 4 images × 8 recorded
camera-shake kernels, 13–27 px) and the sharp images of Lai et al. 2016 (``lai.npz``),
plus Levin's scoring protocol.

Where the folder is: ``$BLINDDPS_BENCHMARKS``, else ``shared/benchmarks`` beside the
repository. Provenance and the measured relation between the arrays are in that
folder's ``provenance.md``: Levin's ``y`` is a *recorded* blur of ``x`` (a correlation
with ``f`` up to a kernel-dependent shift and a 0.3–0.5 % model residual), not a
synthetic convolution, so restorations are scored up to shift, in the interior.

Levin's protocol (``comp_upto_shift.m``): the ground truth is cropped by 15 px per side
(225 × 225 for the 255 × 255 images); the estimate is bilinearly resampled at every
shift of −5…5 px in 0.25 px steps; the score is the smallest sum of squared
differences (images on [0, 1]). The *error ratio* of a blind method is its SSD over the
SSD of the same non-blind method given the true kernel.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "BENCHMARKS_ENV",
    "benchmarks_dir",
    "levin_kernels",
    "levin_pairs",
    "lai_sharp_images",
    "ssd_upto_shift",
    "LEVIN_CROP",
    "LEVIN_MAX_SHIFT",
]

BENCHMARKS_ENV = "BLINDDPS_BENCHMARKS"
LEVIN_CROP = 15
LEVIN_MAX_SHIFT = 5.0
_REPO = Path(__file__).resolve().parents[3]


def benchmarks_dir(required: str | None = None) -> Path | None:
    """The shared benchmark folder (``$BLINDDPS_BENCHMARKS`` first). With
    ``required`` (a file name), a missing file is a one-line ``ValueError``."""
    cands = [os.environ.get(BENCHMARKS_ENV, ""), str(_REPO.parent / "shared" / "benchmarks"),
             str(Path.cwd().parent / "shared" / "benchmarks")]
    for c in cands:
        if c and Path(c).is_dir() and (required is None or (Path(c) / required).is_file()):
            return Path(c)
    if required is not None:
        raise ValueError(f"benchmark file {required} not found (looked in shared/benchmarks beside the "
                         f"repository; set ${BENCHMARKS_ENV} to its folder)")
    return None


@lru_cache(maxsize=2)
def _npz(name: str) -> dict[str, np.ndarray]:
    folder = benchmarks_dir(name)
    with np.load(folder / name, allow_pickle=False) as z:  # type: ignore[operator]
        return {k: z[k] for k in z.files}


def levin_kernels() -> list[np.ndarray]:
    """The 8 recorded kernels of Levin et al. 2009 (float64, sum 1), in the orientation
    of our blur (cross-correlation: ``y ≈ k ⋆ x``)."""
    z = _npz("levin.npz")
    return [np.asarray(z[f"kernel_{j}"], dtype=np.float64) for j in range(1, 9)]


def levin_pairs(images: list[int] | None = None, kernels: list[int] | None = None) -> list[dict]:
    """Levin's 32 (or the chosen) blurred/sharp pairs, each ``{"name": "im1_k1", "x": sharp,
    "y": blurred (255×255 float32 on [0, 1]), "kernel": float64 (k, k), "image": i,
    "kernel_index": j}``. Indices are 1-based as in the data set."""
    z = _npz("levin.npz")
    out = []
    for i in images or [1, 2, 3, 4]:
        for j in kernels or list(range(1, 9)):
            if not (1 <= i <= 4 and 1 <= j <= 8):
                raise ValueError(f"Levin has images 1-4 and kernels 1-8, not image {i} kernel {j}")
            out.append({"name": f"im{i}_k{j}", "x": z[f"sharp_{i}_{j}"].astype(np.float32),
                        "y": z[f"blurred_{i}_{j}"].astype(np.float32),
                        "kernel": np.asarray(z[f"kernel_{j}"], dtype=np.float64), "image": i, "kernel_index": j})
    return out


@lru_cache(maxsize=1)
def lai_sharp_images() -> dict[str, np.ndarray]:
    """The sharp images of the Lai et al. 2016 subset, ``{"lai_<name>": uint8 H×W×3}``
    (empty when the file is absent). Only these arrays are read, not the blurred ones."""
    folder = benchmarks_dir()
    if folder is None or not (folder / "lai.npz").is_file():
        return {}
    with np.load(folder / "lai.npz", allow_pickle=False) as z:
        return {f"lai_{n}": z[f"sharp_{n}"] for n in [str(v) for v in z["names"]]}


def ssd_upto_shift(est: np.ndarray, gt: np.ndarray, crop: int = LEVIN_CROP,
                   max_shift: float = LEVIN_MAX_SHIFT, step: float = 0.25) -> tuple[float, tuple[float, float]]:
    """Levin's score: the smallest SSD between ``gt[crop:-crop, crop:-crop]`` and the
    estimate bilinearly resampled at a shift (dy, dx) ∈ {−max_shift, …, max_shift} in
    ``step`` increments. Returns ``(ssd, (dy, dx))``; 2-D arrays on [0, 1] of one size
    (colour: pass the channel mean or score per channel)."""
    est = np.asarray(est, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if est.shape != gt.shape or est.ndim != 2:
        raise ValueError(f"ssd_upto_shift takes two 2-D images of one shape, got {est.shape} and {gt.shape}")
    m = int(np.ceil(max_shift)) + 1
    if min(gt.shape) <= 2 * crop or crop < m:
        raise ValueError(f"crop {crop} must exceed the shift range {max_shift} and leave an interior")
    ref = gt[crop:-crop, crop:-crop]
    h, w = ref.shape
    shifts = np.arange(-max_shift, max_shift + step / 2, step)
    best, arg = np.inf, (0.0, 0.0)
    for dy in shifts:
        ny, fy = int(np.floor(dy)), dy - np.floor(dy)
        rows = (1 - fy) * est[crop + ny : crop + ny + h] + fy * est[crop + ny + 1 : crop + ny + 1 + h]
        for dx in shifts:
            nx, fx = int(np.floor(dx)), dx - np.floor(dx)
            sample = (1 - fx) * rows[:, crop + nx : crop + nx + w] + fx * rows[:, crop + nx + 1 : crop + nx + 1 + w]
            ssd = float(((sample - ref) ** 2).sum())
            if ssd < best:
                best, arg = ssd, (float(dy), float(dx))
    return best, arg
