"""A broader training family for kernel priors: our random-trajectory generator with
the variations real camera shake shows and the intensity-0.5 family lacks.

Per kernel, independently:

* the trajectory's ``intensity`` is drawn in [0, 1] (straight to strongly curved);
* with probability ``p_speed`` its brightness varies along the path: the kernel is
  multiplied by ``exp(a·g)``, ``g`` a smooth unit-variance random field (Gaussian-filtered
  noise, correlation length ``size/6``) and ``a ~ U(0, 1.5)`` — a hand slows down and
  speeds up, so some parts of the path get more exposure than others;
* with probability ``p_thick`` the stroke is thickened or softened by a Gaussian of std
  ``U(0.3, 1.2)`` px (optics, focus), otherwise it stays as drawn;
* with probability ``p_gauss`` the kernel is a Gaussian instead (std 0.5–3 px,
  anisotropy 1–3: defocus and tiny shake);
* every kernel is renormalised and its centroid moved back to the centre.

Only our own generator and Gaussians are used: the held-out families
(:mod:`blinddps.simulate.shake`, Levin's recorded kernels) stay out of training.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from .kernels import GeneratorLike, gaussian_kernels, make_generator, motion_kernels, recentre_centroid

__all__ = ["mixed_kernels"]


def mixed_kernels(
    n: int,
    size: int = 32,
    generator: GeneratorLike = None,
    p_speed: float = 0.5,
    p_thick: float = 0.4,
    p_gauss: float = 0.1,
) -> torch.Tensor:
    """``n`` kernels ``(n, 1, size, size)`` of the training mixture described in the
    module docstring (non-negative, sum 1, centroid at the centre)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    for name, p in (("p_speed", p_speed), ("p_thick", p_thick), ("p_gauss", p_gauss)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    gen = make_generator(generator)
    n, size = int(n), int(size)
    if n == 0:
        return torch.zeros(0, 1, size, size)
    traj = motion_kernels(n, size, (0.0, 1.0), generator=gen)[:, 0].double().numpy()
    gauss = gaussian_kernels(n, size, (0.5, 3.0), (1.0, 3.0), generator=gen)[:, 0].double().numpy()
    seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size))
    for i in range(n):
        if rng.uniform() < p_gauss:
            out[i] = gauss[i]
            continue
        k = traj[i]
        if rng.uniform() < p_speed:
            field = gaussian_filter(rng.normal(size=(size, size)), size / 6.0, mode="wrap")
            field /= max(field.std(), 1e-12)
            k = k * np.exp(rng.uniform(0.0, 1.5) * field)
        if rng.uniform() < p_thick:
            k = gaussian_filter(k, rng.uniform(0.3, 1.2), mode="constant")
        out[i] = recentre_centroid(np.clip(k, 0.0, None))
    return torch.from_numpy(out.astype(np.float32))[:, None]
