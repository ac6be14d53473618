"""Evaluation: image, kernel and tilt metrics (the benchmark runner lives beside)."""
from .metrics import (aligned_psnr, aligned_ssim, blob_floor_mnc, gaussian_blob,
                      kernel_mse_aligned, lpips_available, mnc, psnr, ssim, tilt_rmse)

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
]
