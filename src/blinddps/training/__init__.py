"""Training diffusion priors: data sources (generated kernels and tilt maps, image
folders), the trainer (hybrid loss, AdamW, EMA, resumable checkpoints, export) and the
``blinddps train`` subcommand."""
from .data import BatchSource, DataError, ImageFolderSource, KernelSource, TiltSource, build_source
from .trainer import (
    TrainConfig,
    TrainConfigError,
    TrainResult,
    ddpm_sample,
    load_config,
    save_grid,
    save_loss_curve,
    to_display,
    train,
)

__all__ = [
    "BatchSource",
    "DataError",
    "ImageFolderSource",
    "KernelSource",
    "TiltSource",
    "build_source",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "ddpm_sample",
    "load_config",
    "save_grid",
    "save_loss_curve",
    "to_display",
    "train",
]
