"""Priors on the sampled variables: a diffusion model or a flat prior."""
from .base import DiffusionPrior, FlatPrior, Prior, PriorOutput

__all__ = ["DiffusionPrior", "FlatPrior", "Prior", "PriorOutput"]
