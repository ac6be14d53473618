"""Image, kernel and tilt metrics.

Images follow the library convention: float arrays in [-1, 1] (``data_range=2.0``),
torch tensors or numpy arrays, a single image ``(C, H, W)`` / ``(H, W)`` or a batch
``(B, C, H, W)``. A single image gives a float, a batch a list of floats.

PSNR and SSIM are scikit-image's (``peak_signal_noise_ratio``,
``structural_similarity`` with ``channel_axis`` and its default 7x7 uniform window;
extra keywords are passed through), computed on float64 ``(H, W, C)`` arrays.

Blind deconvolution recovers the image only up to a translation (the kernel can
absorb any shift), so ``aligned_psnr`` / ``aligned_ssim`` search integer shifts.

Kernel metrics (MNC, aligned MSE, blob floor) take ``(k, k)`` or ``(1, 1, k, k)``
kernels (or batches ``(B, 1, k, k)``) and are shift invariant.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from scipy.signal import correlate
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "psnr",
    "ssim",
    "aligned_psnr",
    "aligned_ssim",
    "mnc",
    "kernel_mse_aligned",
    "blob_floor_mnc",
    "gaussian_blob",
    "tilt_rmse",
    "lpips_available",
]


# --------------------------------------------------------------------------- helpers
def _np(x) -> np.ndarray:
    """torch tensor or array-like -> float64 numpy array (detached, on CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_image_batch(x) -> tuple[np.ndarray, bool]:
    """Return ``(B, H, W, C)`` float64 and whether the input was a batch."""
    a = _np(x)
    if a.ndim == 2:
        return a[None, :, :, None], False
    if a.ndim == 3:
        return np.moveaxis(a, 0, -1)[None], False
    if a.ndim == 4:
        return np.moveaxis(a, 1, -1), True
    raise ValueError(f"expected an image (H,W), (C,H,W) or (B,C,H,W); got shape {a.shape}")


def _pair(est, ref) -> tuple[np.ndarray, np.ndarray, bool]:
    e, be = _as_image_batch(est)
    r, br = _as_image_batch(ref)
    if e.shape != r.shape:
        # allow a single reference against a batch of one, etc. only when shapes agree
        raise ValueError(f"shape mismatch: est {e.shape} vs ref {r.shape} (as B,H,W,C)")
    return e, r, (be or br)


def _out(values: list, batch: bool):
    return values if batch else values[0]


def _psnr_hwc(e: np.ndarray, r: np.ndarray, data_range: float) -> float:
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(r, e, data_range=data_range))


def _ssim_hwc(e: np.ndarray, r: np.ndarray, data_range: float, **kw) -> float:
    if e.shape[-1] == 1:
        return float(structural_similarity(r[..., 0], e[..., 0], data_range=data_range, **kw))
    return float(structural_similarity(r, e, data_range=data_range, channel_axis=-1, **kw))


# --------------------------------------------------------------------------- images
def psnr(est, ref, data_range: float = 2.0):
    """PSNR in dB (``inf`` for identical images). Float, or a list for a batch."""
    e, r, batch = _pair(est, ref)
    return _out([_psnr_hwc(e[i], r[i], data_range) for i in range(len(e))], batch)


def ssim(est, ref, data_range: float = 2.0, **kwargs):
    """SSIM (scikit-image, channel_axis on HWC). Float, or a list for a batch."""
    e, r, batch = _pair(est, ref)
    return _out([_ssim_hwc(e[i], r[i], data_range, **kwargs) for i in range(len(e))], batch)


