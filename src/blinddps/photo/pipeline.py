"""A photograph end to end: kernel at the cheap scale, restoration at full resolution.

``deblur_photo`` takes the photo as recorded (``(C, H, W)`` on [-1, 1], sRGB-encoded
values), and

1. marks clipped pixels (``clip_mask``) and undoes the sRGB curve (``linear_light``)
   for the restoration;
2. estimates the kernel (:func:`blinddps.photo.kernel.estimate_kernel`) on the
   unclipped luminance of the recorded values (``estimate_linear``: in linear light);
3. restores every channel at full resolution with that kernel
   (:func:`blinddps.photo.deconvolve.deconvolve`), clipped pixels out of the data term;
4. re-applies the sRGB curve.

It returns a :class:`blinddps.api.Solution` (what ``solve`` returns), so the command
line, the harness and torchrun sharding handle both the same way; ``settings['photo']``
records every choice and ``timings['stages']`` each stage's seconds and peak memory.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from ..baselines._common import valid_correlate
from .color import clipped_mask, linear_to_srgb, srgb_to_linear
from .deconvolve import deconvolve
from .kernel import SELECT_MARGIN, KernelEstimate, estimate_kernel
from .stages import StageMeter

__all__ = ["PhotoSettings", "candidate_workers", "deblur_photo", "saturation_gain", "valid_residual_rms"]


@dataclass
class PhotoSettings:
    """Every choice of the photo pipeline (docs/photos.md). Defaults are the measured
    ones (docs/benchmarks.md, "Photographs")."""

    kernel_size: int | None = None        # full-resolution px (odd); None: automatic
    kernel_margin: float = 0.25           # a given size is widened by this fraction to estimate (Levin: docs/benchmarks.md)
    kernel_floor: float = 0.035           # LS kernel entries below this fraction of the peak zeroed (Pan: 0.05; docs/benchmarks.md)
    alt_floors: tuple[float, ...] = (0.05,)  # further floors, each a whole estimate; one replaces the default only
    select_margin: float = SELECT_MARGIN  # ... if its energy is this fraction lower (docs/photos.md, "Two floors")
    estimator: str = "l0"                 # coarse estimate: 'l0', 'blinddps' or 'both' (docs/photos.md: l0 measured best)
    preset: str = "motion_fast"           # BlindDPS preset for the coarse estimate
    steps: int | None = None              # its steps (None: the preset's)
    samples: int | None = None            # its posterior samples (None: the preset's)
    coarse_kernel: int = 31               # kernel px at the coarse scale (fits the 32-px prior window)
    coarse_region: int = 160              # side of the coarse estimate's window, coarse px
    region: int = 1024                    # side of each refinement level's window (and of the L0 coarse estimate)
    refine_iters: int = 8                 # alternations per refinement level (4: -0.9 dB on Lai, docs/benchmarks.md)
    linear_light: bool = True             # undo sRGB before deconvolving (re-applied on output)
    estimate_linear: bool = False         # ... and before estimating the kernel too (measured worse: docs/photos.md)
    clip_mask: bool = True                # leave clipped pixels out of the restoration's data term
    clip_mask_kernel: bool = True         # ... and (with their kernel-reach) out of the kernel's (mixed: docs/benchmarks.md)
    clip_level: float = 0.98              # recorded value counted as clipped ([0, 1])
    tv_weight: float | None = None        # full-resolution TV weight (None: from the noise)
    deconv_iters: int = 80                # ADMM iterations of the full-resolution restoration
    tile_pixels: int = 2**21              # restoration tile size (core pixels)
    fallback: bool = True                 # a restoration that fails its check: another candidate, else the input
    failure_saturation: float = 0.25      # ... the check: this fraction more of the frame at black/white than the input
    workers: int | None = None            # candidate estimates at once (threads); None: the machine's cores with
    #                                       the L0 estimator (numpy/scipy release the GIL and do not spin), torch's
    #                                       thread count when BlindDPS runs in them
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)  # preset overrides of the coarse estimate

    def check(self) -> None:
        if self.estimator not in ("blinddps", "l0", "both"):
            raise ValueError(f"estimator must be 'blinddps', 'l0' or 'both', got {self.estimator!r}")
        if self.kernel_size is not None and self.kernel_size < 3:
            raise ValueError(f"kernel_size must be at least 3, got {self.kernel_size}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be positive, got {self.workers}")
        for name in ("coarse_kernel", "coarse_region", "region", "refine_iters", "deconv_iters", "tile_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for f in (self.kernel_floor, *self.alt_floors):
            if not 0.0 <= f < 1.0:
                raise ValueError(f"kernel floors must be in [0, 1), got {f}")
        if not 0.0 < self.failure_saturation <= 1.0:
            raise ValueError(f"failure_saturation must be in (0, 1], got {self.failure_saturation}")
        if not 0.0 <= self.select_margin < 1.0:
            raise ValueError(f"select_margin must be in [0, 1), got {self.select_margin}")
        if not 0.0 <= self.kernel_margin <= 2.0:
            raise ValueError(f"kernel_margin must be in [0, 2], got {self.kernel_margin}")
        if not 0.0 < self.clip_level <= 1.0:
            raise ValueError(f"clip_level must be in (0, 1], got {self.clip_level}")


def candidate_workers(st: PhotoSettings) -> int:
    """Threads for the kernel candidates (``st.workers``, or see :class:`PhotoSettings`)."""
    if st.workers is not None:
        return st.workers
    if st.estimator == "l0":
        return os.cpu_count() or 1
    return max(1, torch.get_num_threads())


def saturation_gain(y01: np.ndarray, out01: np.ndarray, tol: float = 0.004) -> float:
    """How much more of ``out01`` than of ``y01`` (both ``(C, H, W)`` on [0, 1]) sits at
    black or white (within ``tol``): a fraction of the values. A deblurred photo gains a
    little at its edges' ringing; a restoration from a noise-like kernel turns whole
    regions into clipped blotches (0.28-0.57 on 128x128 photos at noise 0.02, against
    at most 0.22 on the held-out, Lai and Levin photos that gained; docs/benchmarks.md)."""
    def frac(a: np.ndarray) -> float:
        return float(((a <= tol) | (a >= 1.0 - tol)).mean())

    return frac(out01) - frac(y01)


def valid_residual_rms(y: np.ndarray, x: np.ndarray, k: np.ndarray, weight: np.ndarray | None = None) -> float:
    """RMS of ``y - k * x`` over the interior where the 'valid' blur of the restored
    frame is defined (``(C, H, W)``, ``y``'s scale), weighted by ``weight`` (``(H, W)`` or
    ``(C, H, W)``)."""
    kh, kw = k.shape
    py, px = (kh - 1) // 2, (kw - 1) // 2
    H, W = y.shape[-2:]
    if H < kh or W < kw:
        return float("nan")
    r = y[:, py:py + H - kh + 1, px:px + W - kw + 1] - valid_correlate(x, k)
    w = np.ones(r.shape[-2:]) if weight is None else weight[..., py:py + H - kh + 1, px:px + W - kw + 1]
    w = np.broadcast_to(w, r.shape)
    den = float(w.sum())
    return float(np.sqrt((r * r * w).sum() / den)) if den > 0 else float("nan")


def deblur_photo(y: torch.Tensor | np.ndarray, settings: PhotoSettings | None = None, *, progress: bool = False,
                 kernel: torch.Tensor | np.ndarray | None = None, **kw: Any):
    """Deblur one photo ``y`` (``(C, H, W)`` or ``(1, C, H, W)``, values on [-1, 1] as
    recorded). ``settings`` or keyword overrides of :class:`PhotoSettings`. Returns a
    :class:`blinddps.api.Solution` with the image on [-1, 1] (``(1, C, H, W)``), the
    full-resolution kernel in ``params['kernel']`` (``(1, 1, K, K)``), the residual
    over the interior, ``settings['photo']`` and per-stage ``timings['stages']``; with
    ``estimator='both'`` every candidate kernel in ``param_samples['kernel:<name>']``.
    ``kernel``: a known kernel (``(K, K)``, correlation convention): no estimate, only
    the restoration (the same image stage a blind run ends with)."""
    from .. import __version__
    from ..api import Solution

    st = settings or PhotoSettings()
    if kw:
        st = PhotoSettings(**{**asdict(st), **kw})
    st = replace(st, alt_floors=tuple(float(f) for f in st.alt_floors))
    st.check()
    t_start = time.perf_counter()
    meter = StageMeter()
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.ndim == 4:
        if arr.shape[0] != 1:
            raise ValueError(f"deblur_photo takes one photo, got a batch of {arr.shape[0]}")
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.isfinite(arr).all():
        raise ValueError(f"deblur_photo: expected a finite (C, H, W) image, got shape {arr.shape}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="photo", unit="stage", total=3, leave=False)
    with meter.stage("prepare"):
        y01 = np.clip((arr.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)
        clipped_c = clipped_mask(y01, st.clip_level, per_channel=True) if st.clip_mask else np.zeros(y01.shape, bool)
        clipped = clipped_c.any(axis=0)  # the luminance's: any channel
        work = srgb_to_linear(y01) if st.linear_light else y01
        # the kernel from the recorded values: L0's weights are for sRGB-like contrast; in linear light the
        # shadows' gradients shrink under the noise (0.29 vs 0.78 MNC on a held-out 65-px shake, docs/photos.md)
        est_in = work if (st.linear_light and st.estimate_linear) else y01
    known = None
    if kernel is not None:
        known = np.asarray(kernel.detach().cpu().double() if isinstance(kernel, torch.Tensor) else kernel,
                           dtype=np.float64)
        known = known.reshape(known.shape[-2:])
        if known.min() < 0 or not np.isfinite(known).all() or known.sum() <= 0:
            raise ValueError("deblur_photo: a known kernel must be finite, non-negative and not all zero")
        known = known / known.sum()
    with meter.stage("kernel"):
        if known is not None:
            est = KernelEstimate(kernel=known, coarse=known, levels=[{"stage": "given"}])
        else:
            est = estimate_kernel(est_in, st.kernel_size,
                                  exclude=clipped if clipped.any() and st.clip_mask_kernel else None,
                                  estimator=st.estimator, preset=st.preset, coarse_kernel=st.coarse_kernel,
                                  coarse_region=st.coarse_region, region=st.region, refine_iters=st.refine_iters,
                                  seed=st.seed, steps=st.steps, samples=st.samples, overrides=st.overrides or None,
                                  kernel_margin=st.kernel_margin, kernel_floor=st.kernel_floor,
                                  alt_floors=st.alt_floors, select_margin=st.select_margin,
                                  workers=candidate_workers(st), progress=progress)
    if bar is not None:
        bar.update(1)
    weight = None if not clipped.any() else (~clipped_c).astype(np.float32)  # each channel its own

    def restore(kk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xx = deconvolve(work, kk, weight=weight, lam=st.tv_weight, iters=st.deconv_iters, tile_pixels=st.tile_pixels)
        return xx, (linear_to_srgb(xx) if st.linear_light else np.clip(xx, 0.0, 1.0))

    k = est.kernel
    fallback = None
    with meter.stage("restore"):
        x, out01 = restore(k)
        if st.fallback and known is None:
            k, x, out01, fallback = _check_restoration(y01, work, est, k, x, out01, restore, st.failure_saturation)
        residual = 2.0 * valid_residual_rms(work, x, k, weight)  # on the [-1, 1] scale, like solve()
    if bar is not None:
        bar.update(1)
    with meter.stage("finish"):
        image = torch.from_numpy(np.ascontiguousarray(2.0 * out01 - 1.0, dtype=np.float32))[None]
    if bar is not None:
        bar.update(1)
        bar.close()
    total = time.perf_counter() - t_start
    photo = asdict(st)
    photo.update(kernel_size_used=int(k.shape[0]), clipped_fraction=float(clipped_c.mean()), levels=est.levels,
                 choice=est.choice, fallback=fallback)
    return Solution(
        image=image,
        params={"kernel": torch.from_numpy(k.astype(np.float32))[None, None]},
        residual_rms=torch.tensor([residual]),
        param_samples={f"kernel:{name}": torch.from_numpy(c.astype(np.float32))[None, None]
                       for name, c in est.candidates.items()},
        settings={"preset": f"photo/{st.estimator}" + (f"+{st.preset}" if st.estimator != "l0" else ""),
                  "pipeline": "photo", "photo": photo, "seed": st.seed, "num_samples": st.samples,
                  "device": "cpu", "amp": False, "padded_to": None,
                  "config": {"operator": {"mode": "valid", "kernel_size": int(k.shape[0])}},
                  "versions": {"blinddps": __version__, "torch": torch.__version__}},
        timings={"total_s": total, "steps": None, "kernel_coarse_s": est.seconds.get("coarse_s"),
                 "kernel_refine_s": est.seconds.get("refine_s"), "stages": meter.stages,
                 "peak_rss_mb": meter.peak_rss_mb},
    )


def _check_restoration(y01: np.ndarray, work: np.ndarray, est: KernelEstimate, k: np.ndarray, x: np.ndarray,
                       out01: np.ndarray, restore: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                       limit: float):
    """The restoration's check (:func:`saturation_gain` at most ``limit``; ``y01`` the
    recorded values, ``work`` the same in the restoration's light). When it
    fails: the other candidate kernels (lowest energy first, collapsed ones never),
    and when every one fails, the input unchanged with a delta kernel and a warning.
    Returns the kernel, the restoration (linear and output values) and a record
    (``None`` when the first restoration passed)."""
    gain = saturation_gain(y01, out01)
    if gain <= limit:
        return k, x, out01, None
    ch = est.choice or {}  # empty with a single candidate
    record: dict[str, Any] = {"limit": limit, "saturation_gain": {ch.get("chosen", "kernel"): gain}}
    energies = ch.get("energies", {})
    others = [n for n in sorted(energies, key=energies.get)
              if n != ch.get("chosen") and n not in ch.get("collapsed", [])]
    for name in others:
        kk = est.candidates[name]
        xx, oo = restore(kk)
        record["saturation_gain"][name] = g = saturation_gain(y01, oo)
        if g <= limit:
            record["used"] = name
            warnings.warn(f"the chosen kernel's restoration failed its check (saturation gain {gain:.2f} > "
                          f"{limit:g}); used the {name} kernel instead", RuntimeWarning, stacklevel=3)
            return kk, xx, oo, record
    K = k.shape[0]
    delta = np.zeros((K, K))
    delta[(K - 1) // 2, (K - 1) // 2] = 1.0
    record["used"] = "input"
    warnings.warn(f"no kernel estimate gave a restoration that passes its check (saturation gain {gain:.2f} > "
                  f"{limit:g}: the kernel looks like noise); the output is the input unchanged and kernel.npy a "
                  "delta (--no-fallback keeps the failed restoration)", RuntimeWarning, stacklevel=3)
    return delta, work.copy(), y01.copy(), record
