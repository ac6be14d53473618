"""How a variable's posterior samples become one estimate.

``mean`` is the plain mean over the samples (every preset's default). ``agreement``
keeps of the mean only what the samples agree on: with samples s_1..s_N of one
measurement (flattened) and their mean m, the estimate is α·m with

    α = max(0, min_{i<j} ⟨s_i, s_j⟩) / ‖m‖²,   clipped to [0, 1].

If the samples share a component μ (the part the measurement pins down), every pair's
inner product is about ‖μ‖² and α ≈ ‖μ‖²/‖m‖², the James–Stein factor that removes the
mean's own sampling noise. If they are independent draws around zero (the data do not
pin the variable down), some pair is ≤ 0 and the estimate is zero: the mean of a few
such draws is noise, and any multiple of it is farther from the truth on average than
zero. One sample gives no pair, so no evidence: the estimate is zero. Nothing here
knows what the variable is.
"""
from __future__ import annotations

import itertools

import torch

COMBINE_RULES = ("mean", "agreement")


def check_combine_rule(rule: str) -> None:
    """A one-line ValueError unless ``rule`` is one of :data:`COMBINE_RULES`."""
    if rule not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {rule!r}; choose one of {', '.join(COMBINE_RULES)}")


def agreement_factor(samples: torch.Tensor) -> torch.Tensor:
    """α per measurement for ``samples`` (B, N, ...): (B,) in [0, 1]."""
    B, N = samples.shape[:2]
    flat = samples.reshape(B, N, -1).double()
    if N < 2:
        return torch.zeros(B, dtype=samples.dtype, device=samples.device)
    mean = flat.mean(1)
    pairs = torch.stack([(flat[:, i] * flat[:, j]).sum(1) for i, j in itertools.combinations(range(N), 2)], 1)
    energy = mean.pow(2).sum(1)
    alpha = torch.where(energy > 0, pairs.min(1).values.clamp(min=0) / energy.clamp(min=1e-300),
                        torch.zeros_like(energy))
    return alpha.clamp(0, 1).to(samples.dtype)


def combine_samples(samples: torch.Tensor, rule: str = "mean") -> torch.Tensor:
    """One estimate per measurement from ``samples`` (B, N, ...) by ``rule``."""
    check_combine_rule(rule)
    if rule == "mean":
        return samples.mean(1)
    alpha = agreement_factor(samples)
    return samples.mean(1) * alpha.view(-1, *([1] * (samples.dim() - 2)))