def _best_shift(e: np.ndarray, r: np.ndarray, m: int) -> tuple[int, int]:
    """Integer shift (dy, dx) minimising the MSE of e[i+dy, j+dx] vs r[i, j] on the
    common crop r[m:H-m, m:W-m] (the same pixel count for every shift); ties go to the
    smallest shift. Every shift's error comes from one FFT cross-correlation and a
    summed-area table; the few within rounding of the best are then compared exactly,
    pixel by pixel (the same answer as comparing all (2m+1)^2 directly, ~40x faster on
    a megapixel photo)."""
    H, W = r.shape[:2]
    if H <= 2 * m or W <= 2 * m:
        raise ValueError(f"max_shift={m} too large for a {H}x{W} image")
    rc = r[m:H - m, m:W - m]
    h, w = rc.shape[:2]
    e3 = e.reshape(H, W, -1)
    r3 = rc.reshape(h, w, -1)
    # sum over the window of e^2 for every shift, from a summed-area table
    sat = np.zeros((H + 1, W + 1))
    sat[1:, 1:] = (e3 * e3).sum(axis=-1).cumsum(0).cumsum(1)
    n = 2 * m + 1
    e2 = sat[h:h + n, w:w + n] - sat[:n, w:w + n] - sat[h:h + n, :n] + sat[:n, :n]
    # cross term sum(e[i+dy, j+dx] * rc[i, j]) for every shift: a circular correlation of e with rc placed at
    # offset m in an HxW frame, which never wraps for |dy|, |dx| <= m
    from ..baselines._common import irfft2, rfft2

    rpad = np.zeros_like(e3)
    rpad[m:H - m, m:W - m] = r3
    ec, rp = e3.transpose(2, 0, 1), rpad.transpose(2, 0, 1)  # channels first: the FFTs run over the last two axes
    full = irfft2(rfft2(ec) * np.conj(rfft2(rp)), (H, W)).sum(axis=0)
    cross = np.roll(full, (m, m), axis=(0, 1))[:n, :n]  # index (dy + m, dx + m)
    sse = e2 - 2.0 * cross  # + sum(rc^2), the same for every shift
    tol = 1e-7 * (float(np.abs(e2).max()) + float((r3 * r3).sum())) + 1e-12
    near = np.argwhere(sse <= sse.min() + tol)
    best, best_mse = (0, 0), np.inf
    for iy, ix in sorted(map(tuple, near)):  # the order of the direct search: dy, then dx, ascending
        dy, dx = int(iy) - m, int(ix) - m
        ec = e[m + dy:H - m + dy, m + dx:W - m + dx]
        mse = float(np.mean((ec - rc) ** 2))
        if mse < best_mse - 1e-15 or (abs(mse - best_mse) <= 1e-15 and abs(dy) + abs(dx) < abs(best[0]) + abs(best[1])):
            best, best_mse = (dy, dx), mse
    return best


def _crops(e: np.ndarray, r: np.ndarray, m: int, shift: tuple[int, int]):
    H, W = r.shape[:2]
    dy, dx = shift
    return e[m + dy:H - m + dy, m + dx:W - m + dx], r[m:H - m, m:W - m]


def aligned_psnr(est, ref, max_shift: int = 8, data_range: float = 2.0):
    """PSNR at the best integer shift within ``±max_shift``.

    Every shift is compared on the same crop ``ref[m:H-m, m:W-m]`` against
    ``est[m+dy:H-m+dy, m+dx:W-m+dx]`` (so ``est[i+dy, j+dx] ~ ref[i, j]``).
    Returns ``(psnr, (dy, dx))``, or a list of such tuples for a batch.
    """
    e, r, batch = _pair(est, ref)
    res = []
    for i in range(len(e)):
        s = _best_shift(e[i], r[i], max_shift)
        ec, rc = _crops(e[i], r[i], max_shift, s)
        res.append((_psnr_hwc(ec, rc, data_range), s))
    return _out(res, batch)


