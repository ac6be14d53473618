"""Blur-kernel generators (random-trajectory motion, Gaussian) and kernel statistics.

Conventions (see ``docs/architecture.md``): kernels are ``(n, 1, k, k)`` float32,
non-negative, summing to 1 per sample. The *kernel centre* is the geometric centre
``((k - 1) / 2, (k - 1) / 2)`` in pixel-index coordinates (31.5 for k = 64): generated
kernels have their centre of mass there. All randomness comes from an explicit
``torch.Generator`` (an ``int`` builds ``torch.Generator().manual_seed(int)``; ``None``
draws a fresh non-deterministic seed): the global RNG is never touched.

Motion kernels
--------------
Our own, vectorised implementation of the random-trajectory model that BlindDPS, DPS,
DiffPIR and others draw motion kernels from (the external ``motionblur.py``). Per kernel,
on a canvas at twice the kernel resolution (side ``F = 2k``, diagonal ``D = F·√2``):

* total path length ``L = 0.75 · D · (U(0,1) + U(0, intensity²))``;
* i.i.d. step lengths ``Beta(1, 30) · (1 − intensity + 0.1) · D`` (shorter steps as the
  intensity grows), accumulated until their sum reaches ``L``; the path is cut at
  exactly ``L`` (the reference overshoots by at most one step);
* step *directions*: a per-kernel bound ``a ~ U(0, intensity·π)``; the first direction
  is ``U(−a, a)``, the magnitude of every later one ``Triangular(0, intensity·a, a + 0.1)``
  with the sign of the previous direction, flipped with a per-kernel probability
  ``p = 2·intensity·Beta(2, 20)`` (mean 0.09 at the paper's intensity 0.5, as the
  reference's Beta(2, 20) jitter; it grows with the intensity). At intensity 0 the bound
  and the first direction are 0, so every direction is 0: a straight line of random
  length. At intensity 1 the directions span ±π and paths curl back and cross;
* the path is centred on its centre of mass, rotated by ``U(0, π)`` and drawn on the
  ``F × F`` canvas by bilinear splatting of points every canvas pixel along the arc
  (anti-aliased, exact first moments), Gaussian-smoothed (σ = max(1, ⌊0.01·D⌋) canvas
  pixels, as the reference's blur radius), 2×2-average downsampled to ``k × k``,
  clamped ≥ 0 and normalised to sum 1.

Parts of long paths fall off the canvas and are clipped, as in the reference. Paths are
centred on their own centre of mass, so an unclipped kernel's centroid sits at the
kernel centre by construction (bilinear splatting, symmetric smoothing and 2×2 averaging
preserve first moments); a clipped kernel is moved back by a bilinear subpixel shift
(zero fill, iterated), which leaves every centroid within 0.02 px of the centre.
Randomness is drawn per chunk of 4096 kernels, so the output depends on
``(seed, n, size, intensity)``: it is reproducible, but ``motion_kernels(10, seed=s)`` is
not a prefix of ``motion_kernels(20, seed=s)``.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "make_generator",
    "motion_kernels",
    "gaussian_kernels",
    "kernel_centroid",
    "kernel_covariance",
    "kernel_support",
    "trajectory_length",
    "save_kernel",
    "load_kernel",
]

GeneratorLike = torch.Generator | int | None

_CHUNK = 4096  # kernels per vectorised batch (fixed: part of the seeded output's definition)
_ANGLE_EPS = 0.1  # the reference generator's additive slack on the direction bound
_SAMPLE_SPACING = 1.0  # canvas pixels between splatted points along the path
_CENTRE_TOL = 0.02  # kernel pixels: clipped kernels further off-centre are shifted back
_PNG_UPSCALE_KEY = "blinddps_upscale"


# ----------------------------------------------------------------------------- RNG


def make_generator(generator: GeneratorLike = None) -> torch.Generator:
    """A ``torch.Generator`` from ``None`` (fresh, non-deterministic seed), an ``int``
    seed, or a generator (returned as is). Never touches the global RNG."""
    if generator is None:
        g = torch.Generator()
        g.seed()
        return g
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be None, an int seed or a torch.Generator, got {type(generator).__name__}")


@contextlib.contextmanager
def _intra_op_threads(threads: int | None):
    """Temporarily set torch's intra-op thread count (restored on exit); None: leave it."""
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rand(shape, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float32)


