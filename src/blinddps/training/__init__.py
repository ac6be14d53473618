"""Training diffusion priors: data sources (generated kernels and tilt maps, image
folders), the trainer (hybrid loss, AdamW, EMA, resumable checkpoints, export) and the
``blinddps train`` subcommand."""
from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562), so that `blinddps train --help` need not load torch.
_HOME = {
    **{n: "data" for n in ("BatchSource", "DataError", "ImageFolderSource", "KernelSource", "TiltSource",
                           "build_source")},
    **{n: "trainer" for n in ("TrainConfig", "TrainConfigError", "TrainResult", "ddpm_sample", "load_config",
                              "save_grid", "save_loss_curve", "to_display", "train")},
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value

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