def aligned_ssim(est, ref, max_shift: int = 8, data_range: float = 2.0, by: str = "mse", **kwargs):
    """SSIM at the best integer shift within ``±max_shift`` (same crop rule as
    :func:`aligned_psnr`). ``by='mse'`` (default) picks the shift by least squares,
    which is cheap; ``by='ssim'`` searches the shift that maximises SSIM itself.
    Returns ``(ssim, (dy, dx))``, or a list of tuples for a batch."""
    if by not in ("mse", "ssim"):
        raise ValueError("by must be 'mse' or 'ssim'")
    e, r, batch = _pair(est, ref)
    m = max_shift
    res = []
    for i in range(len(e)):
        if by == "mse":
            s = _best_shift(e[i], r[i], m)
            ec, rc = _crops(e[i], r[i], m, s)
            res.append((_ssim_hwc(ec, rc, data_range, **kwargs), s))
        else:
            best = (-np.inf, (0, 0))
            for dy in range(-m, m + 1):
                for dx in range(-m, m + 1):
                    ec, rc = _crops(e[i], r[i], m, (dy, dx))
                    v = _ssim_hwc(ec, rc, data_range, **kwargs)
                    if v > best[0]:
                        best = (v, (dy, dx))
            res.append(best)
    return _out(res, batch)


# --------------------------------------------------------------------------- kernels
def _kernels(k) -> tuple[list[np.ndarray], bool]:
    a = _np(k)
    if a.ndim == 2:
        return [a], False
    if a.ndim == 3 and a.shape[0] == 1:
        return [a[0]], False
    if a.ndim == 4 and a.shape[1] == 1:
        return [a[i, 0] for i in range(a.shape[0])], a.shape[0] > 1
    raise ValueError(f"expected a kernel (k,k), (1,k,k), (1,1,k,k) or (B,1,k,k); got {a.shape}")


def _kernel_pairs(k_est, k_true):
    ke, be = _kernels(k_est)
    kt, bt = _kernels(k_true)
    if len(ke) != len(kt):
        if len(kt) == 1:
            kt = kt * len(ke)
        elif len(ke) == 1:
            ke = ke * len(kt)
        else:
            raise ValueError(f"batch sizes differ: {len(ke)} vs {len(kt)}")
    return ke, kt, (be or bt)


def _xcorr_full(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """c[n] = sum_m a[m + s] b[m] with s = n - (shape(b) - 1)."""
    return correlate(a, b, mode="full", method="fft" if a.size * b.size > 4096 else "direct")


def _mnc_lag(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[int, int]]:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0, (0, 0)
    c = _xcorr_full(a, b)
    idx = np.unravel_index(int(np.argmax(c)), c.shape)
    lag = (int(idx[0]) - (b.shape[0] - 1), int(idx[1]) - (b.shape[1] - 1))
    return float(min(c[idx] / (na * nb), 1.0)), lag


def mnc(k_est, k_true):
    """Maximum normalised cross-correlation over all 2-D shifts:
    ``max_s <k_est(. + s), k_true> / (||k_est|| ||k_true||)`` (full correlation, so
    kernels may differ in size). 1 means identical up to translation and scale."""
    ke, kt, batch = _kernel_pairs(k_est, k_true)
    return _out([_mnc_lag(a, b)[0] for a, b in zip(ke, kt)], batch)


def kernel_mse_aligned(k_est, k_true):
    """Mean squared error between the kernels after the best-MNC translation.

    Both kernels are placed on a canvas that holds them entirely (no mass is
    dropped); the sum of squared differences is divided by ``k_true.size``, so for an
    estimate inside the true kernel's frame this is the plain per-pixel MSE. The
    kernels are compared as given (callers pass kernels that sum to 1)."""
    ke, kt, batch = _kernel_pairs(k_est, k_true)
    out = []
    for a, b in zip(ke, kt):
        _, (sy, sx) = _mnc_lag(a, b)
        # a[m + s] aligns with b[m]: put b at offset O and a at offset O - s
        ha, wa = a.shape
        hb, wb = b.shape
        oy = max(0, sy)
        ox = max(0, sx)
        Hc = max(oy + hb, oy - sy + ha)
        Wc = max(ox + wb, ox - sx + wa)
        ca = np.zeros((Hc, Wc))
        cb = np.zeros((Hc, Wc))
        cb[oy:oy + hb, ox:ox + wb] = b
        ca[oy - sy:oy - sy + ha, ox - sx:ox - sx + wa] = a
        out.append(float(np.sum((ca - cb) ** 2) / b.size))
    return _out(out, batch)


def gaussian_blob(size: int | tuple[int, int], std: float) -> np.ndarray:
    """Centred isotropic Gaussian on a ``size`` grid, summing to 1."""
    h, w = (size, size) if np.isscalar(size) else size
    yy = np.arange(h) - (h - 1) / 2.0
    xx = np.arange(w) - (w - 1) / 2.0
    g = np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2.0 * std ** 2))
    return g / g.sum()


