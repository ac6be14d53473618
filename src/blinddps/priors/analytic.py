"""A Gaussian data model whose exact ε-predictor is known in closed form.

For data x0 ~ N(μ, Σ) and x_t = √ᾱ x0 + √(1−ᾱ) ε, the MMSE noise prediction is
E[ε | x_t] = √(1−ᾱ) C_t⁻¹ (x_t − √ᾱ μ) with C_t = ᾱΣ + (1−ᾱ)I. It stands in for a
trained network in tests and examples: samplers built on it can be checked against
exact answers (prior moments, posterior means of linear problems).
"""
from __future__ import annotations

import numpy as np
import torch

from ..diffusion import named_betas


class GaussianEpsModel(torch.nn.Module):
    """Exact ε-predictor for N(mean, cov) over tensors of ``shape`` (C, H, W).

    Called as ``model(x_t, t)`` with ``t`` the *original* timesteps (0 … T−1), like a
    guided-diffusion UNet, so it plugs into :class:`~blinddps.priors.DiffusionPrior`.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        cov: torch.Tensor,
        noise_schedule: str = "linear",
        num_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        self.shape = tuple(mean.shape)
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(f"cov must be {d}x{d} for a mean of shape {self.shape}")
        evals, evecs = torch.linalg.eigh(cov.double())
        self.register_buffer("mean", mean.double().reshape(d))
        self.register_buffer("evals", evals.clamp_min(0))
        self.register_buffer("evecs", evecs)
        ac = np.cumprod(1.0 - named_betas(noise_schedule, num_timesteps))
        self.register_buffer("alphas_cumprod", torch.from_numpy(ac))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        ac = self.alphas_cumprod[t.long()].view(b, 1)
        centred = x.double().reshape(b, -1) - ac.sqrt() * self.mean
        coords = centred @ self.evecs
        coords = coords / (ac * self.evals + (1 - ac))
        eps = (1 - ac).sqrt() * (coords @ self.evecs.T)
        return eps.reshape(x.shape).to(x.dtype)


def smooth_covariance(height: int, width: int, length: float, variance: float = 1.0) -> torch.Tensor:
    """A squared-exponential covariance over an H×W grid (for toy image priors)."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pts = torch.stack([yy.flatten(), xx.flatten()], 1).double()
    d2 = torch.cdist(pts, pts).pow(2)
    return variance * torch.exp(-d2 / (2 * length**2)) + 1e-6 * torch.eye(height * width, dtype=torch.float64)
