"""Tiny UNet settings shared by the tests that build random-weight priors."""
from pathlib import Path

TINY = dict(num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
            attention_resolutions="", num_heads=1, num_head_channels=-1,
            use_scale_shift_norm=True, resblock_updown=True, dropout=0.0)


def save_tiny_priors(folder: Path) -> tuple[Path, Path, Path]:
    """Seeded random-weight priors saved in ``folder``: image (3 channels, 16x16), kernel
    (8x8) and tilt (2 channels, 16x16); returns their paths."""
    import torch

    from blinddps.models.checkpoints import save_model
    from blinddps.models.unet import create_model

    torch.manual_seed(0)
    return (save_model(create_model(image_size=16, in_channels=3, **TINY), folder / "img"),
            save_model(create_model(image_size=8, grayscale=True, **TINY), folder / "ker"),
            save_model(create_model(image_size=16, in_channels=2, **TINY), folder / "tilt"))
