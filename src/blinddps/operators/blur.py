"""Blur by FFT, exactly as the original's per-channel ``conv2d`` defines it.

The original blurs each channel with ``conv2d(x_c, k, padding='same')``: zero padding,
cross-correlation (no kernel flip), and PyTorch's placement of an even kernel (it pads
``(k-1)//2`` before and ``k//2`` after). Per output pixel::

    same:  y[i, j] = Σ_ab x[i + a - (kh-1)//2, j + b - (kw-1)//2] · k[a, b]   (x = 0 outside)
    valid: y[i, j] = Σ_ab x[i + a, j + b] · k[a, b],   y smaller than x by k - 1

Here both are linear convolutions (of x with the flipped kernel) computed by ``rfft2``
on a grid just large enough that the cropped window is free of wrap-around, rounded up
to a size with small prime factors; so the FFT result equals ``conv2d`` to rounding.

Batching: ``x`` is (B, C, H, W); ``k`` is (B, 1, kh, kw) (one kernel per sample, shared
by its channels), (B, C, kh, kw) (one per channel) or (1, 1, kh, kw) (broadcast).
Kernels and images may be non-square, kernels odd or even.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..transforms import KernelSimplex
from .base import Operator, Unknown

__all__ = [
    "conv_same",
    "conv_same_adjoint",
    "conv_valid",
    "conv_valid_adjoint",
    "conv_same_direct",
    "conv_valid_direct",
    "kernel_least_squares",
    "kernel_least_squares_cached",
    "image_proximal",
    "gradient_pair",
    "recentre_kernel",
    "gaussian_kernel",
    "BlindBlur",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@lru_cache(maxsize=512)
def next_fast_len(n: int) -> int:
    """The smallest m ≥ n whose prime factors are all 2, 3 or 5."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _check_pair(x: torch.Tensor, k: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what}: image must be (B, C, H, W), got shape {tuple(x.shape)}")
    if k.dim() != 4:
        raise ValueError(f"{what}: kernel must be (B, 1|C, kh, kw), got shape {tuple(k.shape)}")
    bx, c = x.shape[:2]
    bk, ck = k.shape[:2]
    if bk not in (1, bx) and bx != 1:
        raise ValueError(f"{what}: kernel batch {bk} does not match image batch {bx}")
    if ck not in (1, c):
        raise ValueError(f"{what}: kernel has {ck} channels, image has {c} (use 1 or {c})")


def _check_fits(x: torch.Tensor, k: torch.Tensor, what: str) -> None:
    if k.shape[-2] > x.shape[-2] or k.shape[-1] > x.shape[-1]:
        raise ValueError(
            f"{what}: kernel {tuple(k.shape[-2:])} is larger than the image {tuple(x.shape[-2:])}"
        )


