"""Evaluation: image, kernel and tilt metrics, built-in evaluation images, the
benchmark runner and its reports. Exports load on first use (``blinddps evaluate
--help`` needs no torch)."""
from __future__ import annotations

from .._lazy import lazy_exports

_HOME = {
    **{n: "datasets" for n in ("IMAGE_SETS", "available_images", "load_images")},
    **{n: "metrics" for n in ("aligned_psnr", "aligned_ssim", "blob_floor_mnc", "gaussian_blob",
                              "kernel_mse_aligned", "lpips_available", "mnc", "psnr", "ssim", "tilt_rmse")},
    **{n: "runner" for n in ("METHODS", "EvalResult", "degrade", "evaluate", "read_results")},
    **{n: "tracks" for n in ("evaluate_tracks",)},
    **{n: "levin_runner" for n in ("evaluate_levin",)},
}
__getattr__ = lazy_exports(__name__, _HOME, globals())

__all__ = sorted(_HOME)
