"""Training diffusion priors: data sources (generated kernels and tilt maps, image
folders), the trainer (hybrid loss, AdamW, EMA, resumable checkpoints, export) and the
``blinddps train`` subcommand."""
from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use (PEP 562), so that `blinddps train --help` need not load torch.
_HOME = {
    **{n: "data" for n in ("BatchSource", "DataError", "ImageFolderSource", "KernelSource", "TiltSource",
                           "build_source")},
    **{n: "trainer" for n in ("TrainConfig", "TrainConfigError", "TrainResult", "ddpm_sample", "load_config",
                              "save_grid", "save_loss_curve", "to_display", "train")},
}

__getattr__ = lazy_exports(__name__, _HOME, globals())

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
