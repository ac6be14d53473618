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

Saved form (``save_model``): the ``.safetensors`` holds the *inner* UNet's state dict
with its usual keys (the wrapper adds no prefix), and the YAML config is the inner
UNet's ``create_model`` keywords plus ``pixel_unshuffle: f``. :func:`split_config`
separates the two, :func:`apply_wrapper` re-applies it after loading, and
:func:`build_model` / :func:`load_saved` do both.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .unet import UNetModel, create_model

__all__ = [
    "WRAPPER_KEYS",
    "PixelUnshuffleUNet",
    "split_config",
    "apply_wrapper",
    "build_model",
    "load_saved",
]

#: Config keys that name a wrapper rather than a ``create_model`` keyword.
WRAPPER_KEYS = ("pixel_unshuffle",)


class PixelUnshuffleUNet(nn.Module):
    """``net`` (a UNet on ``(B, C·f², H/f, W/f)``) applied at full resolution ``(B, C, H, W)``.

    ``state_dict`` / ``load_state_dict`` are the inner network's (same keys, no prefix),
    so the weights file of a wrapped model is a plain UNet checkpoint.
    """

    def __init__(self, net: UNetModel, factor: int) -> None:
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
    return cfg, wrap


def apply_wrapper(model: UNetModel, wrap: Mapping[str, Any]) -> nn.Module:
    """``model`` wrapped as the options returned by :func:`split_config` say (or as is)."""
    factor = wrap.get("pixel_unshuffle")
    if factor and int(factor) > 1:
        return PixelUnshuffleUNet(model, int(factor))
    return model


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``create_model`` for a config that may carry wrapper keys (``pixel_unshuffle``)."""
    cfg, wrap = split_config(config)
    return apply_wrapper(create_model(**cfg), wrap)


def load_saved(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> nn.Module:
    """Like :func:`blinddps.models.checkpoints.load_saved_model`, for configs with wrapper keys."""
    from .checkpoints import _pair, load_model, read_saved_config

    weights, _ = _pair(path)
    config, metadata = read_saved_config(path)
    cfg, wrap = split_config(config)
    model = apply_wrapper(load_model(weights, cfg, device=device), wrap).eval()
    model.metadata = metadata  # type: ignore[attr-defined]
    return model
