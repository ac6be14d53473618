"""Blind deblurring with the L0-regularised intensity and gradient prior.

Our implementation of J. Pan, Z. Hu, Z. Su, M.-H. Yang, "Deblurring Text Images via
L0-Regularized Intensity and Gradient Prior", CVPR 2014, and "L0-Regularized
Intensity and Gradient Prior for Deblurring Text Images and Beyond", TPAMI 2017,
following the structure and default parameters of the authors' MATLAB release:

* coarse-to-fine pyramid with ratio sqrt(1/2) until the kernel is about 5 px; kernel
  sizes odd at every level; the coarsest kernel a 2-pixel horizontal segment; the
  kernel is upsampled (bicubic) from level to level;
* at each level, ``xk_iter`` (5) alternations of
  (a) latent image ``S = argmin ||k * S - B||^2 + lambda_pixel ||S||_0 +
      lambda_grad ||grad S||_0`` by half-quadratic splitting: an outer loop on the
      intensity penalty beta (2 lambda_pixel -> 8, x2), an inner loop on the gradient
      penalty mu (2 lambda_grad -> 1e5, x2); both auxiliary problems are hard
      thresholds, the S-problem a closed-form FFT solve (circular boundary, on the
      image extended to a smooth periodic one);
  (b) kernel ``k = argmin ||grad S (x) k - grad B||^2 + gamma ||k||^2`` (gamma = 2)
      on the kernel support by 20 conjugate-gradient iterations with FFT products,
      entries below 5 % of the maximum zeroed, then connected components (8-connected)
      holding less than 0.1 of the mass removed, negatives clipped, normalised;
  and both lambdas divided by 1.1 (floor 1e-4), carried over to the next level;
* after each level the kernel is re-centred (integer shift of its centroid);
  at the end entries below max/``k_thresh`` (20) are zeroed;
* final non-blind restoration of every channel with the estimated kernel. Pan's code
  combines a TV deconvolution with an L0-gradient deconvolution to remove ringing
  (``result = TV - bilateral(TV - L0)``, ``final='ring'``); ``final='tv'`` uses the
  TV result alone (:func:`blinddps.baselines.tv.tv_deconvolve`, exact for the
  project's zero-padded forward model).

The kernel is estimated on the luminance (ITU-R BT.601) of the input mapped to
[0, 1] (Pan's parameters are for [0, 1] images). Blur convention: the project's
cross-correlation ('same', PyTorch placement), so the returned kernel compares
directly with the project's kernels. Differences from the MATLAB code: the periodic
extension of the observation is a cosine ramp between opposite edges rather than Liu
& Jia's boundary wrapping; the pyramid's anti-aliasing keeps the image aligned (no
'valid' crop); the bilateral filter is a plain windowed one (sigma_s 3, sigma_r 0.1).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ._common import (corr_otf, diff_otf, embed_kernel, extract_kernel, fft_size, irfft2,
                      rfft2, rgb_to_luma, to_batch, wrap_pad)
from .tv import tv_deconvolve_channels, tv_weight

__all__ = ["l0_blind_deblur", "l0_deblur_whole", "l0_restoration", "estimate_psf", "estimate_kernel_l0",
           "alternate_level", "resize_kernel", "centre_kernel", "downsample"]


# --------------------------------------------------------------------------- latent image
def _grad_c(x):
    """Circular forward differences (last two axes)."""
    return np.roll(x, -1, axis=-1) - x, np.roll(x, -1, axis=-2) - x


def _grad_adj(h, v):
    return (np.roll(h, 1, axis=-1) - h) + (np.roll(v, 1, axis=-2) - v)


def _fft_terms(im: np.ndarray, k: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFT-domain pieces of the half-quadratic solves: Kᴴ·F(im), |K|², |Dh|²+|Dv|²."""
    K = corr_otf(k, shape)
    Dh, Dv = diff_otf(shape)
    return np.conj(K) * rfft2(im), np.abs(K) ** 2, np.abs(Dh) ** 2 + np.abs(Dv) ** 2


