"""A second, physically different motion-kernel family: camera shake from a random
3-D camera motion integrated over the exposure. **Held out**: no prior is trained on it
and no setting is tuned on it; the evaluation harness uses it to measure what a user
gets on kernels our own generator (:mod:`blinddps.simulate.kernels`) did not produce.

How it differs from our trajectory generator (which draws a 2-D path of i.i.d. steps at
constant speed on a 2× canvas and Gaussian-smooths it):

* **Dynamics**: the camera's angular velocity (pitch, yaw, roll) and its in-plane
  translation follow a damped random walk with inertia (an Ornstein–Uhlenbeck process
  driven by white angular acceleration, plus a random initial velocity), integrated at
  ``steps`` time points over the exposure. Hand tremor is smooth, so the paths are
  smooth curves, not chains of random-angle segments.
* **Geometry**: the blur at an image point ``p`` (pixels from the optical centre, drawn
  per kernel) under a small rotation is the displacement of its projection: pitch and
  yaw shift it by ``f·tan θ``, roll rotates ``p`` about the centre, translation moves it
  by ``f·t/Z``. Off-centre points thus mix roll into the kernel.
* **Exposure integration**: every time point carries the same exposure, so the kernel's
  intensity is inversely proportional to the image-plane speed (slow ends of a jerk are
  bright, fast middles faint), unlike constant-density strokes.
* **Rendering**: thin — each time point is bilinearly splatted at native resolution (a
  1-px, sub-pixel stroke), then an optional small optical blur (Gaussian std drawn in
  ``optics``, 0 allowed).
* **Size**: the path is scaled so its longer bounding-box side is ``extent`` × the
  kernel size (drawn per kernel), and centred on its centroid.

Kernels are ``(n, 1, size, size)`` float32, non-negative, summing to 1, centroid at the
kernel centre ``(size-1)/2`` (within a splatting-rounding 0.05 px). Randomness: a numpy
``Generator`` seeded from the torch generator (one draw), so the output depends only on
the seed and the arguments.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from .kernels import GeneratorLike, make_generator, recentre_centroid

__all__ = ["camera_shake_kernels"]


def _check_range(value, name: str, lo: float, hi: float) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not all(lo <= float(v) <= hi for v in pair) or float(pair[0]) > float(pair[1]):
        raise ValueError(f"{name} must be a number or a (lo, hi) range within [{lo}, {hi}], got {value!r}")
    return float(pair[0]), float(pair[1])


def _trajectory(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Image-plane positions (steps, 2) of one shaken exposure, arbitrary scale."""
    dt = 1.0 / steps
    damping = rng.uniform(2.0, 12.0)            # 1/s: how fast the hand's velocity decorrelates
    # angular acceleration noise per axis (pitch, yaw, roll) and translation (x, y)
    amp = np.array([1.0, 1.0, rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.4)])
    amp = amp * rng.lognormal(0.0, 0.4, size=5)
    vel = rng.normal(0.0, 1.0, size=5) * amp * rng.uniform(0.0, 1.5)
    state = np.zeros(5)
    path = np.empty((steps, 5))
    for t in range(steps):
        vel = vel - damping * vel * dt + amp * rng.normal(0.0, 1.0, size=5) * math.sqrt(dt) * 6.0
        state = state + vel * dt
        path[t] = state
    # a hand's shake is a small rotation: bring the largest angle to ~0.03 rad (the final
    # kernel is rescaled to its extent anyway; this keeps tan() in its near-linear range)
    path = path * (0.03 / max(float(np.abs(path[:, :3]).max()), 1e-12))
    pitch, yaw, roll, tx, ty = path.T
    # the observed point: up to 0.7 of the half-frame from the optical centre (focal 1 =
    # a half-frame, a normal lens), so roll moves it by up to 0.7·θ
    r, phi = 0.7 * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
    px, py = r * math.cos(phi), r * math.sin(phi)
    c, s = np.cos(roll), np.sin(roll)
    x = np.tan(yaw) + (c * px - s * py - px) + tx
    y = np.tan(pitch) + (s * px + c * py - py) + ty
    return np.stack([y, x], axis=1)


def _splat(pts: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splatting of equal-weight points (row, col) on a size × size grid; points
    off the grid are dropped."""
    k = np.zeros((size, size))
    r0, c0 = np.floor(pts[:, 0]).astype(int), np.floor(pts[:, 1]).astype(int)
    fr, fc = pts[:, 0] - r0, pts[:, 1] - c0
    for dr, dc, frac in ((0, 0, (1 - fr) * (1 - fc)), (1, 0, fr * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 1, fr * fc)):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        np.add.at(k, (rr[ok], cc[ok]), frac[ok])
    return k


def _one(rng: np.random.Generator, size: int, extent: tuple[float, float], optics: tuple[float, float],
         steps: int) -> np.ndarray:
    path = _trajectory(rng, steps)
    span = float((path.max(0) - path.min(0)).max())
    target = rng.uniform(*extent) * (size - 1)
    path = path * (target / max(span, 1e-9))
    centre = (size - 1) / 2.0
    path = path - path.mean(0)
    # centred on its centroid the path must still fit (a long faint tail would be clipped)
    reach = float(np.abs(path).max())
    if reach > centre - 1.0:
        path = path * ((centre - 1.0) / reach)
    k = _splat(path + centre, size)
    sd = rng.uniform(*optics)
    if sd > 0:
        k = gaussian_filter(k, sd, mode="constant")
    # recentre the centroid exactly (the optics' zero fill and clipping can move it)
    return recentre_centroid(k, tol=0.02, iters=3)


def camera_shake_kernels(
    n: int,
    size: int = 32,
    extent: float | tuple[float, float] = (0.35, 0.8),
    optics: float | tuple[float, float] = (0.0, 0.6),
    generator: GeneratorLike = None,
    steps: int = 400,
) -> torch.Tensor:
    """``n`` camera-shake kernels ``(n, 1, size, size)`` from random 3-D camera motion
    integrated over the exposure (see the module docstring). ``extent``: the path's
    longer side as a fraction of the kernel size (a number or a (lo, hi) range drawn per
    kernel); ``optics``: the std (px) of a small lens blur, a number or a range (0: none);
    ``steps``: time points per exposure."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3:
        raise ValueError(f"size must be an int >= 3, got {size!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 8:
        raise ValueError(f"steps must be an int >= 8, got {steps!r}")
    ext = _check_range(extent, "extent", 0.0, 1.0)
    opt = _check_range(optics, "optics", 0.0, 3.0)
    gen = make_generator(generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())
    rng = np.random.default_rng(seed)
    out = np.stack([_one(rng, int(size), ext, opt, int(steps)) for _ in range(int(n))]) if n else np.zeros((0, size, size))
    return torch.from_numpy(out.astype(np.float32))[:, None]
