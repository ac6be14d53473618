"""Noise schedules, respacing and the closed-form diffusion formulas."""
from .schedule import DiffusionSchedule, cosine_betas, linear_betas, named_betas, space_timesteps

__all__ = ["DiffusionSchedule", "cosine_betas", "linear_betas", "named_betas", "space_timesteps"]
