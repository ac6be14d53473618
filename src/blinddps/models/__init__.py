"""Networks: the guided-diffusion-compatible UNet and safe checkpoint handling."""

from .checkpoints import (
    KNOWN_CHECKPOINTS,
    SHIPPED_DIR,
    CheckpointError,
    CheckpointInfo,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    find_checkpoint,
    list_shipped,
    load_model,
    load_saved_model,
    load_state_dict,
    read_saved_config,
    save_model,
)
from .unet import UNetModel, create_model, timestep_embedding

__all__ = [
    "UNetModel",
    "create_model",
    "timestep_embedding",
    "KNOWN_CHECKPOINTS",
    "SHIPPED_DIR",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "find_checkpoint",
    "list_shipped",
    "load_model",
    "load_saved_model",
    "load_state_dict",
    "read_saved_config",
    "save_model",
]
