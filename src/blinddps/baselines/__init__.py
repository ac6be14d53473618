"""Classical deconvolution baselines (numpy/scipy, CPU).

* :func:`wiener_deconvolve` — non-blind Wiener filter (circular, edge taper).
* :func:`tv_deconvolve` — non-blind isotropic-TV deconvolution (ADMM, exact for the
  project's zero-padded 'same' blur, unknown boundary).
* :func:`l0_blind_deblur` — blind deblurring with the L0 intensity-and-gradient prior
  (Pan et al., CVPR 2014 / TPAMI 2017), returning ``(image, kernel)``.

All take images in [-1, 1] (torch or numpy, ``(H,W)``, ``(C,H,W)`` or ``(B,C,H,W)``)
and kernels in the project's convention (cross-correlation, ``(k,k)`` or
``(B,1,k,k)``), and return the input's type and shape.
"""
from ._common import same_correlate
from .l0_blind import l0_blind_deblur
from .tv import tv_deconvolve
from .wiener import estimate_noise_sigma, wiener_deconvolve

__all__ = [
    "wiener_deconvolve",
    "tv_deconvolve",
    "l0_blind_deblur",
    "estimate_noise_sigma",
    "same_correlate",
]
