"""Tiny UNet settings shared by the tests that build random-weight priors."""

TINY = dict(num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
            attention_resolutions="", num_heads=1, num_head_channels=-1,
            use_scale_shift_norm=True, resblock_updown=True, dropout=0.0)