def _range_or_scalar(value, name: str, n: int, gen: torch.Generator, lo_ok: float | None = None) -> torch.Tensor:
    """A float, or a (lo, hi) range drawn uniformly per sample -> (n,) tensor."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo = hi = float(value)
        out = torch.full((n,), lo, device=gen.device)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
        if hi < lo:
            raise ValueError(f"{name} range must be (lo, hi) with lo <= hi, got {tuple(value)}")
        out = lo + (hi - lo) * _rand((n,), gen)
    else:
        raise ValueError(f"{name} must be a number or a (lo, hi) pair, got {value!r}")
    if lo_ok is not None and lo < lo_ok:
        raise ValueError(f"{name} must be >= {lo_ok}, got {value!r}")
    return out


# -------------------------------------------------------------------- motion kernels


def _blur_downsample_matrix(size: int, sigma: float) -> torch.Tensor:
    """(size, 2·size) matrix A: Gaussian smoothing (zero padding) on the 2× canvas
    followed by 2×2 averaging, one axis; the 2-D operator is ``A X Aᵀ``."""
    fine = 2 * size
    radius = max(1, int(math.ceil(4.0 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (taps / sigma) ** 2)
    g /= g.sum()
    u = torch.arange(fine)
    diff = u[None, :] - u[:, None]  # (fine_out, fine_in)
    blur = torch.where(diff.abs() <= radius, g[(diff + radius).clamp(0, 2 * radius)], torch.zeros(()))
    pool = torch.zeros(size, fine, dtype=torch.float64)
    pool[torch.arange(size), 2 * torch.arange(size)] = 0.5
    pool[torch.arange(size), 2 * torch.arange(size) + 1] = 0.5
    return (pool @ blur).to(torch.float32)


def _triangular(u: torch.Tensor, mode: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sample of Triangular(0, mode, right) from uniforms ``u``."""
    fc = (mode / right).clamp(0.0, 1.0)
    low_branch = torch.sqrt(u * right * mode)
    high_branch = right - torch.sqrt((1.0 - u) * right * (right - mode))
    return torch.where(u < fc, low_branch, high_branch)