def blob_floor_mnc(k_true, stds=None, return_std: bool = False):
    """Best MNC that a centred isotropic Gaussian blob (on ``k_true``'s grid) reaches
    against ``k_true``, over ``stds`` (default: 80 values, geometric from 0.3 to
    size/2). A kernel estimate is only informative if its MNC clears this floor.
    Returns the floor (and the best std with ``return_std=True``); lists for a batch.
    """
    kt, batch = _kernels(k_true)
    out = []
    for b in kt:
        if stds is None:
            grid = np.geomspace(0.3, max(max(b.shape) / 2.0, 0.31), 80)
        else:
            grid = np.asarray(stds, dtype=np.float64).ravel()
        best = (-np.inf, float(grid[0]))
        for s in grid:
            v = _mnc_lag(gaussian_blob(b.shape, float(s)), b)[0]
            if v > best[0]:
                best = (v, float(s))
        out.append(best if return_std else best[0])
    return _out(out, batch)


# --------------------------------------------------------------------------- tilt
def tilt_rmse(t_est, t_true):
    """Root-mean-square end-point error of tilt maps, in pixels:
    ``sqrt(mean_pixels(d0^2 + d1^2))`` with ``d = t_est - t_true`` (the error vector
    length per pixel, not per component). ``(2,H,W)`` -> float; ``(B,2,H,W)`` -> list.
    """
    e, r = _np(t_est), _np(t_true)
    if e.shape != r.shape:
        raise ValueError(f"shape mismatch: {e.shape} vs {r.shape}")
    if e.ndim == 3:
        return float(np.sqrt(np.mean(np.sum((e - r) ** 2, axis=0))))
    if e.ndim == 4:
        return [float(np.sqrt(np.mean(np.sum((e[i] - r[i]) ** 2, axis=0)))) for i in range(len(e))]
    raise ValueError(f"expected (2,H,W) or (B,2,H,W); got {e.shape}")


# --------------------------------------------------------------------------- LPIPS
def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """Whether LPIPS can run offline: the ``lpips`` package, its linear-layer weights
    and the torchvision backbone weights in the torch hub cache. Never downloads.
    Returns ``(available, reason)``. ``lpips`` is not a dependency of this project.
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return False, "the 'lpips' package is not installed"
    pkg = Path(spec.origin).parent
    lin = pkg / "weights" / "v0.1" / f"{net}.pth"
    if not lin.exists():
        return False, f"lpips linear weights missing: {lin}"
    if importlib.util.find_spec("torchvision") is None:
        return False, "torchvision (needed by lpips) is not installed"
    try:
        import torch

        hub = Path(torch.hub.get_dir()) / "checkpoints"
    except Exception as exc:  # pragma: no cover - torch is a dependency
        return False, f"cannot locate the torch hub cache: {exc}"
    prefix = {"alex": "alexnet-", "vgg": "vgg16-", "squeeze": "squeezenet1_1-"}.get(net)
    if prefix is None:
        return False, f"unknown lpips backbone {net!r}"
    found = sorted(hub.glob(prefix + "*.pth")) if hub.exists() else []
    if not found:
        return False, f"backbone weights {prefix}*.pth not in {hub} (offline: would need a download)"
    return True, f"lpips at {pkg}, backbone {found[0].name}"
