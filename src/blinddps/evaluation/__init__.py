"""Evaluation: image, kernel and tilt metrics, built-in evaluation images, the
benchmark runner and its reports."""
from .datasets import IMAGE_SETS, available_images, load_images
from .metrics import (aligned_psnr, aligned_ssim, blob_floor_mnc, gaussian_blob,
                      kernel_mse_aligned, lpips_available, mnc, psnr, ssim, tilt_rmse)
from .runner import METHODS, EvalResult, degrade, evaluate, read_results

__all__ = [
    "psnr",
    "ssim",
    "aligned_psnr",
    "aligned_ssim",
    "mnc",
    "kernel_mse_aligned",
    "blob_floor_mnc",
    "gaussian_blob",
    "tilt_rmse",
    "lpips_available",
    "evaluate",
    "degrade",
    "read_results",
    "EvalResult",
    "METHODS",
    "load_images",
    "available_images",
    "IMAGE_SETS",
]
