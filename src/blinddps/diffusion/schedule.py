"""Variance-preserving noise schedules with guided-diffusion's semantics.

All schedule arrays are float64 numpy arrays, exactly as guided-diffusion computes
them; ``DiffusionSchedule`` extracts per-sample values into torch tensors of the
working dtype. Indices ``i`` below always index the (possibly respaced) schedule;
``timestep_map[i]`` is the original timestep the network is conditioned on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


def linear_betas(num_timesteps: int) -> np.ndarray:
    """guided-diffusion's linear schedule, scaled so any T matches T=1000's endpoints."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return np.array(betas, dtype=np.float64)


def named_betas(name: str, num_timesteps: int) -> np.ndarray:
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"unknown noise schedule {name!r}; choose 'linear' or 'cosine'")


def space_timesteps(num_timesteps: int, section_counts: str | int | list[int]) -> set[int]:
    """Timesteps kept when respacing, with guided-diffusion's ``space_timesteps`` rules.

    ``section_counts`` is an int (one section), a comma string ``"10,15,20"`` or list
    (that many evenly strided steps from each equal section), or ``"ddimN"`` (the
    fixed integer stride of DDIM that gives exactly N steps).
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps with an integer stride")
        counts = [int(c) for c in section_counts.split(",")]
    elif isinstance(section_counts, int):
        counts = [section_counts]
    else:
        counts = [int(c) for c in section_counts]
    size_per, extra = divmod(num_timesteps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return set(steps)


def _extract(arr: np.ndarray, idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values ``arr[idx]`` shaped to broadcast against ``like`` (B, ...)."""
    vals = torch.as_tensor(arr, device=like.device)[idx.to(like.device).long()]
    return vals.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


@dataclass
class DiffusionSchedule:
    """A (possibly respaced) discrete VP diffusion, guided-diffusion conventions.

    Build with :meth:`create`. ``betas`` etc. have one entry per kept step.
    """

    betas: np.ndarray
    timestep_map: np.ndarray
    base_num_timesteps: int = field(default=0)

    def __post_init__(self) -> None:
        b = np.asarray(self.betas, dtype=np.float64)
        if b.ndim != 1 or not ((b > 0).all() and (b <= 1).all()):
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.betas = b
        self.timestep_map = np.asarray(self.timestep_map, dtype=np.int64)
        if not self.base_num_timesteps:
            self.base_num_timesteps = len(b)
        alphas = 1.0 - b
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # β̃_0 = 0: guided-diffusion replaces it by β̃_1 before taking the log.
        pv1 = self.posterior_variance[1] if len(b) > 1 else self.posterior_variance[0]
        self.posterior_log_variance_clipped = np.log(np.append(pv1, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = b * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        steps: int | str | list[int] | None = None,
        *,
        noise_schedule: str = "linear",
        num_timesteps: int = 1000,
    ) -> "DiffusionSchedule":
        """The ``noise_schedule`` over ``num_timesteps``, respaced to ``steps``
        (``None`` keeps all; an int, ``"10,20"`` or ``"ddim50"`` as in guided-diffusion)."""
        base = named_betas(noise_schedule, num_timesteps)
        if steps is None or steps == num_timesteps:
            return cls(base, np.arange(num_timesteps), num_timesteps)
        keep = space_timesteps(num_timesteps, steps)
        base_ac = np.cumprod(1.0 - base)
        last, betas, tmap = 1.0, [], []
        for i, ac in enumerate(base_ac):
            if i in keep:
                betas.append(1.0 - ac / last)
                last = ac
                tmap.append(i)
        return cls(np.array(betas), np.array(tmap), num_timesteps)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    def model_timesteps(self, idx: torch.Tensor) -> torch.Tensor:
        """Original timesteps (what the network is conditioned on) for indices ``idx``."""
        return torch.as_tensor(self.timestep_map, device=idx.device)[idx.long()]

    # ------------------------------------------------------------------ formulas
    def q_sample(self, x0: torch.Tensor, idx: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0)."""
        return (
            _extract(self.sqrt_alphas_cumprod, idx, x0) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, idx, x0) * noise
        )

    def predict_x0(self, x_t: torch.Tensor, idx: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t."""
        return (
            _extract(self.sqrt_recip_alphas_cumprod, idx, x_t) * x_t
            - _extract(self.sqrt_recipm1_alphas_cumprod, idx, x_t) * eps
        )

    def predict_eps(self, x_t: torch.Tensor, idx: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The ε consistent with x_t and a (possibly clipped) x̂0."""
        return (
            _extract(self.sqrt_recip_alphas_cumprod, idx, x_t) * x_t - x0
        ) / _extract(self.sqrt_recipm1_alphas_cumprod, idx, x_t)

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0)."""
        return (
            _extract(self.posterior_mean_coef1, idx, x_t) * x0
            + _extract(self.posterior_mean_coef2, idx, x_t) * x_t
        )

    def posterior_log_variance(
        self, idx: torch.Tensor, like: torch.Tensor, var_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log σ_t² of the reverse step: fixed-small (β̃, clipped) without ``var_values``,
        else guided-diffusion's learned range f·log β_t + (1−f)·log β̃_t, f = (v+1)/2."""
        min_log = _extract(self.posterior_log_variance_clipped, idx, like)
        if var_values is None:
            return min_log.expand_as(like)
        max_log = _extract(np.log(self.betas), idx, like)
        frac = (var_values + 1) / 2
        return frac * max_log + (1 - frac) * min_log

    def ddim_step(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        idx: torch.Tensor,
        eta: float,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """DDIM update to the previous kept step from x̂0 (η = 0 deterministic, η = 1 ≈ DDPM)."""
        eps = self.predict_eps(x_t, idx, x0)
        ac = _extract(self.alphas_cumprod, idx, x_t)
        ac_prev = _extract(self.alphas_cumprod_prev, idx, x_t)
        sigma = eta * torch.sqrt((1 - ac_prev) / (1 - ac)) * torch.sqrt(1 - ac / ac_prev)
        out = torch.sqrt(ac_prev) * x0 + torch.sqrt((1 - ac_prev - sigma**2).clamp_min(0)) * eps
        if noise is not None:
            nonzero = (idx != 0).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
            out = out + nonzero * sigma * noise
        return out

    def sqrt_alpha_bar(self, idx: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return _extract(self.sqrt_alphas_cumprod, idx, like)
