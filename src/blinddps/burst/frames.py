"""Priors and transforms for unknowns with a frame axis (one value per frame).

A per-frame unknown of a burst has per-sample shape ``(N, *s)`` (e.g. a tilt map
``(N, 2, H, W)``). A prior trained on single values of shape ``s`` evaluates it as a
batch of N: :class:`FramePrior` folds the frame axis into the batch for the network
and the transform, and unfolds it for the sampler, which sees only ``(B, N, *s)``
tensors and knows nothing about frames.
"""
from __future__ import annotations

import torch

from ..priors import Prior, PriorOutput
from ..transforms import Transform

__all__ = ["FramePrior", "FrameTransform"]


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(B, N, *s) -> (B·N, *s)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·N, *s) -> (B, N, *s)."""
    return x.reshape(x.shape[0] // frames, frames, *x.shape[1:])


class FrameTransform(Transform):
    """``inner`` applied to every frame of a ``(B, N, *s)`` tensor on its own (a kernel
    simplex then normalises each frame's kernel, not the N of them together)."""

    def __init__(self, inner: Transform) -> None:
        self.inner = inner
        self.name = f"frames({inner.name})"

    def to_physical(self, x: torch.Tensor) -> torch.Tensor:
        return _unfold(self.inner.to_physical(_fold(x)), x.shape[1])

    def from_physical(self, p: torch.Tensor) -> torch.Tensor:
        return _unfold(self.inner.from_physical(_fold(p)), p.shape[1])

    def diffusion_shape(self, physical_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(physical_shape[0]), *self.inner.diffusion_shape(tuple(physical_shape[1:])))

    def __repr__(self) -> str:
        return f"FrameTransform({self.inner!r})"


class FramePrior(Prior):
    """``inner`` (a prior on single values) run on each of the N frames of a
    ``(B, N, *s)`` variable as one batch of B·N: memory and time linear in N."""

    def __init__(self, inner: Prior) -> None:
        self.inner = inner
        self.transform = FrameTransform(inner.transform)

    @property
    def schedule(self):
        return self.inner.schedule

    @property
    def model(self):
        return getattr(self.inner, "model", None)

    def initial_state(self, shape, noise, init):
        n = shape[1]
        inner_init = None if init is None else _fold(init.expand(shape[0], n, *init.shape[2:]))
        state = self.inner.initial_state((shape[0] * n, *shape[2:]), _fold(noise), inner_init)
        return _unfold(state, n)

    def denoise(self, x_t, idx):
        n = x_t.shape[1]
        out = self.inner.denoise(_fold(x_t), idx.repeat_interleave(n))
        vv = None if out.var_values is None else _unfold(out.var_values, n)
        return PriorOutput(_unfold(out.x0, n), vv)

    def propose(self, out, x_t, idx, noise, method="ddpm", eta=1.0):
        n = x_t.shape[1]
        inner_out = PriorOutput(_fold(out.x0), None if out.var_values is None else _fold(out.var_values))
        nz = None if noise is None else _fold(noise)
        return _unfold(self.inner.propose(inner_out, _fold(x_t), idx.repeat_interleave(n), nz, method, eta), n)
