"""Shared numpy helpers for the classical baselines.

The project's blur is per-channel cross-correlation (no kernel flip), zero padding,
'same' output size, with PyTorch's placement: for a ``kh x kw`` kernel the output
pixel ``i`` reads ``x[i + u - (kh - 1) // 2]`` for ``u = 0 .. kh - 1``. Everything
here uses that convention so that estimated kernels compare directly with the
project's kernels.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.fft as sfft
from scipy.signal import fftconvolve

WORKERS = 1  # FFT threads: the machine is shared


# --------------------------------------------------------------------------- I/O
def to_batch(y) -> tuple[np.ndarray, Callable[[np.ndarray], object]]:
    """Image in any library form -> ``(B, C, H, W)`` float64 and a function mapping a
    ``(B, C, H, W)`` result back to the input's type, shape, dtype and device."""
    is_torch = hasattr(y, "detach")
    if is_torch:
        import torch

        dev, dt = y.device, y.dtype
        a = y.detach().cpu().double().numpy()
    else:
        a = np.asarray(y)
        dt = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
        a = a.astype(np.float64)
    nd = a.ndim
    if nd == 2:
        a4 = a[None, None]
    elif nd == 3:
        a4 = a[None]
    elif nd == 4:
        a4 = a
    else:
        raise ValueError(f"expected (H,W), (C,H,W) or (B,C,H,W); got shape {a.shape}")

    def back(r: np.ndarray):
        r = r if nd == 4 else (r[0] if nd == 3 else r[0, 0])
        if is_torch:
            return torch.from_numpy(np.ascontiguousarray(r)).to(device=dev, dtype=dt)
        return r.astype(dt, copy=False)

    return a4, back


