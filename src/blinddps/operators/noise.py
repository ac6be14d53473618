"""Measurement noise, drawn from an explicit generator (never the global RNG)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["GaussianNoise"]


class GaussianNoise:
    """Additive white Gaussian noise: ``y + σ·n``, n ~ N(0, I).

    ``generator`` is a ``torch.Generator`` (the draw happens on the generator's device
    and is moved to ``y``'s, so a CPU generator gives the same noise on any device), a
    list of one generator per sample (sample b from generator b: a batch reproduces B
    runs of batch 1), or None: a fresh generator seeded from the OS — noise that cannot
    be reproduced, but the global RNG stays untouched.
    """

    def __init__(self, sigma: float) -> None:
        if sigma < 0:
            raise ValueError(f"noise sigma must be non-negative, got {sigma}")
        self.sigma = float(sigma)

    def sample(
        self, shape: Sequence[int], generator: torch.Generator | Sequence[torch.Generator] | None,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Standard normal noise of ``shape`` (not yet scaled by σ)."""
        shape = tuple(shape)
        if isinstance(generator, Sequence):
            if len(generator) != shape[0]:
                raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
            return torch.stack(
                [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
            ).to(device)
        if generator is None:
            generator = torch.Generator(device=device)
            generator.seed()
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)

    def __call__(
        self, y: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> torch.Tensor:
        """``y`` plus σ·N(0, I) (a new tensor; ``y`` is not modified)."""
        if self.sigma == 0:
            return y.clone()
        return y + self.sigma * self.sample(y.shape, generator, device=y.device, dtype=y.dtype)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"
