"""The photo pipeline (issue 20): real photographs of any size.

Kernel estimation at the scale where the kernel fits the kernel prior's window, on an
informative region, refined coarse-to-fine up to full resolution
(:mod:`.kernel`); full-resolution non-blind restoration with that kernel in the FFT
domain, unknown boundaries, clipped highlights left out of the data term, in tiles
(:mod:`.deconvolve`); linear light and clipping (:mod:`.color`); the whole run with
per-stage time and peak memory, and the check that falls back to the input when the
restoration fails (:mod:`.pipeline`). docs/photos.md describes it.
"""
from .color import clipped_mask, linear_to_srgb, srgb_to_linear
from .deconvolve import deconvolve
from .kernel import KernelEstimate, estimate_kernel
from .pipeline import PhotoSettings, deblur_photo, saturation_gain
from .region import informative_region

__all__ = ["deblur_photo", "PhotoSettings", "estimate_kernel", "KernelEstimate", "deconvolve",
           "informative_region", "saturation_gain", "srgb_to_linear", "linear_to_srgb", "clipped_mask"]
