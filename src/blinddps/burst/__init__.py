"""Multi-frame turbulence (bursts): N frames of one static scene, one image.

``solve_burst(frames)`` restores the scene; ``FramePrior`` runs a prior trained on
single values over a per-frame unknown. See docs/turbulence.md.
"""
from .frames import FramePrior, FrameTransform
from .solve import DEFAULT_PRESET, as_burst, solve_burst

__all__ = ["solve_burst", "as_burst", "FramePrior", "FrameTransform", "DEFAULT_PRESET"]