def l0_deblur_whole(im: np.ndarray, k: np.ndarray, lambda_pixel: float, lambda_grad: float,
                    kappa: float = 2.0, beta_max: float = 8.0, mu_max: float = 1e5) -> np.ndarray:
    """``argmin_S ||k * S - im||^2 + lambda_pixel ||S||_0 + lambda_grad ||grad S||_0``
    on a periodic ``(H, W)`` image (Pan et al., Algorithm 1), half-quadratic splitting
    with FFT solves. Both weights must be positive (use :func:`l0_restoration` for
    the gradient-only prior)."""
    if lambda_pixel <= 0 or lambda_grad <= 0:
        raise ValueError("lambda_pixel and lambda_grad must be positive")
    shape = im.shape
    n1, den_k, den_g = _fft_terms(im, k, shape)
    S = im.copy()
    beta = 2.0 * lambda_pixel
    while beta < beta_max:
        u = np.where(S * S < lambda_pixel / beta, 0.0, S)
        fu = beta * rfft2(u)
        mu = 2.0 * lambda_grad
        while mu < mu_max:
            h, v = _grad_c(S)
            t = h * h + v * v < lambda_grad / mu
            h[t] = 0.0
            v[t] = 0.0
            FS = (n1 + mu * rfft2(_grad_adj(h, v)) + fu) / (den_k + mu * den_g + beta)
            S = irfft2(FS, shape)
            mu *= kappa
        beta *= kappa
    return S


def l0_restoration(im: np.ndarray, k: np.ndarray, lam: float, kappa: float = 2.0,
                   mu_max: float = 1e5) -> np.ndarray:
    """L0-gradient deconvolution (Xu et al. 2013 / Pan's ``L0Restoration``) of a
    periodic ``(C, H, W)`` or ``(H, W)`` image; the gradient support is shared by the
    channels."""
    shape = im.shape[-2:]
    n1, den_k, den_g = _fft_terms(im, k, shape)
    S = im.copy()
    mu = 2.0 * lam
    while mu < mu_max:
        h, v = _grad_c(S)
        e = h * h + v * v
        if e.ndim == 3:
            e = e.sum(axis=0, keepdims=True)
        t = np.broadcast_to(e < lam / mu, h.shape)
        h[t] = 0.0
        v[t] = 0.0
        S = irfft2((n1 + mu * rfft2(_grad_adj(h, v))) / (den_k + mu * den_g), shape)
        mu *= kappa
    return S


