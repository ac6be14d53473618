"""Synthetic operator parameters: motion blur kernels (our trajectory generator, and a
held-out camera-shake family that nothing is trained or tuned on), Gaussian kernels, tilt maps.

All generators take an explicit ``generator`` (``torch.Generator`` or an ``int`` seed)
and never touch the global RNG. Kernels are ``(n, 1, k, k)``, non-negative, summing to
1, centred on the kernel centre ``(k - 1) / 2``; tilt maps are ``(n, 2, H, W)`` pixel
displacements (channel 0 horizontal, channel 1 vertical).
"""
from .kernels import (
    gaussian_kernels,
    kernel_centroid,
    kernel_covariance,
    kernel_support,
    load_kernel,
    make_generator,
    motion_kernels,
    save_kernel,
    trajectory_length,
)
from .shake import camera_shake_kernels
from .tilt import tilt_maps, turbulence_burst

__all__ = [
    "motion_kernels",
    "camera_shake_kernels",
    "gaussian_kernels",
    "tilt_maps",
    "turbulence_burst",
    "kernel_centroid",
    "kernel_covariance",
    "kernel_support",
    "trajectory_length",
    "save_kernel",
    "load_kernel",
    "make_generator",
]
