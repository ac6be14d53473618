"""Forward models and the unknowns they declare (see :mod:`blinddps.operators.base`)."""
from .base import ImageWindow, Operator, Unknown
from .blur import (
    BlindBlur,
    conv_same,
    conv_same_adjoint,
    conv_same_direct,
    conv_valid,
    conv_valid_adjoint,
    conv_valid_direct,
    gaussian_kernel,
    kernel_least_squares,
)
from .noise import GaussianNoise
from .turbulence import Turbulence, tilt_warp, tilt_warp_adjoint

__all__ = [
    "Operator",
    "ImageWindow",
    "Unknown",
    "BlindBlur",
    "Turbulence",
    "GaussianNoise",
    "conv_same",
    "conv_same_adjoint",
    "conv_same_direct",
    "conv_valid",
    "conv_valid_adjoint",
    "conv_valid_direct",
    "gaussian_kernel",
    "kernel_least_squares",
    "tilt_warp",
    "tilt_warp_adjoint",
]
