"""Training losses of guided-diffusion: ε-MSE plus, for a learned-range variance, the
variational-bound term (Nichol & Dhariwal's hybrid objective).

``training_losses(model, schedule, x0, idx, noise)`` follows guided-diffusion's
``GaussianDiffusion.training_losses`` with ``LossType.RESCALED_MSE`` (the setting the
published checkpoints were trained with when ``learn_sigma`` is on):

* ``mse``: mean over pixels of ``(ε − ε̂)²``;
* ``vb`` (models that also return variance values v, i.e. ``2C`` output channels): the
  term ``L_t`` of the variational bound for the sampled step, in bits per dimension:
  ``KL(q(x_{t−1}|x_t, x_0) ‖ p(x_{t−1}|x_t))`` for ``t > 0`` and the discretised-Gaussian
  decoder NLL at ``t = 0``. The mean of ``p`` uses ε̂ **detached** (stop-gradient), so
  this term trains the variance only, and the ε-MSE alone trains the mean. It is scaled
  by ``T / 1000`` (``vb_scale``), i.e. λ = 0.001 on the full bound ``T · E_t[L_t]``;
* ``loss = mse + vb`` (just ``mse`` without variance outputs);
* optionally ``+ dc_weight · dc`` with ``dc`` the squared per-channel spatial mean of
  ``ε − ε̂`` (the error of the image's DC component). The plain MSE gives that one
  component a weight of ``1/(H·W)``, so small networks learn it last; for data whose
  mean is nearly constant (blur kernels: a background of exactly −1) a wrong DC is the
  dominant sampling error (grey backgrounds). Any positive-definite quadratic weighting
  has the same minimiser E[ε | x_t], so this reweights the objective without changing
  what a perfect model learns.

All terms are per sample, shape ``(B,)``, computed in float32 whatever the model's
autocast dtype.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .schedule import DiffusionSchedule, _extract

__all__ = [
    "mean_flat",
    "normal_kl",
    "approx_standard_normal_cdf",
    "discretized_gaussian_log_likelihood",
    "vb_terms_bpd",
    "training_losses",
]


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension."""
    return x.flatten(1).mean(dim=1)


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """guided-diffusion's tanh approximation of the standard normal CDF."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor, bin_width: float = 2.0 / 255.0
) -> torch.Tensor:
    """log-likelihood (nats, elementwise) of ``x`` in [-1, 1] under a Gaussian discretised
    into bins of ``bin_width`` (8-bit data by default); the outermost bins extend to ±∞."""
    if not (x.shape == means.shape == log_scales.shape):
        raise ValueError(
            f"x, means and log_scales must have the same shape, got {tuple(x.shape)}, "
            f"{tuple(means.shape)}, {tuple(log_scales.shape)}"
        )
    half = bin_width / 2.0
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + half))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - half))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


def vb_terms_bpd(
    schedule: DiffusionSchedule,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    idx: torch.Tensor,
    eps: torch.Tensor,
    var_values: torch.Tensor,
    clip_denoised: bool = False,
) -> torch.Tensor:
    """The bound term ``L_t`` per sample (bits per dimension) for the model's ε̂ and
    variance values at schedule indices ``idx``: KL for ``idx > 0``, decoder NLL at 0."""
    true_mean = schedule.posterior_mean(x0, x_t, idx)
    true_log_var = _extract(schedule.posterior_log_variance_clipped, idx, x_t)
    pred_x0 = schedule.predict_x0(x_t, idx, eps)
    if clip_denoised:
        pred_x0 = pred_x0.clamp(-1, 1)
    model_mean = schedule.posterior_mean(pred_x0, x_t, idx)
    model_log_var = schedule.posterior_log_variance(idx, x_t, var_values)
    kl = mean_flat(normal_kl(true_mean, true_log_var, model_mean, model_log_var)) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, means=model_mean, log_scales=0.5 * model_log_var)
    nll = mean_flat(nll) / math.log(2.0)
    return torch.where(idx.to(x0.device) == 0, nll, kl)


def training_losses(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: DiffusionSchedule,
    x0: torch.Tensor,
    idx: torch.Tensor,
    noise: torch.Tensor | None = None,
    *,
    vb_scale: float | None = None,
    autocast_dtype: torch.dtype | None = None,
    dc_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Per-sample losses ``{'loss', 'mse'[, 'vb']}`` (each ``(B,)``) of ``model`` on clean
    data ``x0`` at schedule indices ``idx`` with Gaussian ``noise`` (drawn from the global
    RNG when ``None``; pass it explicitly for reproducibility).

    ``model(x_t, t)`` is called with the schedule's model timesteps and must return C
    (ε only: the loss is the MSE) or 2C channels (ε and guided-diffusion's variance
    values: the hybrid loss, see the module docstring). ``vb_scale`` defaults to
    ``base_num_timesteps / 1000`` (guided-diffusion's ``RESCALED_MSE``).
    ``autocast_dtype`` runs the model under ``torch.autocast`` (e.g. bf16 on CUDA).
    ``dc_weight`` > 0 adds the weighted DC-error term ``'dc'`` (module docstring).
    """
    if noise is None:
        noise = torch.randn_like(x0)
    idx = idx.to(x0.device).long()
    x_t = schedule.q_sample(x0, idx, noise)
    t = schedule.model_timesteps(idx)
    if autocast_dtype is not None:
        with torch.autocast(x0.device.type, dtype=autocast_dtype):
            out = model(x_t, t)
    else:
        out = model(x_t, t)
    out = out.float()
    c = x0.shape[1]
    if out.shape[0] != x0.shape[0] or out.shape[2:] != x0.shape[2:] or out.shape[1] not in (c, 2 * c):
        raise ValueError(
            f"model output {tuple(out.shape)} does not fit data {tuple(x0.shape)} "
            f"(expected {c} or {2 * c} channels)"
        )
    x0f, x_tf, noisef = x0.float(), x_t.float(), noise.float()
    terms: dict[str, torch.Tensor] = {}
    if out.shape[1] == 2 * c:
        eps, var_values = out[:, :c], out[:, c:]
        if vb_scale is None:
            vb_scale = schedule.base_num_timesteps / 1000.0
        # stop-gradient on the mean: the bound term trains the variance only
        terms["vb"] = vb_scale * vb_terms_bpd(schedule, x0f, x_tf, idx, eps.detach(), var_values)
    else:
        eps = out
    err = noisef - eps
    terms["mse"] = mean_flat(err**2)
    terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
    if dc_weight:
        terms["dc"] = err.mean(dim=(2, 3)).pow(2).mean(dim=1)
        terms["loss"] = terms["loss"] + float(dc_weight) * terms["dc"]
    return terms