# --------------------------------------------------------------------------- kernel
def estimate_psf(bx: np.ndarray, by: np.ndarray, lx: np.ndarray, ly: np.ndarray,
                 weight: float, ksize: tuple[int, int], cg_iters: int = 20,
                 tol: float = 1e-5, mask: np.ndarray | None = None, zero_below: float = 0.05,
                 fast_pad: bool = False) -> np.ndarray:
    """``argmin_k ||lx (x) k - bx||^2 + ||ly (x) k - by||^2 + weight ||k||^2`` on a
    ``ksize`` support (conjugate gradients, FFT products, circular), then entries
    below ``zero_below`` (Pan: 5 %) of the maximum zeroed and the kernel normalised. ``mask`` (bx's shape,
    0/1) restricts both data terms to its pixels (clipped highlights left out); each
    product then costs two FFT pairs instead of one. ``fast_pad``: the mask leaves out
    every pixel whose product wraps around the edges (a border band at least the
    kernel's reach), so the arrays may be zero-padded to a fast FFT size without
    changing the problem."""
    if mask is not None and fast_pad:
        # every pixel the mask keeps reads lx/ly within their extent (no wrap-around): zero padding to a
        # fast FFT size leaves the problem exactly as it was and makes each transform cheaper
        full = (fft_size(bx.shape[0]), fft_size(bx.shape[1]))
        pad = ((0, full[0] - bx.shape[0]), (0, full[1] - bx.shape[1]))
        bx, by, lx, ly, mask = (np.pad(a, pad) for a in (bx, by, lx, ly, mask))
    shape = bx.shape
    LX, LY = rfft2(lx), rfft2(ly)
    if mask is None:
        b = extract_kernel(irfft2(np.conj(LX) * rfft2(bx) + np.conj(LY) * rfft2(by), shape), ksize)
        M = np.abs(LX) ** 2 + np.abs(LY) ** 2

        def A(kk):
            return extract_kernel(irfft2(M * rfft2(embed_kernel(kk, shape)), shape), ksize) + weight * kk
    else:
        b = extract_kernel(irfft2(np.conj(LX) * rfft2(mask * bx) + np.conj(LY) * rfft2(mask * by), shape), ksize)

        def A(kk):
            Kf = rfft2(embed_kernel(kk, shape))
            rx = mask * irfft2(LX * Kf, shape)
            ry = mask * irfft2(LY * Kf, shape)
            return extract_kernel(irfft2(np.conj(LX) * rfft2(rx) + np.conj(LY) * rfft2(ry), shape), ksize) + weight * kk

    x = np.full(ksize, 1.0 / (ksize[0] * ksize[1]))
    r = b - A(x)
    p = r.copy()
    rs = float(np.sum(r * r))
    for _ in range(cg_iters):
        Ap = A(p)
        pAp = float(np.sum(p * Ap))
        if pAp <= 0:
            break
        alpha = rs / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = float(np.sum(r * r))
        if math.sqrt(rs_new) < tol:
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    mx = x.max()
    if mx <= 0:
        return np.full(ksize, 1.0 / (ksize[0] * ksize[1]))
    x[x < zero_below * mx] = 0.0
    return x / x.sum()


def _prune(k: np.ndarray, min_mass: float = 0.1) -> np.ndarray:
    """Remove 8-connected components holding less than ``min_mass`` of the kernel
    (keeping the heaviest one if all are lighter), clip negatives, normalise."""
    k = np.maximum(k, 0.0)
    tot = k.sum()
    if tot <= 0:
        return k
    k = k / tot
    lab, n = ndimage.label(k > 0, structure=np.ones((3, 3)))
    if n > 1:
        mass = ndimage.sum(k, lab, index=np.arange(1, n + 1))
        keep = mass >= min_mass
        if not keep.any():
            keep[np.argmax(mass)] = True
        k = np.where(keep[np.maximum(lab - 1, 0)] & (lab > 0), k, 0.0)
    return k / k.sum()


def centre_kernel(k: np.ndarray) -> np.ndarray:
    """Shift the kernel by the integer offset that brings its centroid to the centre."""
    kh, kw = k.shape
    s = k.sum()
    if s <= 0:
        return k
    cy = float((k.sum(axis=1) * np.arange(kh)).sum() / s)
    cx = float((k.sum(axis=0) * np.arange(kw)).sum() / s)
    dy = int(round((kh - 1) / 2.0 - cy))
    dx = int(round((kw - 1) / 2.0 - cx))
    if dy == 0 and dx == 0:
        return k
    out = np.zeros_like(k)
    ys, yd = (slice(0, kh - dy), slice(dy, kh)) if dy >= 0 else (slice(-dy, kh), slice(0, kh + dy))
    xs, xd = (slice(0, kw - dx), slice(dx, kw)) if dx >= 0 else (slice(-dx, kw), slice(0, kw + dx))
    out[yd, xd] = k[ys, xs]
    return out


