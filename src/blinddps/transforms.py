"""Transforms between a prior's diffusion space (values about [-1, 1]) and the
physical parameter an operator takes.

A transform is deliberately tiny: ``to_physical`` is applied to the (clipped) Tweedie
estimate before it enters the forward model, ``from_physical`` maps physical training
data or an initial guess into diffusion space. ``to_physical(from_physical(p)) == p``
for every valid physical ``p``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Transform(ABC):
    """Maps a diffusion-space tensor ``(B, ...)`` to a physical parameter and back."""

    name: str = "transform"

    @abstractmethod
    def to_physical(self, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def from_physical(self, p: torch.Tensor) -> torch.Tensor: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Transform):
    """Images: diffusion space is the physical space."""

    name = "identity"

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_physical(self, p: torch.Tensor) -> torch.Tensor:
        return p


def _per_sample_sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(dim=1).view(-1, *([1] * (x.dim() - 1)))


class KernelSimplex(Transform):
    """Blur kernels: ``k = (x + 1) / 2`` clamped non-negative, normalised to sum 1
    **per sample** (the original normalises over the whole batch tensor).

    ``from_physical`` scales each kernel so its maximum is 1 and maps [0, 1] to [-1, 1]:
    the convention our kernel priors are trained in.

    ``floor`` > 0 soft-thresholds each kernel at that fraction of its peak before
    normalising: a prior whose background sits slightly above -1 (a faint haze over
    the whole support, which adds up to a large share of the mass) then gives clean
    kernels. 0 (the default) is the original's transform.
    """

    name = "kernel_simplex"

    def __init__(self, eps: float = 1e-12, floor: float = 0.0) -> None:
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"kernel floor must be in [0, 1), got {floor}")
        self.eps = eps
        self.floor = float(floor)

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        k = ((x + 1.0) / 2.0).clamp_min(0.0)
        if self.floor > 0:
            peak = k.flatten(1).amax(dim=1).view(-1, *([1] * (k.dim() - 1)))
            k = (k - self.floor * peak).clamp_min(0.0)
        return k / (_per_sample_sum(k) + self.eps)

    def __repr__(self) -> str:
        return f"KernelSimplex(floor={self.floor})" if self.floor else "KernelSimplex()"

    def from_physical(self, p: torch.Tensor) -> torch.Tensor:
        peak = p.flatten(1).amax(dim=1).view(-1, *([1] * (p.dim() - 1)))
        return p / peak.clamp_min(self.eps) * 2.0 - 1.0


class Scale(Transform):
    """Tilt maps: pixels = ``scale * x``. The original passes x unchanged (scale 1),
    which caps its tilt estimate at ±1 px although simulated tilt reaches ±2.5 px."""

    name = "scale"

    def __init__(self, scale: float = 2.5) -> None:
        self.scale = float(scale)

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def from_physical(self, p: torch.Tensor) -> torch.Tensor:
        return p / self.scale

    def __repr__(self) -> str:
        return f"Scale({self.scale})"


def build_transform(spec: str | dict | Transform) -> Transform:
    """Build a transform from a preset entry: ``'identity'``, ``'kernel_simplex'``,
    ``{'name': 'scale', 'scale': 2.5}`` or an instance."""
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name", None)
    table = {"identity": Identity, "kernel_simplex": KernelSimplex, "scale": Scale}
    if name not in table:
        raise ValueError(f"unknown transform {name!r}; choose one of {sorted(table)}")
    return table[name](**spec)
