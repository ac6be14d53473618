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

    def diffusion_shape(self, physical_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample shape in diffusion space of a physical parameter of
        ``physical_shape`` (the same, unless the transform maps between sizes)."""
        return tuple(physical_shape)

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

    ``window`` (wh, ww): the diffusion-space kernel is a larger window (a kernel prior's
    training size) than the physical kernel: ``to_physical`` keeps the central
    kh × kw support (placed so that the two share the pixel ``conv_same`` treats as the
    origin, ``(w-1)//2``), ``from_physical`` puts a kernel back into the window with
    zero (-1) around it. So a 32×32 kernel prior estimates any kernel up to 32×32.
    """

    name = "kernel_simplex"

    def __init__(self, eps: float = 1e-12, floor: float = 0.0, window: tuple[int, int] | None = None,
                 support: tuple[int, int] | None = None) -> None:
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"kernel floor must be in [0, 1), got {floor}")
        if (window is None) != (support is None):
            raise ValueError("give both the kernel window and its support, or neither")
        self.eps = eps
        self.floor = float(floor)
        self.window = None if window is None else (int(window[0]), int(window[1]))
        self.support = None if support is None else (int(support[0]), int(support[1]))
        if self.window is not None and (self.support[0] > self.window[0] or self.support[1] > self.window[1]):
            raise ValueError(f"the kernel {self.support[0]}x{self.support[1]} is larger than the prior's "
                             f"{self.window[0]}x{self.window[1]} window")

    def with_window(self, window: tuple[int, int], support: tuple[int, int]) -> "KernelSimplex":
        """The same transform for a ``support``-sized physical kernel estimated in a
        ``window``-sized diffusion space (see above)."""
        return KernelSimplex(self.eps, self.floor, window, support)

    def diffusion_shape(self, physical_shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.window is None or tuple(physical_shape[-2:]) != self.support:
            return tuple(physical_shape)
        return (*tuple(physical_shape)[:-2], *self.window)

    def _offsets(self, kh: int, kw: int) -> tuple[int, int]:
        wh, ww = self.window  # type: ignore[misc]
        return (wh - 1) // 2 - (kh - 1) // 2, (ww - 1) // 2 - (kw - 1) // 2

    def crop(self, x: torch.Tensor, support: tuple[int, int]) -> torch.Tensor:
        """The central ``support`` of window-sized ``x`` (..., wh, ww)."""
        oh, ow = self._offsets(*support)
        return x[..., oh : oh + support[0], ow : ow + support[1]]

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        if self.window is not None and tuple(x.shape[-2:]) == self.window:
            x = self.crop(x, self.support)
        k = ((x + 1.0) / 2.0).clamp_min(0.0)
        if self.floor > 0:
            peak = k.flatten(1).amax(dim=1).view(-1, *([1] * (k.dim() - 1)))
            k = (k - self.floor * peak).clamp_min(0.0)
        return k / (_per_sample_sum(k) + self.eps)

    def __repr__(self) -> str:
        args = [f"floor={self.floor}"] if self.floor else []
        if self.window is not None:
            args.append(f"window={self.window}, support={self.support}")
        return f"KernelSimplex({', '.join(args)})"

    def from_physical(self, p: torch.Tensor) -> torch.Tensor:
        peak = p.flatten(1).amax(dim=1).view(-1, *([1] * (p.dim() - 1)))
        x = p / peak.clamp_min(self.eps) * 2.0 - 1.0
        if self.window is None or tuple(x.shape[-2:]) == self.window:
            return x
        kh, kw = x.shape[-2:]
        oh, ow = self._offsets(kh, kw)
        wh, ww = self.window
        return torch.nn.functional.pad(x, (ow, ww - kw - ow, oh, wh - kh - oh), value=-1.0)


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