def kernels_for(k, batch: int) -> np.ndarray:
    """Kernel(s) ``(k,k)``, ``(1,k,k)``, ``(1,1,k,k)`` or ``(B,1,k,k)`` -> ``(B, kh, kw)``."""
    a = k.detach().cpu().double().numpy() if hasattr(k, "detach") else np.asarray(k, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3 and a.shape[0] == 1:
        pass
    elif a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    else:
        raise ValueError(f"unsupported kernel shape {a.shape}")
    if a.shape[0] == 1 and batch > 1:
        a = np.repeat(a, batch, axis=0)
    if a.shape[0] != batch:
        raise ValueError(f"{a.shape[0]} kernels for a batch of {batch}")
    return a


def rgb_to_luma(x: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)`` luminance (ITU-R BT.601 weights for 3 channels,
    the channel mean otherwise)."""
    if x.shape[0] == 3:
        return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    return x.mean(axis=0)


# --------------------------------------------------------------------------- blur
def same_correlate(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The project's forward blur on ``(..., H, W)``: zero-padded 'same'
    cross-correlation with PyTorch's kernel placement (reference implementation)."""
    kh, kw = k.shape
    H, W = x.shape[-2:]
    kf = k[::-1, ::-1].reshape((1,) * (x.ndim - 2) + k.shape)
    full = fftconvolve(x, kf, mode="full", axes=(-2, -1))
    oy, ox = (kh - 1) - (kh - 1) // 2, (kw - 1) - (kw - 1) // 2
    return full[..., oy:oy + H, ox:ox + W]


def valid_correlate(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The 'valid' form of :func:`same_correlate` on ``(..., H, W)``: only the
    ``(H - kh + 1) x (W - kw + 1)`` outputs whose kernel window lies inside ``x`` (a
    frame cut from a scene that goes on past it)."""
    kf = k[::-1, ::-1].reshape((1,) * (x.ndim - 2) + k.shape)
    return fftconvolve(x, kf, mode="valid", axes=(-2, -1))


def _kernel_index(ksize: tuple[int, int], shape: tuple[int, int]):
    kh, kw = ksize
    rows = ((kh - 1) // 2 - np.arange(kh)) % shape[0]
    cols = ((kw - 1) // 2 - np.arange(kw)) % shape[1]
    return np.ix_(rows, cols)


def embed_kernel(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Circular convolution filter ``h`` on ``shape`` equivalent to correlating with
    ``k`` (same placement as :func:`same_correlate`): ``h[(p - u) % H] = k[u]``."""
    h = np.zeros(shape)
    h[_kernel_index(k.shape, shape)] = k
    return h


def extract_kernel(c: np.ndarray, ksize: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`embed_kernel`: read a kernel-sized window out of ``c``."""
    return c[_kernel_index(ksize, c.shape)]


def corr_otf(k: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 transfer function of circular correlation with ``k`` on ``shape``."""
    return sfft.rfft2(embed_kernel(k, shape), workers=WORKERS)


def rfft2(x):
    return sfft.rfft2(x, workers=WORKERS)


def irfft2(X, shape):
    return sfft.irfft2(X, s=shape, workers=WORKERS)


def diff_otf(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 transfer functions of circular forward differences
    ``(Dh x)[i, j] = x[i, j+1] - x[i, j]`` and ``(Dv x)[i, j] = x[i+1, j] - x[i, j]``."""
    H, W = shape
    fy = np.exp(2j * np.pi * np.arange(H) / H) - 1.0
    fx = np.exp(2j * np.pi * np.arange(W // 2 + 1) / W) - 1.0
    return np.broadcast_to(fx[None, :], (H, W // 2 + 1)), np.broadcast_to(fy[:, None], (H, W // 2 + 1))


# --------------------------------------------------------------------------- borders
def edgetaper(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """MATLAB-style ``edgetaper`` on ``(..., H, W)``: blend the image with its
    circularly blurred version using a weight built from the autocorrelation of the
    kernel's projections, 0 at the borders and ~1 in the interior. This makes the
    image nearly periodic and suppresses ringing of FFT (circular) deconvolution."""
    H, W = img.shape[-2:]
    betas = []
    for n, proj in ((H, k.sum(axis=1)), (W, k.sum(axis=0))):
        z = np.real(np.fft.ifft(np.abs(np.fft.fft(proj, n - 1)) ** 2))
        z = np.concatenate([z, z[:1]])
        betas.append(z / z.max())
    alpha = (1.0 - betas[0])[:, None] * (1.0 - betas[1])[None, :]
    blurred = irfft2(rfft2(img) * corr_otf(k, (H, W)), (H, W))
    out = alpha * img + (1.0 - alpha) * blurred
    lo = img.min(axis=(-2, -1), keepdims=True)
    hi = img.max(axis=(-2, -1), keepdims=True)
    return np.clip(out, lo, hi)


def wrap_pad(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Extend ``(..., H, W)`` to ``(..., Hp, Wp)`` by appending bands at the bottom and
    right that go smoothly (cosine ramp) from the last row/column to the first, so
    the result is continuous as a periodic image. The image occupies the top-left
    ``H x W`` corner. A cheap stand-in for Liu & Jia's boundary wrapping used by
    Pan et al.'s code."""
    H, W = img.shape[-2:]
    Hp, Wp = shape
    if Hp < H or Wp < W:
        raise ValueError("wrap_pad shape smaller than the image")
    out = img
    if Wp > W:
        L = Wp - W
        t = (1.0 - np.cos(np.pi * (np.arange(1, L + 1) / (L + 1)))) / 2.0
        band = (1.0 - t) * out[..., :, W - 1:W] + t * out[..., :, 0:1]
        out = np.concatenate([out, band], axis=-1)
    if Hp > H:
        L = Hp - H
        t = (1.0 - np.cos(np.pi * (np.arange(1, L + 1) / (L + 1)))) / 2.0
        t = t[:, None]
        band = (1.0 - t) * out[..., H - 1:H, :] + t * out[..., 0:1, :]
        out = np.concatenate([out, band], axis=-2)
    return out


def fft_size(n: int) -> int:
    return sfft.next_fast_len(int(n), real=True)