def _fft_conv(x: torch.Tensor, w: torch.Tensor, start: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Window ``c[start : start + size]`` of the full linear convolution
    ``c[n] = Σ_b x[n - b] w[b]`` (per spatial axis), batched and broadcast."""
    dtype = torch.promote_types(x.dtype, w.dtype)
    work = torch.float32 if dtype in _LOW_PRECISION else dtype
    x, w = x.to(work), w.to(work)
    (H, W), (kh, kw) = x.shape[-2:], w.shape[-2:]
    (sh, sw), (oh, ow) = start, size
    # no wrap-around into the window: n_max < N and c's support ends before start + N
    nh = next_fast_len(max(sh + oh, H + kh - 1 - sh))
    nw = next_fast_len(max(sw + ow, W + kw - 1 - sw))
    X = torch.fft.rfft2(x, s=(nh, nw))
    K = torch.fft.rfft2(w, s=(nh, nw))
    c = torch.fft.irfft2(X * K, s=(nh, nw))
    out = c[..., sh : sh + oh, sw : sw + ow]
    return out.to(dtype) if dtype != work else out


def conv_same(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-channel ``conv2d(x_c, k, padding='same')`` by FFT: zero padding,
    cross-correlation, PyTorch's placement of even kernels. Output (B, C, H, W)."""
    _check_pair(x, k, "conv_same")
    _check_fits(x, k, "conv_same")
    (H, W), (kh, kw) = x.shape[-2:], k.shape[-2:]
    pt, pl = (kh - 1) // 2, (kw - 1) // 2
    return _fft_conv(x, k.flip(-2, -1), (kh - 1 - pt, kw - 1 - pl), (H, W))


def conv_same_adjoint(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The exact adjoint of :func:`conv_same` with respect to the image (a per-channel
    convolution with the unflipped kernel, same batching rules)."""
    _check_pair(y, k, "conv_same_adjoint")
    _check_fits(y, k, "conv_same_adjoint")
    (H, W), (kh, kw) = y.shape[-2:], k.shape[-2:]
    return _fft_conv(y, k, ((kh - 1) // 2, (kw - 1) // 2), (H, W))


def conv_valid(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-channel ``conv2d(x_c, k)`` without padding by FFT: the output
    (B, C, H - kh + 1, W - kw + 1) sees only pixels of ``x`` — the model of a photo
    whose scene continues past its frame."""
    _check_pair(x, k, "conv_valid")
    _check_fits(x, k, "conv_valid")
    (H, W), (kh, kw) = x.shape[-2:], k.shape[-2:]
    return _fft_conv(x, k.flip(-2, -1), (kh - 1, kw - 1), (H - kh + 1, W - kw + 1))


def conv_valid_adjoint(y: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The exact adjoint of :func:`conv_valid` (the full transposed correlation):
    (B, C, h, w) → (B, C, h + kh - 1, w + kw - 1)."""
    _check_pair(y, k, "conv_valid_adjoint")
    (h, w), (kh, kw) = y.shape[-2:], k.shape[-2:]
    return _fft_conv(y, k, (0, 0), (h + kh - 1, w + kw - 1))


def _grouped(x: torch.Tensor, k: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Per-sample, per-channel cross-correlation by one grouped spatial ``conv2d`` (batch
    folded into the groups), after zero padding ``pad`` = (left, right, top, bottom)."""
    B = max(x.shape[0], k.shape[0])
    C = x.shape[1]
    kh, kw = k.shape[-2:]
    xs = x.expand(B, -1, -1, -1)
    if any(pad):
        # explicit padding then an unpadded conv2d: the same sums as padding='same', but
        # on PyTorch's fast (oneDNN) path; conv2d's own padding falls back to a slow one
        xs = F.pad(xs, pad)
    xs = xs.reshape(1, B * C, *xs.shape[-2:])
    ws = k.expand(B, C, kh, kw).reshape(B * C, 1, kh, kw)
    out = F.conv2d(xs, ws.to(xs.dtype), groups=B * C)
    return out.reshape(B, C, *out.shape[-2:])


def conv_same_direct(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`conv_same`: a grouped spatial ``conv2d`` equal to
    ``conv2d(padding='same')`` (PyTorch's placement of even kernels: (k-1)//2 zeros
    before, k//2 after), batch folded into the groups so each sample has its own kernel."""
    _check_pair(x, k, "conv_same_direct")
    kh, kw = k.shape[-2:]
    return _grouped(x, k, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))


def conv_valid_direct(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Reference for :func:`conv_valid`: a grouped spatial ``conv2d`` without padding."""
    _check_pair(x, k, "conv_valid_direct")
    _check_fits(x, k, "conv_valid_direct")
    return _grouped(x, k, (0, 0, 0, 0))


def gaussian_kernel(size: int | tuple[int, int], std: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """A centred isotropic Gaussian (1, 1, kh, kw) summing to 1 (centre at the pixel
    ``conv_same`` treats as the origin for even sizes: (k-1)/2 between two pixels)."""
    kh, kw = (size, size) if isinstance(size, int) else size
    r = torch.arange(kh, dtype=dtype, device=device) - (kh - 1) / 2
    c = torch.arange(kw, dtype=dtype, device=device) - (kw - 1) / 2
    g = torch.exp(-(r[:, None] ** 2 + c[None, :] ** 2) / (2.0 * float(std) ** 2))
    return (g / g.sum()).view(1, 1, kh, kw)


def _per_sample(value, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1).view(-1, 1, 1, 1)


def _conjugate_gradients(normal, rhs, init, iters: int, precondition=None) -> torch.Tensor:
    """``iters`` steps of (preconditioned) conjugate gradients on ``normal(u) = rhs``
    from ``init``, batched with per-sample step sizes."""
    u = init
    r = rhs - normal(u)
    z = precondition(r) if precondition is not None else r
    p, rz = z, _dot(r, z)
    for _ in range(iters):
        Ap = normal(p)
        alpha = rz / _dot(p, Ap).clamp_min(1e-30)
        u = u + alpha * p
        r = r - alpha * Ap
        z = precondition(r) if precondition is not None else r
        rz_new = _dot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    return u


def kernel_least_squares(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel_size: tuple[int, int],
    mode: str = "same",
    reg: float = 1e-3,
    iters: int = 30,
) -> torch.Tensor:
    """The kernel (B, 1, kh, kw) minimising ‖y − blur(x, k)‖² + λ‖k‖² (λ = ``reg``·‖x‖²
    per sample) by conjugate gradients, then clamped ≥ 0 and normalised to sum 1: a
    data-driven kernel estimate given an image estimate (for EM-style updates)."""
    blur = conv_same if mode == "same" else conv_valid
    B = max(x.shape[0], y.shape[0])
    x = x.detach().expand(B, -1, -1, -1)
    y = y.detach().expand(B, -1, -1, -1)
    kh, kw = kernel_size
    lam = reg * x.flatten(1).pow(2).sum(1).clamp_min(1e-12).view(B, 1, 1, 1)

    def normal(k: torch.Tensor, rhs: torch.Tensor | None = None) -> torch.Tensor:
        # (AᵀA + λ) k, or Aᵀ rhs: A is linear in k, so the vjp is its exact adjoint
        with torch.enable_grad():
            kk = k.detach().requires_grad_(True)
            out = blur(x, kk)
            (g,) = torch.autograd.grad(out, kk, grad_outputs=out if rhs is None else rhs)
        return g + lam * k if rhs is None else g

    k = torch.zeros(B, 1, kh, kw, dtype=x.dtype, device=x.device)
    k = _conjugate_gradients(normal, normal(k, y), k, iters).clamp_min(0)
    return k / k.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def _blur_window(mode: str, image_hw: tuple[int, int], kernel_hw: tuple[int, int]):
    """(start, size) of the blur's window in the full linear convolution of the image
    with the flipped kernel (what :func:`conv_same` / :func:`conv_valid` crop)."""
    (H, W), (kh, kw) = image_hw, kernel_hw
    if mode == "same":
        return (kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2), (H, W)
    return (kh - 1, kw - 1), (H - kh + 1, W - kw + 1)


def kernel_least_squares_cached(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel_size: tuple[int, int],
    mode: str = "same",
    reg: float = 1e-3,
    iters: int = 30,
    init: torch.Tensor | None = None,
    rho: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """:func:`kernel_least_squares` with the image's FFT computed once, a warm start and
    an optional pull towards the start: the kernel minimising
    ½‖y − blur(x, k)‖² + ½λ‖k‖² + ½ρ‖k − init‖² (λ = ``reg``·‖x‖², ρ per sample) by
    ``iters`` conjugate-gradient steps from ``init`` (zeros if None), then clamped ≥ 0
    and normalised to sum 1. With ``init=None`` and ρ = 0 it takes the same steps as
    :func:`kernel_least_squares` (equal to rounding) at about half the work per step."""
    B = max(x.shape[0], y.shape[0])
    x = x.detach().expand(B, -1, -1, -1)
    y = y.detach().expand(B, -1, -1, -1)
    kh, kw = kernel_size
    (H, W) = x.shape[-2:]
    (sh, sw), (oh, ow) = _blur_window(mode, (H, W), (kh, kw))
    if tuple(y.shape[-2:]) != (oh, ow):
        raise ValueError(f"kernel_least_squares_cached: measurement {tuple(y.shape[-2:])} does not match "
                         f"a {mode!r} blur of a {H}x{W} image by a {kh}x{kw} kernel")
    nh = next_fast_len(max(sh + oh, H + kh - 1 - sh))
    nw = next_fast_len(max(sw + ow, W + kw - 1 - sw))
    X = torch.fft.rfft2(x, s=(nh, nw))
    Xc = X.conj()
    pad = (sw, nw - sw - ow, sh, nh - sh - oh)
    lam = reg * x.flatten(1).pow(2).sum(1).clamp_min(1e-12).view(B, 1, 1, 1)
    rho = _per_sample(rho, x)

    def adjoint(r: torch.Tensor) -> torch.Tensor:  # Aᵀr: the correlation of r with x, on k's support
        R = torch.fft.rfft2(F.pad(r, pad))
        g = torch.fft.irfft2((R * Xc).sum(1, keepdim=True), s=(nh, nw))[..., :kh, :kw]
        return g.flip(-2, -1)

    def forward(k: torch.Tensor) -> torch.Tensor:
        c = torch.fft.irfft2(X * torch.fft.rfft2(k.flip(-2, -1), s=(nh, nw)), s=(nh, nw))
        return c[..., sh : sh + oh, sw : sw + ow]

    start = torch.zeros(B, 1, kh, kw, dtype=x.dtype, device=x.device) if init is None else \
        init.detach().to(x).expand(B, 1, kh, kw)
    rhs = adjoint(y) + rho * start
    k = _conjugate_gradients(lambda k: adjoint(forward(k)) + (lam + rho) * k, rhs, start, iters)
    k = k.clamp_min(0)
    return k / k.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def gradient_pair(x: torch.Tensor, y: torch.Tensor, mode: str, kernel_size: tuple[int, int]):
    """Horizontal and vertical forward differences of image and measurement, stacked on
    the channel axis, such that ``dy = conv_valid(dx, k)`` exactly whenever
    ``y = blur(x, k)`` in ``mode``: a 'same' blur is a 'valid' blur of the image
    zero-padded by ((k−1)//2, k//2), and differences commute with a valid blur. Kernels
    fitted to edges rather than intensities are far better conditioned (the classical
    blind-deconvolution choice)."""
    if mode == "same":
        kh, kw = kernel_size
        x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))

    def diffs(u: torch.Tensor) -> torch.Tensor:
        core = u[..., :-1, :-1]
        return torch.cat([u[..., :-1, 1:] - core, u[..., 1:, :-1] - core], dim=1)

    return diffs(x), diffs(y)


def recentre_kernel(k: torch.Tensor) -> torch.Tensor:
    """Each kernel (B, 1, kh, kw) shifted by whole pixels so that its centre of mass sits
    at the support's centre ((k−1)/2, the origin of :func:`conv_same`), mass shifted out
    of the support dropped and the rest renormalised to sum 1."""
    B, _, kh, kw = k.shape
    mass = k.flatten(1).sum(1).clamp_min(1e-30)
    rows = torch.arange(kh, dtype=k.dtype, device=k.device)
    cols = torch.arange(kw, dtype=k.dtype, device=k.device)
    cy = (k.sum(-1).flatten(1) * rows).sum(1) / mass
    cx = (k.sum(-2).flatten(1) * cols).sum(1) / mass
    dy = torch.round((kh - 1) / 2 - cy).long().tolist()
    dx = torch.round((kw - 1) / 2 - cx).long().tolist()
    out = []
    for b in range(B):
        sy, sx = dy[b], dx[b]
        padded = F.pad(k[b : b + 1], (max(sx, 0), max(-sx, 0), max(sy, 0), max(-sy, 0)))
        top, left = max(-sy, 0), max(-sx, 0)
        out.append(padded[..., top : top + kh, left : left + kw])
    shifted = torch.cat(out)
    return shifted / shifted.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)


def image_proximal(
    x0: torch.Tensor,
    y: torch.Tensor,
    kernel: torch.Tensor,
    rho: float | torch.Tensor,
    mode: str = "same",
    iters: int = 8,
    precondition: bool = True,
) -> torch.Tensor:
    """The image minimising ½‖y − blur(x, k)‖² + ½ρ‖x − x0‖² (ρ > 0 per sample): the
    data-consistency step of a proximal (half-quadratic, DiffPIR-style) sampler.

    Neither the zero-padded 'same' nor the 'valid' blur is diagonal in the Fourier
    basis, so the normal equations (AᵀA + ρ)x = Aᵀy + ρx0 are solved by ``iters``
    conjugate-gradient steps with the exact blur and adjoint, from x0, preconditioned
    by their circulant approximation (|K̂|² + ρ)⁻¹ on the image grid (the exact
    solution were the blur circular): a few steps reach the exact minimiser."""
    blur = conv_same if mode == "same" else conv_valid
    adjoint = conv_same_adjoint if mode == "same" else conv_valid_adjoint
    x0, y, kernel = x0.detach(), y.detach(), kernel.detach().to(x0)
    rho = _per_sample(rho, x0)
    if not bool((rho > 0).all()):
        raise ValueError("image_proximal: rho must be positive")
    H, W = x0.shape[-2:]
    precond = None
    if precondition:
        denom = torch.fft.rfft2(kernel, s=(H, W)).abs().pow(2) + rho

        def precond(r: torch.Tensor) -> torch.Tensor:
            return torch.fft.irfft2(torch.fft.rfft2(r) / denom, s=(H, W))

    rhs = adjoint(y, kernel) + rho * x0
    return _conjugate_gradients(lambda u: adjoint(blur(u, kernel), kernel) + rho * u, rhs, x0, iters, precond)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    kh, kw = (size, size) if isinstance(size, int) else tuple(size)
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel size must be positive, got {(kh, kw)}")
    return int(kh), int(kw)


class _KernelBlur(Operator):
    """What blur-type operators share: the ``kernel`` unknown, 'same'/'valid' modes and
    their shapes. ``kernel_size`` is an int (square) or (kh, kw); ``channels``, if given,
    is the number of image channels the operator accepts (None: any)."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        mode: str = "same",
        channels: int | None = None,
        backend: str = "fft",
        estimate_domain: str = "intensity",
    ) -> None:
        super().__init__()
        if mode not in ("same", "valid"):
            raise ValueError(f"mode must be 'same' or 'valid', got {mode!r}")
        if backend not in ("fft", "direct"):
            raise ValueError(f"backend must be 'fft' or 'direct', got {backend!r}")
        if estimate_domain not in ("intensity", "gradient"):
            raise ValueError(f"estimate_domain must be 'intensity' or 'gradient', got {estimate_domain!r}")
        self.backend = backend
        self.estimate_domain = estimate_domain
        self.kernel_size = _pair(kernel_size)
        self.mode = mode
        self.channels = None if channels is None else int(channels)
        self.declare(Unknown("kernel", (1, *self.kernel_size), KernelSimplex(), "blur kernel, sums to 1"))

    @property
    def extendable_image(self) -> bool:  # type: ignore[override]
        """'valid': the image may extend past what the measurement sees."""
        return self.mode == "valid"

    # shapes ---------------------------------------------------------------
    def image_shape(self, measurement_shape):
        c, h, w = (int(s) for s in measurement_shape)
        self._check_channels(c)
        if self.mode == "valid":
            kh, kw = self.kernel_size
            return (c, h + kh - 1, w + kw - 1)
        return (c, h, w)

    def measurement_shape(self, image_shape):
        """Per-sample measurement shape for an image of per-sample ``image_shape``."""
        c, h, w = (int(s) for s in image_shape)
        if self.mode == "valid":
            kh, kw = self.kernel_size
            return (c, h - kh + 1, w - kw + 1)
        return (c, h, w)

    def image_offset(self):
        if self.mode == "valid":
            kh, kw = self.kernel_size
            return ((kh - 1) // 2, (kw - 1) // 2)
        return (0, 0)

    def _check_channels(self, c: int) -> None:
        if self.channels is not None and c != self.channels:
            raise ValueError(f"{type(self).__name__} expects {self.channels} image channels, got {c}")

    # the model --------------------------------------------------------------
    def _blur(self, x, kernel):
        if self.backend == "direct":  # the original's spatial conv2d (reference mode)
            return conv_same_direct(x, kernel) if self.mode == "same" else conv_valid_direct(x, kernel)
        return conv_same(x, kernel) if self.mode == "same" else conv_valid(x, kernel)

    def _blur_adjoint(self, y, kernel):
        return conv_same_adjoint(y, kernel) if self.mode == "same" else conv_valid_adjoint(y, kernel)

    # optional hooks ---------------------------------------------------------
    def initial_value(self, name: str):
        """Kernel: a centred Gaussian blob (std = size/16, at least 0.5 px)."""
        if name == "kernel":
            kh, kw = self.kernel_size
            return gaussian_kernel((kh, kw), max(min(kh, kw) / 16.0, 0.5))
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kernel_size={self.kernel_size}, mode={self.mode!r})"


class BlindBlur(_KernelBlur):
    """Blind deblurring: ``y = k ⋆ x`` per channel, one unknown kernel per sample.

    ``kernel_size`` is an int (square) or (kh, kw). ``mode='same'`` is the original's
    model (zero padding, image and measurement the same size); ``mode='valid'`` is the
    model of a real photo whose scene continues past the frame: the unknown image is
    larger than the measurement by k − 1 (``image_shape``), no zeros enter, and
    ``image_offset()`` says where the measurement's frame sits in it. ``channels``, if
    given, is the number of image channels the operator accepts (None: any).

    Unknown ``kernel``: shape (1, kh, kw), transform :class:`KernelSimplex`.
    """

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        self._check_channels(x.shape[1])
        self.check_params({"kernel": kernel}, batch=x.shape[0] if x.shape[0] > 1 else None)
        return self._blur(x, kernel)

    def adjoint(self, y: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        self.check_params({"kernel": kernel})
        return self._blur_adjoint(y, kernel)

    def estimate(self, name: str, x: torch.Tensor, y: torch.Tensor, params: dict) -> torch.Tensor:
        """Least-squares kernel given the image ``x`` (see :func:`kernel_least_squares`),
        fitted to intensities or, with ``estimate_domain='gradient'``, to the images'
        horizontal and vertical differences (:func:`gradient_pair`: edges, not flat
        areas and low frequencies, pin the kernel down)."""
        if name != "kernel":
            raise ValueError(f"{type(self).__name__} offers no data estimate for {name!r}")
        if self.estimate_domain == "gradient":
            xg, yg = gradient_pair(x, y, self.mode, self.kernel_size)
            return kernel_least_squares(xg, yg, self.kernel_size, "valid")
        return kernel_least_squares(x, y, self.kernel_size, self.mode)

    def proximal(self, name: str, value: torch.Tensor, y: torch.Tensor, params: dict,
                 rho: float | torch.Tensor, iters: int = 8) -> torch.Tensor:
        """A data-consistency step for the proximal sampler, in physical units.

        ``image``: the minimiser of ½‖y − k⋆x‖² + ½ρ‖x − value‖² with the kernel in
        ``params`` (:func:`image_proximal`). ``kernel``: ``iters`` conjugate-gradient
        steps on the least-squares kernel for the image ``params['image']``, fitted to
        the image's and the measurement's differences (:func:`gradient_pair`),
        warm-started at ``value`` and pulled towards it by ρ, then projected onto the
        support's non-negative kernels summing to 1 (:func:`kernel_least_squares_cached`)."""
        if name == "image":
            return image_proximal(value, y, params["kernel"], rho, self.mode, iters)
        if name == "kernel":  # fitted to the edges (gradient_pair): on intensities it was far worse
            xg, yg = gradient_pair(params["image"], y, self.mode, self.kernel_size)
            k = kernel_least_squares_cached(xg, yg, self.kernel_size, "valid", iters=iters, init=value, rho=rho)
            # a shifted kernel and a shifted image explain y alike ('valid': exactly): keep the kernel centred
            return recentre_kernel(k)
        raise ValueError(f"{type(self).__name__} has no proximal step for {name!r}")
