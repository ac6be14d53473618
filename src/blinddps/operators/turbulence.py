"""Imaging through atmospheric turbulence: a tilt (warp) field, then a blur.

``y = k ⋆ T_φ(x)`` with the original's warp: ``T_φ(x)(i, j)`` is the bilinear sample of
``x`` at row ``i + φ₁(i, j)``, column ``j + φ₀(i, j)`` (channel 0 of φ is the horizontal,
width shift), through ``grid_sample(align_corners=True, padding_mode='zeros')``. Unlike
the original, nothing is modified in place, any batch size works (one tilt map and one
kernel per sample) and the warp is differentiable with respect to both ``x`` and ``φ``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..transforms import Scale
from .base import Unknown
from .blur import _KernelBlur, kernel_least_squares

__all__ = ["tilt_warp", "tilt_warp_adjoint", "Turbulence"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _sampling_grid(tilt: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``grid_sample`` grid (B, H, W, 2) for the pixel grid shifted by ``tilt``."""
    H, W = tilt.shape[-2:]
    rows = torch.arange(H, dtype=dtype, device=tilt.device).view(1, H, 1)
    cols = torch.arange(W, dtype=dtype, device=tilt.device).view(1, 1, W)
    tilt = tilt.to(dtype)
    gx = 2.0 * (cols + tilt[:, 0]) / max(W - 1, 1) - 1.0
    gy = 2.0 * (rows + tilt[:, 1]) / max(H - 1, 1) - 1.0
    return torch.stack((gx, gy), dim=-1)


def _check(x: torch.Tensor, tilt: torch.Tensor, what: str) -> int:
    if x.dim() != 4:
        raise ValueError(f"{what}: image must be (B, C, H, W), got shape {tuple(x.shape)}")
    if tilt.dim() != 4 or tilt.shape[1] != 2 or tilt.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{what}: tilt must be (B, 2, {x.shape[-2]}, {x.shape[-1]}) for this image, got {tuple(tilt.shape)}"
        )
    bx, bt = x.shape[0], tilt.shape[0]
    if bx != bt and 1 not in (bx, bt):
        raise ValueError(f"{what}: tilt batch {bt} does not match image batch {bx}")
    return max(bx, bt)


def tilt_warp(x: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
    """Warp ``x`` (B, C, H, W) by the pixel displacements ``tilt`` (B, 2, H, W):
    ``out(i, j) = x(i + tilt[:, 1], j + tilt[:, 0])``, bilinear, zeros outside,
    ``align_corners=True``. A batch of 1 on either side broadcasts. Inputs are never
    modified."""
    B = _check(x, tilt, "tilt_warp")
    dtype = torch.promote_types(x.dtype, tilt.dtype)
    work = torch.float32 if dtype in _LOW_PRECISION else dtype
    grid = _sampling_grid(tilt, work)
    xs = x.to(work)
    if xs.shape[0] != B:
        xs = xs.expand(B, -1, -1, -1)
    if grid.shape[0] != B:
        grid = grid.expand(B, -1, -1, -1)
    out = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(dtype) if dtype != work else out


def tilt_warp_adjoint(y: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
    """The exact adjoint of :func:`tilt_warp` with respect to the image (the warp is
    linear in ``x``; computed as its vector-Jacobian product)."""
    _check(y, tilt, "tilt_warp_adjoint")
    create_graph = torch.is_grad_enabled() and (y.requires_grad or tilt.requires_grad)
    with torch.enable_grad():
        z = torch.zeros(tilt.shape[0], *y.shape[1:], dtype=y.dtype, device=y.device, requires_grad=True)
        out = tilt_warp(z, tilt)
        (g,) = torch.autograd.grad(out, z, grad_outputs=y.expand_as(out), create_graph=create_graph)
    return g


class Turbulence(_KernelBlur):
    """Imaging through turbulence: ``y = k ⋆ T_φ(x)``, unknowns a kernel and a tilt map.

    Unknowns: ``kernel`` (1, kh, kw) with ``KernelSimplex``; ``tilt`` (2, H, W) —
    declared ``(2, -1, -1)``, i.e. the image's size — with ``Scale(tilt_scale)``, so
    diffusion-space ±1 is ±``tilt_scale`` pixels (the original uses 1, which caps its
    estimate at ±1 px although simulated tilts reach ±2.5 px). ``mode='valid'`` warps
    the (larger) image, then blurs without padding.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        tilt_scale: float = 2.5,
        mode: str = "same",
        channels: int | None = None,
        backend: str = "fft",
    ) -> None:
        super().__init__(kernel_size, mode=mode, channels=channels, backend=backend)
        self.tilt_scale = float(tilt_scale)
        self.declare(
            Unknown("tilt", (2, -1, -1), Scale(self.tilt_scale), "pixel displacements: channel 0 width, 1 height")
        )

    def forward(self, x: torch.Tensor, kernel: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
        self._check_channels(x.shape[1])
        self.check_params(
            {"kernel": kernel, "tilt": tilt},
            image_shape=tuple(x.shape[1:]),
            batch=x.shape[0] if x.shape[0] > 1 else None,
        )
        return self._blur(tilt_warp(x, tilt), kernel)

    def adjoint(self, y: torch.Tensor, kernel: torch.Tensor, tilt: torch.Tensor) -> torch.Tensor:
        self.check_params({"kernel": kernel, "tilt": tilt})
        return tilt_warp_adjoint(self._blur_adjoint(y, kernel), tilt)

    def initial_value(self, name: str):
        """Kernel: a Gaussian blob; tilt: zero (no displacement)."""
        if name == "tilt":
            return torch.zeros(1, 2, 1, 1)
        return super().initial_value(name)

    def estimate(self, name: str, x: torch.Tensor, y: torch.Tensor, params: dict) -> torch.Tensor:
        """Least-squares kernel given the image and the current tilt estimate."""
        if name != "kernel":
            raise ValueError(f"{type(self).__name__} offers no data estimate for {name!r}")
        tilt = params.get("tilt")
        z = tilt_warp(x, tilt) if tilt is not None else x
        return kernel_least_squares(z, y, self.kernel_size, self.mode)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, tilt_scale={self.tilt_scale}, "
            f"mode={self.mode!r})"
        )

