"""Measurement guidance: step-size rules and parameter regularisers.

Everything here is generic: a rule sees a schedule index and a variable, a regulariser
sees a variable's diffusion-space estimate and its physical value, never a "kernel".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion import DiffusionSchedule

STEP_RULES = ("original", "constant", "stride")


@dataclass
class StepRule:
    """ζ_t for one variable's gradient step x_{t-1} = x' − ζ_t ∇ loss.

    * ``original``: ζ_t = scale·√ᾱ_t of the (respaced) schedule — what the original
      code runs (scale 1).
    * ``constant``: ζ_t = scale — the paper's description.
    * ``stride``: ζ_t = scale·√ᾱ_t·(T/N), T the base and N the respaced step count.
      A respaced step stands for T/N original steps, so the guidance accumulated over
      the whole trajectory stays that of the 1000-step run whatever N is; the
      original's rule at 100 steps applies a tenth of it (DESIGN.md measured that
      the original rule fails at 100 steps, and a ≈10× larger scale works).

    ``size_power`` ≠ 0 multiplies ζ_t by ``(M / ref_size) ** size_power``, M the number
    of measurement values per sample. With the norm loss ‖r‖ the gradient on each
    value of a variable the size of the measurement (an image, a tilt map) shrinks as
    M^-1/2, while the gradient on a variable of fixed size (a kernel) sums over the
    whole measurement and grows as M^1/2; powers +1/2 and -1/2 keep a scale tuned at
    ``ref_size`` equally strong at other sizes (docs/benchmarks.md measured it).
    """

    rule: str = "original"
    scale: float = 1.0
    size_power: float = 0.0
    ref_size: int = 3 * 128 * 128

    def __post_init__(self) -> None:
        if self.rule not in STEP_RULES:
            raise ValueError(f"unknown step rule {self.rule!r}; choose one of {', '.join(STEP_RULES)}")
        self.scale, self.size_power, self.ref_size = float(self.scale), float(self.size_power), int(self.ref_size)
        if not self.ref_size > 0:
            raise ValueError(f"ref_size must be positive, got {self.ref_size!r}")

    def __call__(self, schedule: DiffusionSchedule, idx: torch.Tensor, like: torch.Tensor,
                 measurement_size: int | None = None) -> torch.Tensor:
        shape = (-1,) + (1,) * (like.dim() - 1)
        scale = self.scale
        if self.size_power and measurement_size is not None:
            scale = scale * (measurement_size / self.ref_size) ** self.size_power
        if self.rule == "constant":
            return torch.full((like.shape[0],), scale, dtype=like.dtype, device=like.device).view(shape)
        zeta = scale * schedule.sqrt_alpha_bar(idx, like)
        if self.rule == "stride":
            zeta = zeta * (schedule.base_num_timesteps / schedule.num_steps)
        return zeta


REGULARIZERS = ("l1_raw", "lp")


@dataclass
class Regularizer:
    """A penalty on a variable, returned per sample (B,), added to the loss.

    * ``l1_raw``: weight·Σ (x̂0+1)/2 — the ℓ1 norm of the *un-normalised* estimate in
      [0, 1]; the original's ℓ1 on the *normalised* kernel is identically 1 and has no
      gradient.
    * ``lp``: weight·Σ (|p| + ε)^power on the physical value, power < 1 favours sparse
      parameters (e.g. thin kernels) and, unlike ℓ1 on a simplex, has a gradient.
    """

    name: str
    weight: float
    power: float = 0.5
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.name not in REGULARIZERS:
            raise ValueError(f"unknown regularizer {self.name!r}; choose one of {', '.join(REGULARIZERS)}")

    def __call__(self, x0: torch.Tensor, physical: torch.Tensor) -> torch.Tensor:
        if self.name == "l1_raw":
            return self.weight * ((x0 + 1) / 2).abs().flatten(1).sum(1)
        return self.weight * (physical.abs() + self.eps).pow(self.power).flatten(1).sum(1)
