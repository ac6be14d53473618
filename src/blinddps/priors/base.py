"""Priors: what the sampler needs from a variable's prior, and nothing about the task.

A prior owns a variable's diffusion space (a model, its schedule, its clipping) and the
transform to the physical parameter. Per step the sampler asks it for a *denoised
estimate* x̂0 (with autograd back to x_t) and a *proposal* x' for the next state
(before the measurement-guided gradient step).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ..diffusion import DiffusionSchedule
from ..transforms import Identity, Transform


@dataclass
class PriorOutput:
    """One prior's answer at one step."""

    x0: torch.Tensor
    """Clipped denoised estimate in diffusion space (differentiable w.r.t. x_t)."""
    var_values: torch.Tensor | None = None
    """Learned-range variance outputs, if the model has them (detached)."""


class Prior(ABC):
    """A prior on one variable."""

    transform: Transform

    @property
    def schedule(self) -> DiffusionSchedule | None:
        """The respaced schedule the prior runs on, or None for a prior without one."""
        return None

    @abstractmethod
    def initial_state(
        self, shape: tuple[int, ...], noise: torch.Tensor, init: torch.Tensor | None
    ) -> torch.Tensor:
        """x_T for a batch of ``shape``; ``noise`` is N(0, I) drawn by the sampler,
        ``init`` an optional physical initial value."""

    @abstractmethod
    def denoise(self, x_t: torch.Tensor, idx: torch.Tensor) -> PriorOutput:
        """x̂0 of x_t at schedule index ``idx`` (B,)."""

    @abstractmethod
    def propose(
        self,
        out: PriorOutput,
        x_t: torch.Tensor,
        idx: torch.Tensor,
        noise: torch.Tensor | None,
        method: str = "ddpm",
        eta: float = 1.0,
    ) -> torch.Tensor:
        """The next state before guidance, from a (possibly replaced) x̂0. Detached."""


class FlatPrior(Prior):
    """No learned prior: the state is its own estimate and moves by gradient steps only.

    The original crashes on a variable without a model; this is what it should do.
    """

    def __init__(self, transform: Transform | None = None, clip: bool = True) -> None:
        self.transform = transform or Identity()
        self.clip = clip

    def initial_state(self, shape, noise, init):
        if init is not None:
            return self.transform.from_physical(init).to(noise).expand(shape).clone()
        return torch.zeros(shape, dtype=noise.dtype, device=noise.device)

    def denoise(self, x_t, idx):
        return PriorOutput(x_t.clamp(-1, 1) if self.clip else x_t)

    def propose(self, out, x_t, idx, noise, method="ddpm", eta=1.0):
        return out.x0.detach()


class DiffusionPrior(Prior):
    """A diffusion model (ε-prediction, optionally guided-diffusion's learned-range
    variance) on a schedule, with a transform to the physical parameter."""

    def __init__(
        self,
        model: torch.nn.Module,
        schedule: DiffusionSchedule,
        transform: Transform | None = None,
        clip: bool = True,
        autocast_dtype: torch.dtype | None = None,
        name: str = "",
    ) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._schedule = schedule
        self.transform = transform or Identity()
        self.clip = clip
        self.autocast_dtype = autocast_dtype
        self.name = name

    @property
    def schedule(self) -> DiffusionSchedule:
        return self._schedule

    def with_schedule(self, schedule: DiffusionSchedule) -> "DiffusionPrior":
        return DiffusionPrior(self.model, schedule, self.transform, self.clip, self.autocast_dtype, self.name)

    def initial_state(self, shape, noise, init):
        return noise

    def _model_out(self, x_t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        t = self._schedule.model_timesteps(idx)
        ctx = (
            torch.autocast(x_t.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with ctx:
            out = self.model(x_t, t)
        return out.to(x_t.dtype)

    def denoise(self, x_t, idx):
        out = self._model_out(x_t, idx)
        c = x_t.shape[1]
        if out.shape[1] == 2 * c:
            eps, var_values = out[:, :c], out[:, c:].detach()
        elif out.shape[1] == c:
            eps, var_values = out, None
        else:
            raise ValueError(
                f"prior {self.name or type(self.model).__name__} returns {out.shape[1]} channels "
                f"for a {c}-channel variable (expected {c} or {2 * c})"
            )
        x0 = self._schedule.predict_x0(x_t, idx, eps)
        if self.clip:
            x0 = x0.clamp(-1, 1)
        return PriorOutput(x0, var_values)

    def propose(self, out, x_t, idx, noise, method="ddpm", eta=1.0):
        x0, x_t = out.x0.detach(), x_t.detach()
        s = self._schedule
        if method == "ddim":
            return s.ddim_step(x0, x_t, idx, eta, noise)
        if method != "ddpm":
            raise ValueError(f"unknown sampling method {method!r}; choose 'ddpm' or 'ddim'")
        mean = s.posterior_mean(x0, x_t, idx)
        if noise is None:
            return mean
        log_var = s.posterior_log_variance(idx, x_t, out.var_values)
        nonzero = (idx != 0).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * noise