def _motion_paths(m: int, size: int, intensity: torch.Tensor, gen: torch.Generator):
    """Points along m random trajectories on the 2× canvas.

    Returns ``pts (m, M, 2)`` (x, y in canvas pixel-index coordinates, centred and
    rotated about the canvas centre) and ``valid (m, M)``.
    """
    fine = 2 * size
    diag = fine * math.sqrt(2.0)
    it = intensity  # (m,)

    u = _rand((m, 5), gen)
    length = 0.75 * diag * (u[:, 0] + u[:, 1] * it * it)  # (m,)
    max_angle = u[:, 2] * it * math.pi
    first_angle = (2.0 * u[:, 3] - 1.0) * max_angle
    rotation = u[:, 4] * math.pi
    # Beta(2, 20) = 2nd smallest of 21 uniforms.
    jitter = _rand((m, 21), gen).kthvalue(2, dim=1).values
    p_flip = (2.0 * it * jitter).clamp(max=1.0)
    step_scale = (1.0 - it + 0.1) * diag  # (m,)

    # Steps: Beta(1, 30) = 1 - U^(1/30); enough columns that every row reaches its length.
    mean_steps = length / (step_scale / 31.0)
    k = int(math.ceil(1.3 * float(mean_steps.max()))) + 16
    steps = step_scale[:, None] * (1.0 - _rand((m, k), gen) ** (1.0 / 30.0))
    while bool((steps.sum(1) < length).any()):
        extra = k // 2 + 16
        steps = torch.cat([steps, step_scale[:, None] * (1.0 - _rand((m, extra), gen) ** (1.0 / 30.0))], 1)
        k += extra
    steps = steps.clamp_min(1e-6)

    # Directions: |angle| ~ Triangular(0, I·a, a + eps), sign carried over, flipped w.p. p.
    u_tri = _rand((m, k), gen)
    u_flip = _rand((m, k), gen)
    mag = _triangular(u_tri, (it * max_angle)[:, None], (max_angle + _ANGLE_EPS)[:, None])
    flips = (u_flip < p_flip[:, None]).to(torch.int64)
    flips[:, 0] = 0
    parity = torch.cumsum(flips, 1) % 2
    sign = torch.sign(first_angle)[:, None] * (1.0 - 2.0 * parity.to(torch.float32))
    angles = sign * mag
    angles[:, 0] = first_angle

    # Truncate to the columns any row needs.
    cum = torch.cumsum(steps, 1)
    need = int((cum < length[:, None]).sum(1).max()) + 1
    need = min(need, k)
    steps, angles, cum = steps[:, :need], angles[:, :need], cum[:, :need]
    zeros = torch.zeros(m, 1, device=steps.device)
    vx = torch.cat([zeros, torch.cumsum(steps * torch.cos(angles), 1)], 1)  # (m, need+1)
    vy = torch.cat([zeros, torch.cumsum(steps * torch.sin(angles), 1)], 1)
    cum = torch.cat([zeros, cum], 1)  # arc length at each vertex

    # Points every _SAMPLE_SPACING along the arc, up to the path length.
    n_pts = int(math.floor(float(length.max()) / _SAMPLE_SPACING)) + 1
    s = (torch.arange(n_pts, device=steps.device, dtype=torch.float32) * _SAMPLE_SPACING).expand(m, n_pts)
    s = s.contiguous()
    valid = s <= length[:, None]
    seg = (torch.searchsorted(cum, s, right=True) - 1).clamp(0, need - 1)
    t = ((s - cum.gather(1, seg)) / steps.gather(1, seg)).clamp(0.0, 1.0)
    px = vx.gather(1, seg) + t * (vx.gather(1, seg + 1) - vx.gather(1, seg))
    py = vy.gather(1, seg) + t * (vy.gather(1, seg + 1) - vy.gather(1, seg))

    # Centre on the centre of mass, rotate, move to the canvas centre.
    w = valid.to(torch.float32)
    wsum = w.sum(1, keepdim=True)
    px = px - (px * w).sum(1, keepdim=True) / wsum
    py = py - (py * w).sum(1, keepdim=True) / wsum
    c, sn = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
    px, py = c * px - sn * py, sn * px + c * py
    centre = (fine - 1) / 2.0
    px, py = px + centre, py + centre

    return torch.stack([px, py], -1), valid


