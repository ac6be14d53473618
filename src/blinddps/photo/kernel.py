"""Kernel estimation for photos: at the scale where it is cheap and well-posed.

1. The scale ``s0`` at which the kernel (``kernel_size`` full-resolution pixels) is
   ``coarse_kernel`` pixels, the size the kernel prior's window holds.
2. The most informative ``coarse_region`` window at that scale (:mod:`.region`).
3. A blind estimate there: BlindDPS (``estimator='blinddps'``, any preset, 'valid'
   model: the scene continues past the window) or our L0 baseline
   (``estimator='l0'``, Pan et al.'s own pyramid below ``s0``).
4. Coarse-to-fine refinement up to full resolution in steps of sqrt(2): the kernel is
   upsampled (bicubic) and refined (after a BlindDPS estimate, first at its own scale)
   on that level's most informative window of at most
   ``region`` pixels a side by ``refine_iters`` alternations of an L0-gradient latent
   image and a least-squares kernel on gradients, thresholded, pruned to its main
   connected components and re-centred (:func:`blinddps.baselines.l0_blind.alternate_level`);
   clipped pixels are left out of the kernel's data term.
5. With several candidates (``alt_floors``, ``estimator='both'``) every one is estimated
   (in threads) and :func:`select_kernel` keeps the first unless another's
   :func:`kernel_energy` is clearly lower, never a collapsed one.

Everything here works on the luminance, in whatever light the caller gives (linear
light for camera data, :mod:`.pipeline`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..baselines._common import rgb_to_luma
from ..baselines.l0_blind import alternate_level, centre_kernel, downsample, estimate_kernel_l0, resize_kernel
from .region import informative_region

__all__ = ["COLLAPSE_SPREAD", "KernelEstimate", "SELECT_MARGIN", "estimate_kernel", "kernel_spread", "levels_for",
           "odd", "select_kernel", "trim_kernel", "trim_mass"]

# select_kernel: another candidate replaces the default only if its energy is this fraction lower; a candidate
# narrower than this fraction of the widest one is a collapse (docs/benchmarks.md, "Choosing the floor")
SELECT_MARGIN = 0.1
COLLAPSE_SPREAD = 0.5


def odd(n: float) -> int:
    """The odd integer at or above ``n`` (at least 3)."""
    m = max(3, int(math.ceil(n - 1e-9)))
    return m if m % 2 else m + 1


def levels_for(s0: float, ratio: float = math.sqrt(2.0)) -> list[float]:
    """Scales from ``s0`` up to 1, about ``ratio`` apart."""
    if s0 >= 1.0:
        return [1.0]
    n = max(1, int(math.ceil(math.log(1.0 / s0) / math.log(ratio) - 1e-9)))
    return [s0 * (1.0 / s0) ** (i / n) for i in range(n)] + [1.0]


def trim_kernel(k: np.ndarray, rel: float = 0.05, margin: int = 2) -> np.ndarray:
    """Crop ``k`` to a centred odd square around its entries above ``rel`` of the peak
    plus ``margin`` pixels (the kernel's support, for an automatic size)."""
    ys, xs = np.nonzero(k >= rel * k.max())
    c = (k.shape[0] - 1) // 2
    half = int(max(np.abs(ys - c).max(), np.abs(xs - c).max())) + margin
    half = min(half, c)
    out = k[c - half:c + half + 1, c - half:c + half + 1]
    return out / out.sum()


def trim_mass(k: np.ndarray, min_size: int, mass: float = 0.99) -> np.ndarray:
    """The smallest centred odd square crop of ``k`` (at least ``min_size``) that
    holds ``mass`` of it, renormalised."""
    n = k.shape[0]
    c = (n - 1) // 2
    tot = float(k.sum())
    for m in range(min(odd(min_size), n), n + 1, 2):
        h = (m - 1) // 2
        out = k[c - h:c + h + 1, c - h:c + h + 1]
        if out.sum() >= mass * tot:
            return out / out.sum()
    return k / tot


@dataclass
class KernelEstimate:
    """A photo's kernel: ``kernel`` (``(K, K)`` at full resolution, correlation
    convention, sums to 1), the coarse estimate, and what was done at each level."""

    kernel: np.ndarray
    coarse: np.ndarray
    levels: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    choice: dict[str, Any] | None = None  # estimator 'both': which candidate and why
    candidates: dict[str, np.ndarray] = field(default_factory=dict)  # estimator 'both': every candidate's kernel


def _crop(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    t, l, h, w = box
    return a[..., t:t + h, l:l + w]


def _resample_rgb(y: np.ndarray, s: float) -> np.ndarray:
    return y if s >= 1.0 else np.stack([downsample(c, s) for c in y])


def _luminance(y01: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 luminance of ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)``."""
    a = np.asarray(y01, dtype=np.float64)
    if a.ndim == 2:
        return a
    return rgb_to_luma(a) if a.shape[0] == 3 else a[0]


def _at_scale(gray: np.ndarray, exclude: np.ndarray | None, s: float):
    """``gray`` and ``exclude`` resampled by ``s`` (a pixel is excluded if any clipped
    light reaches it)."""
    ex = None if exclude is None else (downsample(exclude.astype(np.float64), s) > 0.01 if s < 1 else exclude)
    return downsample(gray, s), ex


def _coarse_blinddps(crop_rgb: np.ndarray, size: int, preset: str | dict, seed: int, steps: int | None,
                     samples: int | None, progress: bool, overrides: dict | None) -> np.ndarray:
    """BlindDPS on a ``(C, h, w)`` crop in [0, 1]: the kernel, ``(size, size)``."""
    import torch

    from ..api import solve

    y = torch.from_numpy(np.ascontiguousarray(2.0 * crop_rgb - 1.0, dtype=np.float32))[None]
    over = {"operator": {"mode": "valid", "kernel_size": int(size)}}
    if overrides:
        from ..presets import merge

        over = merge(over, overrides)
    sol = solve(y, preset=preset, steps=steps, seed=seed, num_samples=samples, progress=progress,
                value_range=(-1.0, 1.0), **over)
    k = sol.params["kernel"][0, 0].double().clamp_min(0).numpy()
    return k / k.sum()


def kernel_energy(gray: np.ndarray, k: np.ndarray, lam: float = 5e-4, iters: int = 60,
                  weight: np.ndarray | None = None) -> float:
    """How well ``k`` explains ``gray`` (``(H, W)`` in [0, 1]): the TV-regularised
    objective ``1/2 ||k * x - gray||^2 + lam TV(x)`` per pixel at the TV restoration
    ``x`` (interior of the 'valid' model). Lower is better; used to choose between
    candidate kernels of one photo. ``lam`` 5e-4 picked the better of the two
    candidates on 17 of the 20 Lai synthetic pairs (2e-3: 15, 1e-4: 16): chosen on
    that benchmark, so its 'both' numbers there are optimistic (docs/benchmarks.md)."""
    from .deconvolve import deconvolve
    from .pipeline import valid_residual_rms

    x = deconvolve(gray[None], k, weight=weight, lam=lam, iters=iters)
    r = valid_residual_rms(gray[None], x, k, weight)
    tv = float(np.mean(np.hypot(np.diff(x[0], axis=1)[:-1], np.diff(x[0], axis=0)[:, :-1])))
    return 0.5 * r * r + lam * tv


def estimate_kernel(y01: np.ndarray, kernel_size: int | None = None, *, exclude: np.ndarray | None = None,
                    estimator: str = "blinddps", preset: str | dict = "motion_fast", coarse_kernel: int = 31,
                    coarse_region: int = 160, region: int = 1024, refine_iters: int = 8, lambda_grad: float = 4e-3,
                    gamma: float = 2.0, k_thresh: float = 30.0, kernel_floor: float = 0.035, seed: int = 0, steps: int | None = None,
                    samples: int | None = None, overrides: dict | None = None, progress: bool = False,
                    border_band: bool = True, kernel_margin: float = 0.25, alt_floors: Sequence[float] = (),
                    select_margin: float = SELECT_MARGIN, workers: int = 1,
                    on_level: Callable[[dict], None] | None = None) -> KernelEstimate:
    """The blur kernel of ``y01`` (``(C, H, W)`` or ``(H, W)`` in [0, 1]); see the module
    docstring. ``kernel_size``: in full-resolution pixels (odd; even sizes are rounded
    up); ``None`` guesses a generous size (a tenth of the longer side, 15..151) and
    trims it to the coarse estimate's support. ``exclude``: ``(H, W)`` bool of pixels
    that must not inform the estimate (clipped). ``estimator``: ``'blinddps'`` (with
    ``preset``, ``steps``, ``samples``, ``seed``, preset ``overrides``), ``'l0'``, or
    ``'both'`` (each refined; L0's kernel unless BlindDPS's is clearly better, :func:`select_kernel`). ``kernel_margin``:
    a given size is widened by this fraction for the estimate (a kernel whose mass is
    off its box's centre, or a size guessed a little small, is otherwise cut off; the
    result is trimmed back to its support, never below ``kernel_size``).
    ``border_band``: the kernel's data term leaves out the window's edge band, where
    the scene past the window reaches in. ``kernel_floor``: each least-squares kernel's
    entries below this fraction of its peak are zeroed, and the final kernel's below
    1/``k_thresh`` (Pan: 5 % and 1/20; 3.5 % and 1/30 keep the faint tails of recorded
    shake: better on Levin et al.'s 32 and the held-out-shake photos, worse on the Lai
    set, docs/benchmarks.md). ``alt_floors``: further floors, each a whole estimate of
    its own; :func:`select_kernel` keeps the first candidate (``estimator`` at
    ``kernel_floor``; with ``'both'``, L0's) unless another explains the photo clearly
    better. ``workers``: candidates estimated at once (threads)."""
    if estimator not in ("blinddps", "l0", "both"):
        raise ValueError(f"estimator must be 'blinddps', 'l0' or 'both', got {estimator!r}")
    floors = list(dict.fromkeys([float(kernel_floor), *map(float, alt_floors)]))
    estimators = ["l0", "blinddps"] if estimator == "both" else [estimator]
    plan = [(e, f) for e in estimators for f in floors]
    kw = dict(exclude=exclude, preset=preset, coarse_kernel=coarse_kernel, coarse_region=coarse_region,
              region=region, refine_iters=refine_iters, lambda_grad=lambda_grad, gamma=gamma, k_thresh=k_thresh,
              seed=seed, steps=steps, samples=samples, overrides=overrides, progress=progress,
              border_band=border_band, kernel_margin=kernel_margin, on_level=on_level)
    if len(plan) == 1:
        return _estimate_one(y01, kernel_size, estimator=estimator, kernel_floor=floors[0], **kw)
    return _estimate_candidates(y01, kernel_size, plan, select_margin=select_margin, workers=workers, **kw)


def _estimate_one(y01: np.ndarray, kernel_size: int | None, *, exclude: np.ndarray | None, estimator: str,
                  preset: str | dict, coarse_kernel: int, coarse_region: int, region: int, refine_iters: int,
                  lambda_grad: float, gamma: float, k_thresh: float, kernel_floor: float, seed: int,
                  steps: int | None, samples: int | None, overrides: dict | None, progress: bool,
                  border_band: bool, kernel_margin: float,
                  on_level: Callable[[dict], None] | None) -> KernelEstimate:
    """One candidate: ``estimator`` at ``kernel_floor`` (see :func:`estimate_kernel`)."""
    y01 = np.asarray(y01, dtype=np.float64)
    rgb = y01 if y01.ndim == 3 else y01[None]
    H, W = rgb.shape[-2:]
    auto = kernel_size is None
    K = odd(min(max(15, max(H, W) // 10), 151)) if auto else odd(kernel_size)
    if K > min(H, W) // 2:
        raise ValueError(f"a {K} px kernel needs an image of at least {2 * K} px a side; this one is {H}x{W}")
    K_user = K
    if not auto and kernel_margin > 0:
        K = max(K, min(odd(K * (1.0 + kernel_margin)), odd(min(H, W) // 2 - 1)))
    gray = _luminance(rgb)
    scales = levels_for(min(1.0, coarse_kernel / K))
    timings: dict[str, float] = {}
    levels: list[dict[str, Any]] = []

    # --- coarse estimate
    t0 = time.perf_counter()
    s0 = scales[0]
    k0 = odd(K * s0) if s0 < 1 else K
    k0 = min(k0, odd(coarse_kernel))
    g0, ex0 = _at_scale(gray, exclude, s0)
    # BlindDPS costs per pixel: its window is small; L0 is cheap and takes the refinement's window
    box = informative_region(g0, max(coarse_region if estimator == "blinddps" else region, 3 * k0), ex0)
    if estimator == "blinddps":
        crop = _crop(_resample_rgb(rgb, s0), box)
        k = _coarse_blinddps(crop, k0, preset, seed, steps, samples, progress, overrides)
    else:
        k, _ = estimate_kernel_l0(_crop(g0, box), k0, lambda_pixel=0.0, lambda_grad=lambda_grad,
                                  gamma=gamma, k_thresh=0.0, exclude=None if ex0 is None else _crop(ex0, box),
                                  border_band=border_band, zero_below=kernel_floor)
    k = centre_kernel(np.maximum(k, 0.0))
    k = k / k.sum()
    if auto:
        k = trim_kernel(k)
        K = min(K, odd(k.shape[0] / s0))
    coarse = k.copy()
    levels.append({"scale": s0, "kernel_px": int(k.shape[0]), "region": list(box), "stage": estimator})
    if on_level:
        on_level(levels[-1])
    timings["coarse_s"] = time.perf_counter() - t0

    # --- coarse to fine
    t1 = time.perf_counter()
    lam = lambda_grad
    prev = s0
    # BlindDPS's window was small: its kernel is first refined at its own scale on the larger window
    for s in (scales if estimator == "blinddps" else scales[1:]):
        ks = K if s >= 1.0 else odd(K * s)
        g, ex = _at_scale(gray, exclude, s)
        k = resize_kernel(k, s / prev, ks, ks)
        box = informative_region(g, max(region, 3 * ks), ex)
        k, _, lam, _ = alternate_level(_crop(g, box), k, 0.0, lam, refine_iters, gamma,
                                       None if ex is None else _crop(ex, box), border_band, kernel_floor)
        k = centre_kernel(np.maximum(k, 0.0))
        k = k / k.sum()
        prev = s
        levels.append({"scale": s, "kernel_px": ks, "region": list(box), "stage": "refine"})
        if on_level:
            on_level(levels[-1])
    if k.shape[0] != K:  # s0 was 1 but the coarse size was capped, or the auto size trimmed
        k = resize_kernel(k, 1.0, K, K)
    if k_thresh > 0:
        k = np.where(k < k.max() / k_thresh, 0.0, k)
    if K > K_user:  # the margin: back to the size asked for unless mass lies beyond it
        k = trim_mass(k, K_user)
    timings["refine_s"] = time.perf_counter() - t1
    return KernelEstimate(kernel=k / k.sum(), coarse=coarse, levels=levels, seconds=timings)


def kernel_spread(k: np.ndarray) -> float:
    """RMS distance of ``k``'s mass from its centroid, px (a delta: 0): the root of the
    trace of :func:`blinddps.simulate.kernels.kernel_covariance`."""
    from ..simulate.kernels import kernel_covariance

    cov = kernel_covariance(np.asarray(k, dtype=np.float64))[0]
    return float(np.sqrt(max(float(cov[0, 0] + cov[1, 1]), 0.0)))


def select_kernel(energies: dict[str, float], spreads: dict[str, float], default: str,
                  margin: float = SELECT_MARGIN, collapse: float = COLLAPSE_SPREAD) -> tuple[str, list[str]]:
    """Which candidate kernel a photo keeps: ``default`` unless another's
    :func:`kernel_energy` is more than ``margin`` (a fraction) below the default's.
    Candidates whose spread is below ``collapse`` of the widest one's are never chosen
    (the energy of a blurred photo is lowest for a near-delta kernel, the no-blur
    explanation: Levin et al. 2009); if the default is one of them, the lowest energy
    of the others wins. Returns the choice and the excluded candidates."""
    widest = max(spreads.values())
    excluded = [n for n, s in spreads.items() if s < collapse * widest]
    ok = [n for n in energies if n not in excluded]
    best = min(ok, key=energies.get)
    if default in ok and energies[best] >= (1.0 - margin) * energies[default]:
        best = default
    return best, excluded


def _estimate_candidates(y01: np.ndarray, kernel_size: int | None, plan: list[tuple[str, float]], *,
                         select_margin: float, workers: int, **kw: Any) -> KernelEstimate:
    """Every (estimator, floor) of ``plan`` estimated (``workers`` at once) and refined;
    :func:`select_kernel` on the finest level's window picks one (the first is the default)."""
    names = [est if len({e for e, _ in plan}) > 1 and len({f for _, f in plan}) == 1 else f"{est}@{floor:g}"
             for est, floor in plan]

    gray = _luminance(y01)
    exclude = kw.get("exclude")

    def run(item: tuple[str, float]) -> tuple[KernelEstimate, float, float]:
        est, floor = item
        e = _estimate_one(y01, kernel_size, estimator=est, kernel_floor=floor, **kw)
        t0 = time.perf_counter()
        box = tuple(e.levels[-1]["region"])
        w = None if exclude is None else (~_crop(exclude, box)).astype(np.float32)
        energy = kernel_energy(_crop(gray, box), e.kernel, weight=w)
        e.seconds["select_s"] = time.perf_counter() - t0
        return e, energy, kernel_spread(e.kernel)

    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(plan))) as pool:
            results = list(pool.map(run, plan))
    else:
        results = [run(item) for item in plan]
    cands = {n: r[0] for n, r in zip(names, results)}
    energies = {n: r[1] for n, r in zip(names, results)}
    spreads = {n: r[2] for n, r in zip(names, results)}
    best, excluded = select_kernel(energies, spreads, names[0], select_margin)
    out = cands[best]
    out.levels = [dict(lv, candidate=name) for name, est in cands.items() for lv in est.levels]
    out.seconds = {k: sum(e.seconds.get(k, 0.0) for e in cands.values()) for k in ("coarse_s", "refine_s", "select_s")}
    out.choice = {"chosen": best, "default": names[0], "energies": energies, "spreads": spreads,
                  "collapsed": excluded, "margin": select_margin}
    out.candidates = {name: est.kernel for name, est in cands.items()}
    return out
