"""Wrappers that change the resolution a UNet works at, transparently to its callers.

:class:`PixelUnshuffleUNet` applies a UNet trained at ``1/f`` resolution with ``f²×``
channels to full-resolution input: ``x (B, C, H, W)`` → ``pixel_unshuffle(x, f)``
``(B, C·f², H/f, W/f)`` → UNet → ``pixel_shuffle`` → ``(B, C or 2C, H, W)``. The
unshuffle is a permutation of the pixels, so Gaussian noise stays i.i.d. Gaussian and a
diffusion on the unshuffled variable *is* a diffusion on the full-resolution one; the
network is just cheaper (4× fewer positions for ``f = 2``), which is what made training
image priors on a 2-core CPU feasible. With ``learn_sigma`` the inner network's first
``C·f²`` output channels are ε and the rest the variance values, so after the shuffle
the first C channels are ε and the last C the variance values, as callers expect.

:class:`DCPriorUNet` replaces the spatial mean (DC) of the UNet's ε̂, per channel, by
the exact posterior mean under a Gaussian prior ``N(μ, Σ)`` on the per-channel means of
x0 (estimated from training data). guided-diffusion's UNet normalises every feature map
with GroupNorm, so its output DC hardly depends on its input DC: a small network never
learns that a blur kernel's background is exactly −1 (or that the 2×2 phases of a
pixel-unshuffled image share one mean), and sampling lets the DC random-walk: grey
kernel backgrounds, periodic patterns. With ``x̄ = √ᾱ d + √(1−ᾱ) ē``, ``d ~ N(μ, Σ)``,
``ē ~ N(0, I/(H·W))``, in the eigenbasis ``Σ = Q diag(λ) Qᵀ``::

    E[ē | x̄] = (x̄ − √ᾱ μ) · (√(1−ᾱ)/(H·W)) / (ᾱ λ + (1−ᾱ)/(H·W))

(→ 0 for an uninformative prior, → (x̄ − √ᾱ μ)/√(1−ᾱ) for a known mean). The zero-mean
part of ε̂ and the variance channels are the UNet's.

Saved form (``save_model``): the ``.safetensors`` holds the *inner* UNet's state dict
with its usual keys (the wrappers add no prefix; :class:`DCPriorUNet` adds
``dc_prior.mean``, ``dc_prior.cov`` and ``dc_prior.alphas_cumprod``), and the YAML
config is the inner UNet's ``create_model`` keywords plus ``pixel_unshuffle: f`` and/or
``dc_prior: true``. :func:`split_config` separates them, :func:`build_model` builds the
wrapped network and :func:`load_saved` loads a saved one.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet import UNetModel, create_model

__all__ = [
    "WRAPPER_KEYS",
    "PixelUnshuffleUNet",
    "DCPriorUNet",
    "estimate_dc_prior",
    "split_config",
    "apply_wrapper",
    "build_model",
    "load_saved",
]

#: Config keys that name a wrapper rather than a ``create_model`` keyword.
WRAPPER_KEYS = ("pixel_unshuffle", "dc_prior")


class DCPriorUNet(nn.Module):
    """``net`` with the DC of its ε̂ replaced by the Gaussian-prior posterior mean (module
    docstring). ``dc_mean`` (C,), ``dc_cov`` (C, C): prior of the per-channel spatial means
    of x0 at the network's input resolution; ``alphas_cumprod`` (T,): the training
    schedule's ᾱ, indexed by the timesteps the network is called with."""

    def __init__(self, net: nn.Module, dc_mean: torch.Tensor | None = None, dc_cov: torch.Tensor | None = None,
                 alphas_cumprod: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = net
        c = int(net.in_channels)
        if alphas_cumprod is None:
            from ..diffusion.schedule import linear_betas

            alphas_cumprod = torch.as_tensor(np.cumprod(1.0 - linear_betas(1000)))
        self.register_buffer("dc_mean", torch.zeros(c, dtype=torch.float64) if dc_mean is None
                             else torch.as_tensor(dc_mean, dtype=torch.float64).reshape(c).clone())
        self.register_buffer("dc_cov", torch.eye(c, dtype=torch.float64) if dc_cov is None
                             else torch.as_tensor(dc_cov, dtype=torch.float64).reshape(c, c).clone())
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64).clone())

    @property
    def in_channels(self) -> int:
        return int(self.net.in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.net.out_channels)

    @property
    def learn_sigma(self) -> bool:
        return bool(getattr(self.net, "learn_sigma", False))

    @property
    def image_size(self) -> int:
        return int(self.net.image_size)

    @property
    def size_multiple(self) -> int:
        return int(self.net.size_multiple)

    @property
    def config(self) -> dict[str, Any]:
        return {**self.net.config, "dc_prior": True}

    def set_gradient_checkpointing(self, enabled: bool = True) -> "DCPriorUNet":
        self.net.set_gradient_checkpointing(enabled)
        return self

    def dc_eps(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Posterior mean of ε's per-channel spatial mean given ``x`` (B, C, H, W): (B, C)."""
        hw = x.shape[2] * x.shape[3]
        t = torch.as_tensor(timesteps, device=x.device).long().reshape(-1).expand(x.shape[0])
        ab = self.alphas_cumprod.to(x.device)[t].to(torch.float64)[:, None]
        lam, q = torch.linalg.eigh(self.dc_cov.to(x.device))
        lam = lam.clamp_min(0.0)
        xbar = x.to(torch.float64).mean(dim=(2, 3))
        r = (xbar - ab.sqrt() * self.dc_mean.to(x.device)) @ q  # eigenbasis
        e = r * ((1 - ab).sqrt() / hw) / (ab * lam + (1 - ab) / hw)
        return e @ q.T

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(x, timesteps, y)
        c = x.shape[1]
        eps = out[:, :c]
        dc = self.dc_eps(x, torch.as_tensor(timesteps, device=x.device)).to(out.dtype)
        eps = eps - eps.mean(dim=(2, 3), keepdim=True) + dc[:, :, None, None]
        return torch.cat([eps, out[:, c:]], dim=1) if out.shape[1] > c else eps

    # state dict: the UNet's keys plus dc_prior.*
    def state_dict(self, *args: Any, destination=None, prefix: str = "", keep_vars: bool = False):  # type: ignore[override]
        sd = self.net.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        for name in ("mean", "cov", "alphas_cumprod"):
            buf = getattr(self, "dc_" + name if name != "alphas_cumprod" else name)
            sd[prefix + "dc_prior." + name] = buf if keep_vars else buf.detach()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        sd = dict(state_dict)
        extra = {k[len("dc_prior."):]: sd.pop(k) for k in list(sd) if k.startswith("dc_prior.")}
        if strict and set(extra) != {"mean", "cov", "alphas_cumprod"}:
            raise RuntimeError(f"DCPriorUNet: state dict needs dc_prior.mean/cov/alphas_cumprod, got {sorted(extra)}")
        dev = self.dc_mean.device
        if "mean" in extra:
            self.dc_mean = extra["mean"].to(dev, torch.float64).clone()
        if "cov" in extra:
            self.dc_cov = extra["cov"].to(dev, torch.float64).clone()
        if "alphas_cumprod" in extra:
            self.alphas_cumprod = extra["alphas_cumprod"].to(dev, torch.float64).clone()
        return self.net.load_state_dict(sd, strict=strict, assign=assign)


def estimate_dc_prior(x0: torch.Tensor, jitter: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C,) and covariance (C, C) of the per-channel spatial means of samples ``x0`` (N, C, H, W)."""
    d = x0.to(torch.float64).mean(dim=(2, 3))
    mu = d.mean(0)
    cov = torch.cov(d.T).reshape(d.shape[1], d.shape[1]) if d.shape[0] > 1 else torch.zeros(d.shape[1], d.shape[1])
    return mu, cov + jitter * torch.eye(d.shape[1], dtype=torch.float64)


class PixelUnshuffleUNet(nn.Module):
    """``net`` (a UNet on ``(B, C·f², H/f, W/f)``) applied at full resolution ``(B, C, H, W)``.

    ``state_dict`` / ``load_state_dict`` are the inner network's (same keys, no prefix),
    so the weights file of a wrapped model is a plain UNet checkpoint.
    """

    def __init__(self, net: nn.Module, factor: int) -> None:
        super().__init__()
        factor = int(factor)
        if factor < 1:
            raise ValueError(f"pixel_unshuffle factor must be a positive int, got {factor}")
        if net.in_channels % (factor * factor):
            raise ValueError(
                f"pixel_unshuffle {factor}: the inner UNet's in_channels ({net.in_channels}) "
                f"must be a multiple of {factor * factor}"
            )
        self.net = net
        self.factor = factor

    # the attributes callers look at, in full-resolution terms
    @property
    def in_channels(self) -> int:
        return self.net.in_channels // (self.factor * self.factor)

    @property
    def out_channels(self) -> int:
        return self.net.out_channels // (self.factor * self.factor)

    @property
    def learn_sigma(self) -> bool:
        return bool(getattr(self.net, "learn_sigma", False))

    @property
    def image_size(self) -> int:
        return int(self.net.image_size) * self.factor

    @property
    def size_multiple(self) -> int:
        return self.net.size_multiple * self.factor

    @property
    def config(self) -> dict[str, Any]:
        return {**self.net.config, "pixel_unshuffle": self.factor}

    def set_gradient_checkpointing(self, enabled: bool = True) -> "PixelUnshuffleUNet":
        self.net.set_gradient_checkpointing(enabled)
        return self

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected input (B, C, H, W), got shape {tuple(x.shape)}")
        m = self.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"height and width must be multiples of {m} for this model "
                f"(pixel_unshuffle {self.factor}), got {x.shape[2]}x{x.shape[3]}"
            )
        out = self.net(F.pixel_unshuffle(x, self.factor), timesteps, y)
        return F.pixel_shuffle(out, self.factor)

    # state dict without the "net." prefix
    def state_dict(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(create_model keywords, wrapper options)`` from a saved or training config."""
    cfg = dict(config)
    wrap = {k: cfg.pop(k) for k in WRAPPER_KEYS if k in cfg}
    if wrap.get("pixel_unshuffle") in (None, 0, 1):
        wrap.pop("pixel_unshuffle", None)
    if not wrap.get("dc_prior"):
        wrap.pop("dc_prior", None)
    return cfg, wrap


def apply_wrapper(model: nn.Module, wrap: Mapping[str, Any], dc_mean: torch.Tensor | None = None,
                  dc_cov: torch.Tensor | None = None, alphas_cumprod: torch.Tensor | None = None) -> nn.Module:
    """``model`` wrapped as the options returned by :func:`split_config` say (or as is):
    first :class:`DCPriorUNet` (with the given prior; placeholders to be filled by
    ``load_state_dict`` otherwise), then :class:`PixelUnshuffleUNet`."""
    if wrap.get("dc_prior"):
        model = DCPriorUNet(model, dc_mean, dc_cov, alphas_cumprod)
    factor = wrap.get("pixel_unshuffle")
    if factor and int(factor) > 1:
        model = PixelUnshuffleUNet(model, int(factor))
    return model


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``create_model`` for a config that may carry wrapper keys (weights uninitialised
    for the wrappers' buffers until ``load_state_dict``)."""
    cfg, wrap = split_config(config)
    return apply_wrapper(create_model(**cfg), wrap)


def load_saved(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> nn.Module:
    """Like :func:`blinddps.models.checkpoints.load_saved_model`, for configs with wrapper
    keys (``pixel_unshuffle``, ``dc_prior``); plain UNets load exactly as there."""
    from .checkpoints import _check_keys, _pair, load_model, load_state_dict, read_saved_config

    weights, _ = _pair(path)
    config, metadata = read_saved_config(path)
    cfg, wrap = split_config(config)
    if not wrap:
        model = load_model(weights, cfg, device=device)
    else:
        sd = load_state_dict(weights)
        net = create_model(**cfg)
        _check_keys(net, {k: v for k, v in sd.items() if not k.startswith("dc_prior.")}, str(weights))
        model = apply_wrapper(net, wrap)
        model.load_state_dict(sd, strict=True)
        model = model.to(device)
    model = model.eval()
    model.metadata = metadata  # type: ignore[attr-defined]
    return model