def _splat(pts: torch.Tensor, valid: torch.Tensor, fine: int, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear splatting of unit-mass points onto (m, fine, fine) canvases (corners
    that fall off the canvas are dropped: the canvas clips the path). ``buffer``: a
    reusable flat float32 tensor of at least m·fine² elements."""
    m = pts.shape[0]
    x0f = torch.floor(pts)  # (m, M, 2)
    f = pts - x0f
    i0 = x0f.to(torch.int64)
    # corner offsets (dx, dy) and bilinear weights, stacked on a trailing axis of 4
    ox = torch.tensor([0, 1, 0, 1], device=pts.device)
    oy = torch.tensor([0, 0, 1, 1], device=pts.device)
    xi = i0[..., 0:1] + ox  # (m, M, 4)
    yi = i0[..., 1:2] + oy
    wx = torch.where(ox.bool(), f[..., 0:1], 1.0 - f[..., 0:1])
    wy = torch.where(oy.bool(), f[..., 1:2], 1.0 - f[..., 1:2])
    keep = valid[..., None] & (xi >= 0) & (xi < fine) & (yi >= 0) & (yi < fine)
    wgt = wx * wy * keep
    base = (torch.arange(m, device=pts.device) * (fine * fine))[:, None, None]
    idx = base + yi.clamp(0, fine - 1) * fine + xi.clamp(0, fine - 1)
    if buffer is None:
        canvas = torch.zeros(m * fine * fine, device=pts.device, dtype=torch.float32)
    else:
        canvas = buffer[: m * fine * fine].zero_()
    canvas.index_add_(0, idx.reshape(-1), wgt.reshape(-1))
    return canvas.view(m, fine, fine)


def _shift_bilinear(k: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Move the content of each (h, w) kernel by (dx, dy) pixels (+x = towards higher
    column index), bilinear, zero fill: first moments move by exactly (dx, dy) up to
    the mass pushed off the border."""
    b, h, w = k.shape
    ys = torch.arange(h, dtype=k.dtype, device=k.device)
    xs = torch.arange(w, dtype=k.dtype, device=k.device)
    sx = xs[None, None, :] - dx[:, None, None]  # source coordinates
    sy = ys[None, :, None] - dy[:, None, None]
    gx = (2.0 * sx / (w - 1) - 1.0).expand(b, h, w)
    gy = (2.0 * sy / (h - 1) - 1.0).expand(b, h, w)
    grid = torch.stack([gx, gy], -1)
    out = torch.nn.functional.grid_sample(k[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[:, 0]


def _centroid32(k: torch.Tensor) -> torch.Tensor:
    """(m, h, w) kernels summing to 1 -> (m, 2) centroids (x, y), float32."""
    h, w = k.shape[-2:]
    xs = torch.arange(w, dtype=k.dtype, device=k.device)
    ys = torch.arange(h, dtype=k.dtype, device=k.device)
    mass = k.sum((1, 2)).clamp_min(1e-30)
    return torch.stack([k.sum(1) @ xs, k.sum(2) @ ys], 1) / mass[:, None]


def _motion_chunk(
    m: int,
    size: int,
    intensity: torch.Tensor,
    gen: torch.Generator,
    blur: torch.Tensor,
    buffer: torch.Tensor | None = None,
) -> torch.Tensor:
    fine = 2 * size
    pts, valid = _motion_paths(m, size, intensity, gen)
    canvas = _splat(pts, valid, fine, buffer)
    k = torch.matmul(torch.matmul(blur, canvas), blur.T).clamp_min(0.0)  # (m, size, size)
    mass = k.flatten(1).sum(1)
    empty = mass <= 1e-12
    if bool(empty.any()):  # the whole path fell off the canvas (essentially never): a delta
        k[empty] = 0.0
        k[empty, size // 2, size // 2] = 1.0
        mass = k.flatten(1).sum(1)
    k = k / mass[:, None, None]
    # Centre of mass -> kernel centre. Paths are centred on their own centre of mass,
    # so only kernels whose path the canvas clipped are off; those are moved back by a
    # bilinear subpixel shift of the rendered kernel (zero fill). The shift is refined a
    # few times (mass pushed off the border moves the centroid less than the shift) but
    # always applied to the rendered kernel once, so it blurs by at most one 2-tap step.
    centre = (size - 1) / 2.0
    off = _centroid32(k) - centre  # (m, 2) = (x, y)
    bad = torch.nonzero((off.abs() > _CENTRE_TOL).any(1)).flatten()
    if bad.numel():
        k0, shift = k[bad], -off[bad]
        for _ in range(24):
            moved = _shift_bilinear(k0, shift[:, 0], shift[:, 1]).clamp_min(0.0)
            moved = moved / moved.flatten(1).sum(1).clamp_min(1e-30)[:, None, None]
            res = _centroid32(moved) - centre
            if float(res.abs().max()) <= _CENTRE_TOL / 2:
                break
            shift = shift - res
        k[bad] = moved
    return k


def motion_kernels(
    n: int,
    size: int = 64,
    intensity: float | tuple[float, float] = 0.5,
    generator: GeneratorLike = None,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> torch.Tensor:
    """``n`` random-trajectory motion-blur kernels, ``(n, 1, size, size)`` float32, each
    non-negative, summing to 1, centroid at the kernel centre (see the module docstring
    for the model). ``intensity`` in [0, 1] (0: straight lines; 0.5: the paper's
    setting; 1: strongly curved, self-crossing) or a (lo, hi) range drawn per kernel.
    Computed on the generator's device, returned on ``device``.

    ``threads``: torch intra-op threads while generating on the CPU (restored
    afterwards; ``None`` keeps the current setting). The work is many mid-sized tensor
    operations: on a busy 2-core machine one thread was 4× faster than two (15 s vs
    60 s for 60,000 kernels), and at most ~1.3× slower on an idle one. The output
    depends on it only through float rounding (~1e-7)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3:
        raise ValueError(f"size must be an int >= 3, got {size!r}")
    n, size = int(n), int(size)
    lo_hi = intensity if isinstance(intensity, Sequence) else (intensity, intensity)
    if len(lo_hi) != 2 or not all(0.0 <= float(v) <= 1.0 for v in lo_hi):
        raise ValueError(f"intensity must be in [0, 1] (or a (lo, hi) range in [0, 1]), got {intensity!r}")
    gen = make_generator(generator)
    diag = 2 * size * math.sqrt(2.0)
    width = max(1, int(diag / 150))  # the reference's line width on the 2x canvas
    sigma = math.sqrt(max(1.0, math.floor(0.01 * diag)) ** 2 + (width**2 - 1) / 12.0)
    blur = _blur_downsample_matrix(size, sigma).to(gen.device)
    out = torch.empty(n, 1, size, size, dtype=torch.float32, device=device)
    buffer = torch.empty(min(n, _CHUNK) * 4 * size * size, dtype=torch.float32, device=gen.device)
    with _intra_op_threads(threads if gen.device.type == "cpu" else None):
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            it = _range_or_scalar(intensity, "intensity", m, gen)
            out[start : start + m, 0] = _motion_chunk(m, size, it, gen, blur, buffer).to(device)
    return out


def recentre_centroid(k: np.ndarray, tol: float = 0.05, iters: int = 4) -> np.ndarray:
    """A 2-D numpy kernel moved by bilinear sub-pixel shifts (zero fill) until its centroid
    is within ``tol`` px of the kernel centre ``(size-1)/2`` (at most ``iters`` shifts:
    mass shifted off the window moves the centroid again), clipped ≥ 0, sum 1."""
    from scipy.ndimage import shift as nd_shift

    c = (np.asarray(k.shape) - 1) / 2.0
    rows, cols = np.indices(k.shape)
    for _ in range(iters):
        s = k.sum()
        dr, dc = c[0] - (rows * k).sum() / s, c[1] - (cols * k).sum() / s
        if abs(dr) < tol and abs(dc) < tol:
            break
        k = np.clip(nd_shift(k, (dr, dc), order=1, mode="constant"), 0.0, None)
    k = np.clip(k, 0.0, None)
    return k / k.sum()


# ------------------------------------------------------------------ Gaussian kernels


def gaussian_kernels(
    n: int,
    size: int = 64,
    std: float | tuple[float, float] = 3.0,
    anisotropy: float | tuple[float, float] = 1.0,
    angle: float | None = None,
    generator: GeneratorLike = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n`` sampled Gaussian kernels ``(n, 1, size, size)``, centred at the kernel centre,
    summing to 1.

    ``std``: the standard deviation (pixels) along the major axis, a float or a (lo, hi)
    range drawn uniformly per kernel. ``anisotropy`` ≥ 1: ratio of major to minor std
    (minor std = std / anisotropy), a float or a (lo, hi) range. ``angle``: orientation
    of the major axis in radians, counter-clockwise from the +x (width) axis towards +y
    (rows); ``None`` draws it uniformly in [0, π) per kernel when the kernel is
    anisotropic. Isotropic by default (the paper's std 3.0). The continuous Gaussian is
    sampled at pixel centres and renormalised: second moments match std² to < 1e-3 for
    stds ≥ 1 px; narrower ones degenerate towards a delta.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    n, size = int(n), int(size)
    gen = make_generator(generator)
    sd = _range_or_scalar(std, "std", n, gen)
    if bool((sd <= 0).any()):
        raise ValueError(f"std must be > 0, got {std!r}")
    an = _range_or_scalar(anisotropy, "anisotropy", n, gen, lo_ok=1.0)
    isotropic = isinstance(anisotropy, (int, float)) and float(anisotropy) == 1.0
    if angle is not None:
        th = torch.full((n,), float(angle), device=gen.device)
    elif isotropic:
        th = torch.zeros(n, device=gen.device)
    else:
        th = _rand((n,), gen) * math.pi
    s1, s2 = sd.double(), (sd / an).double()
    c, s = torch.cos(th).double(), torch.sin(th).double()
    # inverse covariance of R diag(s1², s2²) Rᵀ
    a = c * c / s1**2 + s * s / s2**2
    b = c * s * (1 / s1**2 - 1 / s2**2)
    d = s * s / s1**2 + c * c / s2**2
    coords = torch.arange(size, dtype=torch.float64, device=gen.device) - (size - 1) / 2.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    q = a[:, None, None] * x**2 + 2 * b[:, None, None] * x * y + d[:, None, None] * y**2
    k = torch.exp(-0.5 * q)
    k = k / k.flatten(1).sum(1)[:, None, None]
    return k.to(torch.float32)[:, None].to(device)


# -------------------------------------------------------------------------- statistics


def _as_batch(k) -> torch.Tensor:
    """(h, w), (n, h, w) or (n, 1, h, w) tensor/array -> (n, h, w) float64."""
    t = torch.as_tensor(np.asarray(k) if not isinstance(k, torch.Tensor) else k).detach()
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 4:
        if t.shape[1] != 1:
            raise ValueError(f"kernels must be (n, 1, h, w), got {tuple(t.shape)}")
        t = t[:, 0]
    elif t.dim() != 3:
        raise ValueError(f"kernels must be (h, w), (n, h, w) or (n, 1, h, w), got {tuple(t.shape)}")
    return t.to(torch.float64)


def kernel_centroid(k) -> torch.Tensor:
    """Centre of mass ``(n, 2)`` as (x, y) = (column, row) pixel-index coordinates."""
    t = _as_batch(k)
    h, w = t.shape[-2:]
    mass = t.sum((1, 2)).clamp_min(1e-30)
    ys = torch.arange(h, dtype=torch.float64)
    xs = torch.arange(w, dtype=torch.float64)
    cx = (t.sum(1) * xs).sum(1) / mass
    cy = (t.sum(2) * ys).sum(1) / mass
    return torch.stack([cx, cy], 1)


def kernel_covariance(k) -> torch.Tensor:
    """Mass covariance ``(n, 2, 2)`` in (x, y) order, pixels² (second central moments)."""
    t = _as_batch(k)
    h, w = t.shape[-2:]
    mass = t.sum((1, 2)).clamp_min(1e-30)
    cen = kernel_centroid(t)
    xs = torch.arange(w, dtype=torch.float64)[None, None, :] - cen[:, 0, None, None]
    ys = torch.arange(h, dtype=torch.float64)[None, :, None] - cen[:, 1, None, None]
    sxx = (t * xs * xs).sum((1, 2)) / mass
    syy = (t * ys * ys).sum((1, 2)) / mass
    sxy = (t * xs * ys).sum((1, 2)) / mass
    return torch.stack([torch.stack([sxx, sxy], -1), torch.stack([sxy, syy], -1)], -2)


def kernel_support(k, frac: float = 0.95) -> torch.Tensor:
    """Number of pixels (the largest ones) holding ``frac`` of each kernel's mass, ``(n,)``
    int64. A delta has support 1; a long trajectory has a large support."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    t = _as_batch(k).clamp_min(0.0).flatten(1)
    v, _ = torch.sort(t, dim=1, descending=True)
    c = torch.cumsum(v, 1) / v.sum(1, keepdim=True).clamp_min(1e-30)
    return ((c < frac - 1e-12).sum(1) + 1).clamp(max=t.shape[1]).to(torch.int64)


def trajectory_length(k, rel: float = 0.1) -> torch.Tensor:
    """Skeleton-free trajectory-length proxy ``(n,)`` float: the number of pixels whose
    value is at least ``rel`` × the kernel's maximum.

    For kernels drawn with a constant line width (as the motion generator's) this is
    proportional to the visible path length (a straight trajectory of length ℓ pixels
    scores about ℓ × line width, ≈ 2ℓ–3ℓ at size 64); it counts revisited pixels once,
    so self-crossing paths score less than their arc length. Use it to compare kernel
    populations (generator vs a prior's samples), not as an absolute length.
    """
    if not 0.0 < rel < 1.0:
        raise ValueError(f"rel must be in (0, 1), got {rel}")
    t = _as_batch(k).flatten(1)
    peak = t.max(1, keepdim=True).values
    return (t >= rel * peak).sum(1).to(torch.float32)


# ---------------------------------------------------------------------------- file I/O


def save_kernel(k, path_stem: str | Path) -> tuple[Path, Path]:
    """Write ``<path_stem>.npy`` (float32, 2-D, as given) and ``<path_stem>.png``
    (min-max scaled to 8 bits, nearest-upscaled ×4 when the kernel is smaller than 128
    pixels; the factor is recorded in the PNG so :func:`load_kernel` undoes it).
    Accepts (h, w), (1, h, w) or (1, 1, h, w). Returns the two paths."""
    from PIL import Image, PngImagePlugin

    arr = (k.detach().cpu().numpy() if isinstance(k, torch.Tensor) else np.asarray(k)).astype(np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"save_kernel needs a single 2-D kernel, got shape {np.shape(k)}")
    stem = Path(path_stem)
    if stem.suffix in (".npy", ".png"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    npy, png = stem.with_suffix(".npy"), stem.with_suffix(".png")
    np.save(npy, arr)
    lo, hi = float(arr.min()), float(arr.max())
    img = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo)
    img8 = np.round(img * 255.0).astype(np.uint8)
    factor = 4 if max(arr.shape) < 128 else 1
    if factor > 1:
        img8 = np.kron(img8, np.ones((factor, factor), dtype=np.uint8))
    info = PngImagePlugin.PngInfo()
    info.add_text(_PNG_UPSCALE_KEY, str(factor))
    Image.fromarray(img8, mode="L").save(png, pnginfo=info)
    return npy, png


def load_kernel(path: str | Path) -> torch.Tensor:
    """Read a kernel from ``.npy`` or an image file (PNG, …; colour is converted to
    grey), validate it and return it ``(1, 1, h, w)`` float32, non-negative, summing
    to 1. PNGs written by :func:`save_kernel` are downscaled back by their recorded
    factor. Raises a one-line ``ValueError`` on a missing/unreadable file, a non-2-D
    array, non-finite or clearly negative values, or an all-zero kernel."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"kernel file not found: {p}")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - one-line message for any unreadable file
            first = str(e).splitlines()[0] if str(e) else ""
            raise ValueError(f"cannot read kernel {p}: {type(e).__name__}: {first}") from None
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"kernel {p} must hold real numbers, got dtype {arr.dtype}")
        arr = np.asarray(arr, dtype=np.float64)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                factor = int(im.info.get(_PNG_UPSCALE_KEY, "1") or 1)
                grey = im.convert("F") if im.mode in ("I", "I;16", "F") else im.convert("L")
                arr = np.asarray(grey, dtype=np.float64)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ValueError(f"cannot read kernel image {p}: {type(e).__name__}") from None
        if factor > 1:
            arr = arr[factor // 2 :: factor, factor // 2 :: factor]
    arr = np.squeeze(arr)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"kernel {p} must be a 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"kernel {p} holds non-finite values")
    peak = float(np.abs(arr).max())
    if peak == 0.0:
        raise ValueError(f"kernel {p} is all zeros")
    if float(arr.min()) < -1e-3 * peak:
        raise ValueError(f"kernel {p} has negative values (min {arr.min():.3g}, max {arr.max():.3g})")
    arr = np.clip(arr, 0.0, None)
    total = float(arr.sum())
    if total <= 0.0:
        raise ValueError(f"kernel {p} has no positive mass")
    return torch.from_numpy((arr / total).astype(np.float32))[None, None]