def _fixsize(k: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """Crop or pad a kernel to ``(n1, n2)``, removing the lighter border row/column
    (Pan's ``fixsize``)."""
    while k.shape != (n1, n2):
        h, w = k.shape
        if h > n1:
            s = k.sum(axis=1)
            k = k[1:] if s[0] < s[-1] else k[:-1]
        elif h < n1:
            s = k.sum(axis=1)
            z = np.zeros((1, w))
            k = np.vstack([k, z]) if s[0] < s[-1] else np.vstack([z, k])
        h, w = k.shape
        if w > n2:
            s = k.sum(axis=0)
            k = k[:, 1:] if s[0] < s[-1] else k[:, :-1]
        elif w < n2:
            s = k.sum(axis=0)
            z = np.zeros((h, 1))
            k = np.hstack([k, z]) if s[0] < s[-1] else np.hstack([z, k])
    return k


def resize_kernel(k: np.ndarray, scale: float, n1: int, n2: int) -> np.ndarray:
    from skimage.transform import resize

    size = (int(math.ceil(k.shape[0] * scale)), int(math.ceil(k.shape[1] * scale)))
    k2 = resize(k, size, order=3, mode="constant", anti_aliasing=False)
    k2 = _fixsize(np.maximum(k2, 0.0), n1, n2)
    s = k2.sum()
    return k2 / s if s > 0 else k2


def downsample(y: np.ndarray, ret: float) -> np.ndarray:
    """Anti-aliased resampling by ``ret`` (< 1): Gaussian of std 1/(2 ret) (Pan's
    ``downSmpImC``), then bilinear samples at 0, 1/ret, 2/ret, ..."""
    if ret >= 1.0:
        return y
    ys = ndimage.gaussian_filter(y, sigma=1.0 / (2.0 * ret), mode="nearest")
    H, W = y.shape
    gy = np.arange(0.0, H - 1 + 1e-9, 1.0 / ret)
    gx = np.arange(0.0, W - 1 + 1e-9, 1.0 / ret)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    return ndimage.map_coordinates(ys, [yy, xx], order=1, mode="nearest")


def _init_kernel(m: int) -> np.ndarray:
    k = np.zeros((m, m))
    c = (m - 1) // 2
    k[c - 1, c - 1:c + 1] = 0.5
    return k


def _grads_valid(x: np.ndarray):
    return x[:-1, 1:] - x[:-1, :-1], x[1:, :-1] - x[:-1, :-1]


def alternate_level(B: np.ndarray, k: np.ndarray, lam_pix: float, lam_grad: float,
                    xk_iter: int, gamma: float, exclude: np.ndarray | None = None, border_band: bool = False,
                    zero_below: float = 0.05):
    """One pyramid level of the alternation on a ``(H, W)`` image in [0, 1]: ``xk_iter``
    times (latent image by the L0 solver, kernel by :func:`estimate_psf` + pruning),
    the lambdas divided by 1.1 each time. ``exclude`` (bool ``(H, W)``): clipped pixels;
    they and every pixel within the kernel's reach of them are left out of the
    kernel's data term. ``border_band``: leave out, too, the band along the window's
    edges where the kernel's circular product wraps around (the unknown border: the
    scene goes on past the window). ``zero_below``: see :func:`estimate_psf`. Returns
    ``(k, lam_pix, lam_grad, latent)``."""
    H, W = B.shape
    kh, kw = k.shape
    Bw = wrap_pad(B, (fft_size(H + kh - 1), fft_size(W + kw - 1)))
    bx, by = _grads_valid(B)
    mask = None
    if exclude is not None and exclude.any():
        # a pixel within the kernel's reach of a clipped one sees light the latent (in [0, 1]) cannot hold
        ok = ~ndimage.maximum_filter(exclude, size=(kh, kw))
        mask = (ok[:-1, 1:] & ok[:-1, :-1] & ok[1:, :-1]).astype(B.dtype)  # every pixel of both differences
    if border_band:
        band = np.zeros((H - 1, W - 1), dtype=B.dtype)
        cy, cx = (kh - 1) // 2, (kw - 1) // 2
        band[cy:H - 1 - (kh - 1 - cy), cx:W - 1 - (kw - 1 - cx)] = 1.0
        mask = band if mask is None else mask * band
    S = B
    for _ in range(xk_iter):
        if lam_pix > 0:
            S = l0_deblur_whole(Bw, k, lam_pix, lam_grad)
        else:
            S = l0_restoration(Bw, k, lam_grad)
        S = np.clip(S[:H, :W], 0.0, 1.0)
        lx, ly = _grads_valid(S)
        k = _prune(estimate_psf(bx, by, lx, ly, gamma, k.shape, mask=mask, zero_below=zero_below,
                                fast_pad=border_band))
        lam_pix = max(lam_pix / 1.1, 1e-4) if lam_pix > 0 else 0.0
        lam_grad = max(lam_grad / 1.1, 1e-4) if lam_grad > 0 else 0.0
    return k, lam_pix, lam_grad, S


def estimate_kernel_l0(gray: np.ndarray, kernel_size: int, lambda_pixel: float = 4e-3,
                       lambda_grad: float = 4e-3, xk_iter: int = 5, gamma: float = 2.0,
                       k_thresh: float = 20.0, exclude: np.ndarray | None = None,
                       border_band: bool = False, zero_below: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Coarse-to-fine kernel estimation on a ``(H, W)`` image in [0, 1].
    Returns ``(kernel, latent)``; the kernel has odd size ``kernel_size`` (or
    ``kernel_size + 1`` when even) in the project's correlation convention.
    ``exclude`` (bool ``(H, W)``): pixels left out of the kernel's data term;
    ``border_band``, ``zero_below``: see :func:`alternate_level`."""
    ks_full = kernel_size + (1 - kernel_size % 2)
    ret = math.sqrt(0.5)
    maxitr = max(int(math.floor(math.log(5.0 / ks_full) / math.log(ret))), 0)
    retv = [ret ** i for i in range(maxitr + 1)]
    klist = [int(math.ceil(ks_full * r)) for r in retv]
    klist = [n + (1 - n % 2) for n in klist]
    klist[0] = ks_full
    lam_pix, lam_grad = lambda_pixel, lambda_grad
    k = None
    S = gray
    for s in range(maxitr, -1, -1):
        if s == maxitr:
            k = _init_kernel(klist[s])
        else:
            k = resize_kernel(k, 1.0 / ret, klist[s], klist[s])
        ys = downsample(gray, retv[s])
        ex = None if exclude is None else downsample(exclude.astype(np.float64), retv[s]) > 0.01
        k, lam_pix, lam_grad, S = alternate_level(ys, k, lam_pix, lam_grad, xk_iter, gamma, ex, border_band,
                                                  zero_below)
        k = centre_kernel(k)
        k = np.maximum(k, 0.0)
        k = k / k.sum()
    if k_thresh > 0:
        k = np.where(k < k.max() / k_thresh, 0.0, k)
    return k / k.sum(), S


# --------------------------------------------------------------------------- final step
def _bilateral(img: np.ndarray, sigma_s: float = 3.0, sigma_r: float = 0.1) -> np.ndarray:
    """Plain bilateral filter of ``(C, H, W)`` (range distance over channels),
    window radius ``ceil(2 sigma_s)``, reflecting borders."""
    r = int(math.ceil(2.0 * sigma_s))
    H, W = img.shape[-2:]
    p = np.pad(img, ((0, 0), (r, r), (r, r)), mode="reflect")
    num = np.zeros_like(img)
    den = np.zeros(img.shape[-2:])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            ws = math.exp(-(dy * dy + dx * dx) / (2.0 * sigma_s ** 2))
            sh = p[:, r + dy:r + dy + H, r + dx:r + dx + W]
            d2 = np.sum((sh - img) ** 2, axis=0)
            w = ws * np.exp(-d2 / (2.0 * sigma_r ** 2))
            num += w * sh
            den += w
    return num / den


def _final_restore(y01: np.ndarray, k: np.ndarray, final: str, lambda_tv, lambda_l0: float,
                   weight_ring: float, tv_iters: int) -> np.ndarray:
    """Non-blind restoration of ``(C, H, W)`` in [0, 1]; returns [0, 1]."""
    y = 2.0 * y01 - 1.0  # TV solver works in the library's [-1, 1] units
    if lambda_tv is None:
        lam = tv_weight(y)
    else:
        lam = 2.0 * float(lambda_tv)  # [0, 1] weight -> [-1, 1] units
    x_tv = (tv_deconvolve_channels(y, k, lam, tv_iters, 50.0 * lam, 10.0 * lam) + 1.0) / 2.0
    if final == "tv" or weight_ring == 0:
        return x_tv
    C, H, W = y01.shape
    kh, kw = k.shape
    yw = wrap_pad(y01, (fft_size(H + kh - 1), fft_size(W + kw - 1)))
    x_l0 = l0_restoration(yw, k, lambda_l0)[:, :H, :W]
    return x_tv - weight_ring * _bilateral(x_tv - x_l0, 3.0, 0.1)


# --------------------------------------------------------------------------- public API
def l0_blind_deblur(y, kernel_size: int, lambda_pixel: float = 4e-3, lambda_grad: float = 4e-3,
                    xk_iter: int = 5, gamma: float = 2.0, k_thresh: float = 20.0,
                    final: str = "ring", lambda_tv: float | None = None,
                    lambda_l0: float = 5e-4, weight_ring: float = 1.0, tv_iters: int = 150):
    """Blind deblurring (Pan et al. 2014/2017). ``y``: ``(H,W)``, ``(C,H,W)`` or
    ``(B,C,H,W)``, torch or numpy, in [-1, 1].

    kernel_size:  support of the kernel to estimate (odd sizes are native; an even
                  size is estimated at ``kernel_size + 1`` and its first row and
                  column dropped, which keeps PyTorch's even-kernel placement).
    lambda_pixel, lambda_grad: L0 weights on intensity and gradients, for [0, 1]
                  images (Pan's defaults 4e-3; ``lambda_pixel=0`` gives the
                  gradient-only L0 prior of Xu et al.).
    xk_iter, gamma, k_thresh: alternations per level, kernel L2 weight, final kernel
                  threshold (entries below max/k_thresh zeroed).
    final:        ``'ring'`` (Pan's ringing removal: TV minus bilateral-filtered
                  TV-minus-L0), ``'tv'`` (TV only) or ``'none'`` (return the kernel
                  and the observation unchanged).
    lambda_tv:    TV weight for [0, 1] images; ``None`` picks it from the estimated
                  noise level (0.3 sigma in [-1, 1] units).
    lambda_l0, weight_ring: L0-gradient weight and ringing-removal weight.

    Returns ``(x_est, k_est)``: the image with the input's type and shape (in
    [-1, 1]); the kernel ``(k, k)`` for a single image or ``(B, 1, k, k)`` for a
    batch, non-negative, summing to 1, in the project's correlation convention.
    """
    if final not in ("ring", "tv", "none"):
        raise ValueError("final must be 'ring', 'tv' or 'none'")
    if kernel_size < 3:
        raise ValueError("kernel_size must be at least 3")
    is_torch = hasattr(y, "detach")
    nd = y.ndim
    yb, back = to_batch(y)
    xs, ks = [], []
    for b in range(yb.shape[0]):
        y01 = np.clip((yb[b] + 1.0) / 2.0, 0.0, 1.0)
        gray = rgb_to_luma(y01)
        k, _ = estimate_kernel_l0(gray, kernel_size, lambda_pixel, lambda_grad, xk_iter, gamma, k_thresh)
        if final == "none":
            x01 = y01
        else:
            x01 = _final_restore(y01, k, final, lambda_tv, lambda_l0, weight_ring, tv_iters)
        if kernel_size % 2 == 0:
            k = k[1:, 1:]
            k = k / k.sum()
        xs.append(np.clip(2.0 * x01 - 1.0, -1.0, 1.0))
        ks.append(k)
    x_out = back(np.stack(xs))
    k_arr = np.stack(ks)[:, None] if nd == 4 else ks[0]
    if is_torch:
        import torch

        k_arr = torch.from_numpy(np.ascontiguousarray(k_arr)).to(device=y.device, dtype=y.dtype)
    return x_out, k_arr
