"""A UNet that computes the same function as guided-diffusion's ``UNetModel``.

The module tree (and therefore every state-dict key and shape) follows the original
exactly, so the published checkpoints of guided-diffusion, DPS and BlindDPS
(``ffhq_10m.pt``, ``kernel_checkpoint.pt``, ``tilt_checkpoint.pt``) load with
``strict=True``. The forward pass reproduces the original's arithmetic:

* timestep embedding: sinusoidal, ``max_period=10000``, ``[cos, sin]`` halves;
* GroupNorm(32) computed in float32 whatever the activation dtype;
* residual blocks with optional scale-shift norm (``h = norm(h) * (1 + s) + b``)
  and optional up/down-sampling inside the block (nearest / 2×2 average pooling);
* multi-head self-attention with the legacy (heads, then q/k/v) or new (q/k/v, then
  heads) channel order.

Differences that do not change the function: attention uses
:func:`torch.nn.functional.scaled_dot_product_attention`; gradient checkpointing uses
:func:`torch.utils.checkpoint.checkpoint`; ``use_fp16`` is accepted but mixed precision
is left to ``torch.autocast``. The network is fully convolutional: any height and width
divisible by ``2 ** (len(channel_mult) - 1)`` work, not only ``image_size``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

__all__ = [
    "NUM_CLASSES",
    "DEFAULT_CONFIG",
    "timestep_embedding",
    "GroupNorm32",
    "Upsample",
    "Downsample",
    "ResBlock",
    "AttentionBlock",
    "QKVAttention",
    "QKVAttentionLegacy",
    "TimestepBlock",
    "TimestepEmbedSequential",
    "UNetModel",
    "create_model",
    "default_channel_mult",
    "parse_channel_mult",
    "parse_attention_resolutions",
]

NUM_CLASSES = 1000

#: ``create_model`` keywords and their defaults (guided-diffusion's, plus BlindDPS's
#: ``grayscale`` / ``twochan`` and this project's optional ``in_channels``).
DEFAULT_CONFIG: dict[str, Any] = {
    "image_size": None,
    "num_channels": None,
    "num_res_blocks": None,
    "channel_mult": "",
    "learn_sigma": False,
    "class_cond": False,
    "use_checkpoint": False,
    "attention_resolutions": "16",
    "num_heads": 1,
    "num_head_channels": -1,
    "num_heads_upsample": -1,
    "use_scale_shift_norm": False,
    "dropout": 0.0,
    "resblock_updown": False,
    "use_fp16": False,
    "use_new_attention_order": False,
    "grayscale": False,
    "twochan": False,
    "in_channels": None,
}
_REQUIRED = ("image_size", "num_channels", "num_res_blocks")


# --------------------------------------------------------------------------- helpers
def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings (B, dim) of (B,) timesteps, ``[cos | sin]``, in float32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that normalises in float32 (float64 stays float64) and casts back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        w = self.weight.to(dt) if self.weight is not None else None
        b = self.bias.to(dt) if self.bias is not None else None
        return F.group_norm(x.to(dt), self.num_groups, w, b, self.eps).to(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepBlock(nn.Module):
    """A module whose ``forward`` takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """``nn.Sequential`` that passes the embedding to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour 2× upsampling, optionally followed by a 3×3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2× downsampling: a stride-2 3×3 conv, or 2×2 average pooling (``op``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)
        else:
            if self.out_channels != channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _maybe_checkpoint(enabled: bool, fn, *args):
    if enabled and torch.is_grad_enabled():
        return _torch_checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding (guided-diffusion layout)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            nn.Conv2d(channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd: nn.Module = Upsample(channels, False)
            self.x_upd: nn.Module = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zero(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return _maybe_checkpoint(self.use_checkpoint, self._forward, x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(e, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention on (N, ch, T) tensors; returns (N, ch, T).

    q, k, v go to ``scaled_dot_product_attention`` as contiguous (N, 1, T, ch): given
    3-D or strided inputs it takes its reference path, which builds the T×T score
    matrix (653 MiB per block for a 512² image), while the 4-D contiguous form runs its
    fused kernel, memory linear in T (docs/benchmarks.md, issue 19)."""
    n, ch, t = q.shape
    q, k, v = (x.transpose(1, 2).reshape(n, 1, t, ch).contiguous() for x in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(ch), the original's (ch ** -0.25) on q and on k
    return out.reshape(n, t, ch).transpose(1, 2)


class QKVAttentionLegacy(nn.Module):
    """Attention on (B, heads·3·ch, T): split into heads first, then q, k, v."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs * self.n_heads, ch * 3, length).split(ch, dim=1)
        return _attend(q, k, v).reshape(bs, -1, length)


class QKVAttention(nn.Module):
    """Attention on (B, 3·heads·ch, T): split into q, k, v first, then heads."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = (t.reshape(bs * self.n_heads, ch, length) for t in qkv.chunk(3, dim=1))
        return _attend(q, k, v).reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection (``norm``, ``qkv``, ``proj_out``)."""

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        self.channels = channels
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"{channels} channels are not divisible by num_head_channels={num_head_channels}")
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"{channels} channels are not divisible by num_heads={self.num_heads}")
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttention(self.num_heads) if use_new_attention_order else QKVAttentionLegacy(self.num_heads)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _maybe_checkpoint(self.use_checkpoint, self._forward, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


# --------------------------------------------------------------------------- the UNet
class UNetModel(nn.Module):
    """guided-diffusion's UNet with timestep embedding and attention.

    Arguments mirror the original's ``UNetModel`` (2-D only): ``attention_resolutions``
    is a collection of *downsample factors* at which attention is used.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        model_channels: int,
        out_channels: int,
        num_res_blocks: int,
        attention_resolutions: Iterable[int],
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 2, 4, 8),
        conv_resample: bool = True,
        num_classes: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        attention_resolutions = tuple(attention_resolutions)
        channel_mult = tuple(channel_mult)
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = attention_resolutions
        self.dropout = dropout
        self.channel_mult = channel_mult
        self.num_classes = num_classes
        self.use_fp16 = use_fp16
        self.num_heads = num_heads
        self.num_head_channels = num_head_channels
        self.num_heads_upsample = num_heads_upsample
        self._use_checkpoint = use_checkpoint
        self.config: dict[str, Any] = {}
        self.learn_sigma = False

        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(ch_in: int, ch_out: int, **kw: bool) -> ResBlock:
            return ResBlock(
                ch_in, emb_dim, dropout, out_channels=ch_out,
                use_scale_shift_norm=use_scale_shift_norm, use_checkpoint=use_checkpoint, **kw,
            )

        def attn(ch_: int, heads: int) -> AttentionBlock:
            return AttentionBlock(
                ch_, num_heads=heads, num_head_channels=num_head_channels,
                use_checkpoint=use_checkpoint, use_new_attention_order=use_new_attention_order,
            )

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, out_channels=ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                skip = skip_chans.pop()
                layers = [res(ch + skip, int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), _zero(nn.Conv2d(input_ch, out_channels, 3, padding=1))
        )

    # ------------------------------------------------------------------ checkpointing
    @property
    def use_checkpoint(self) -> bool:
        return self._use_checkpoint

    @use_checkpoint.setter
    def use_checkpoint(self, value: bool) -> None:
        self.set_gradient_checkpointing(value)

    def set_gradient_checkpointing(self, enabled: bool = True) -> "UNetModel":
        """Switch gradient checkpointing of every res/attention block (same numbers, less memory)."""
        self._use_checkpoint = bool(enabled)
        for m in self.modules():
            if isinstance(m, (ResBlock, AttentionBlock)):
                m.use_checkpoint = bool(enabled)
        if self.config:
            self.config["use_checkpoint"] = bool(enabled)
        return self

    # ------------------------------------------------------------------ forward
    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float, y: torch.Tensor | None = None) -> torch.Tensor:
        """ε (and, with ``learn_sigma``, the variance values) for ``x`` (B, C, H, W) at ``timesteps`` (B,)."""
        if x.dim() != 4:
            raise ValueError(f"expected input (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        m = self.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(
                f"height and width must be multiples of {m} for this UNet, got {x.shape[2]}x{x.shape[3]}"
            )
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y if and only if the model is class-conditional")
        t = torch.as_tensor(timesteps, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"timesteps must have shape ({x.shape[0]},), got {tuple(t.shape)}")

        w = self.time_embed[0].weight
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(w.dtype))
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


# --------------------------------------------------------------------------- create_model
def default_channel_mult(image_size: int) -> tuple[float, ...]:
    table = {
        512: (0.5, 1, 1, 2, 2, 4, 4),
        256: (1, 1, 2, 2, 4, 4),
        128: (1, 1, 2, 3, 4),
        64: (1, 2, 3, 4),
    }
    if image_size not in table:
        raise ValueError(
            f"no default channel_mult for image_size={image_size} (defaults exist for 512, 256, 128, 64); "
            "give channel_mult, e.g. '1,2,2'"
        )
    return table[image_size]


def _number(s: Any) -> float | int:
    v = float(s)
    return int(v) if v.is_integer() else v


def parse_channel_mult(channel_mult: Any, image_size: int) -> tuple[float | int, ...]:
    """``''`` → the default for ``image_size``; ``'1,2,2'`` or a sequence → a tuple."""
    if channel_mult is None or channel_mult == "":
        return default_channel_mult(image_size)
    if isinstance(channel_mult, str):
        parts = [p for p in channel_mult.replace(" ", "").split(",") if p]
    elif isinstance(channel_mult, (int, float)):
        parts = [channel_mult]
    else:
        parts = list(channel_mult)
    try:
        out = tuple(_number(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"channel_mult must be like '1,2,2' or (1, 2, 2), got {channel_mult!r}") from None
    if not out or any(m <= 0 for m in out):
        raise ValueError(f"channel_mult must be positive numbers, got {channel_mult!r}")
    return out


def parse_attention_resolutions(attention_resolutions: Any, image_size: int) -> tuple[int, ...]:
    """Resolutions (``'16,8'``, ``16`` or a sequence) → downsample factors ``image_size // res``."""
    if attention_resolutions is None or attention_resolutions == "":
        return ()
    if isinstance(attention_resolutions, str):
        parts = [p for p in attention_resolutions.replace(" ", "").split(",") if p]
    elif isinstance(attention_resolutions, int):
        parts = [attention_resolutions]
    else:
        parts = list(attention_resolutions)
    try:
        return tuple(image_size // int(p) for p in parts)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(
            f"attention_resolutions must be like '16,8' or 16, got {attention_resolutions!r}"
        ) from None


def _yaml_friendly(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_yaml_friendly(i) for i in v]
    return v


def create_model(**kw: Any) -> UNetModel:
    """Build the UNet from guided-diffusion's ``create_model`` keywords.

    Keywords (defaults as in the original): ``image_size``, ``num_channels``,
    ``num_res_blocks`` (required), ``channel_mult=''``, ``learn_sigma=False``,
    ``class_cond=False``, ``use_checkpoint=False``, ``attention_resolutions='16'``,
    ``num_heads=1``, ``num_head_channels=-1``, ``num_heads_upsample=-1``,
    ``use_scale_shift_norm=False``, ``dropout=0``, ``resblock_updown=False``,
    ``use_fp16=False``, ``use_new_attention_order=False``; BlindDPS's
    ``grayscale`` (1 channel) and ``twochan`` (2 channels), otherwise 3; and
    ``in_channels`` to set the channel count explicitly. ``learn_sigma`` doubles the
    output channels. Weights are not loaded here: see
    :func:`blinddps.models.checkpoints.load_model`.
    """
    if "model_path" in kw:
        raise ValueError(
            "create_model does not load weights (got model_path); use "
            "blinddps.models.load_model(path, config) instead"
        )
    unknown = sorted(set(kw) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(
            f"unknown UNet config keyword(s): {', '.join(unknown)}; known: {', '.join(DEFAULT_CONFIG)}"
        )
    missing = [k for k in _REQUIRED if kw.get(k) is None]
    if missing:
        raise ValueError(f"UNet config is missing required keyword(s): {', '.join(missing)}")
    cfg = {**DEFAULT_CONFIG, **kw}

    image_size = int(cfg["image_size"])
    channel_mult = parse_channel_mult(cfg["channel_mult"], image_size)
    attention_ds = parse_attention_resolutions(cfg["attention_resolutions"], image_size)
    if cfg["in_channels"] is not None:
        in_ch = int(cfg["in_channels"])
        if in_ch < 1:
            raise ValueError(f"in_channels must be positive, got {in_ch}")
    elif cfg["grayscale"]:
        in_ch = 1
    elif cfg["twochan"]:
        in_ch = 2
    else:
        in_ch = 3
    learn_sigma = bool(cfg["learn_sigma"])
    out_ch = in_ch * 2 if learn_sigma else in_ch

    model = UNetModel(
        image_size=image_size,
        in_channels=in_ch,
        model_channels=int(cfg["num_channels"]),
        out_channels=out_ch,
        num_res_blocks=int(cfg["num_res_blocks"]),
        attention_resolutions=attention_ds,
        dropout=float(cfg["dropout"]),
        channel_mult=channel_mult,
        num_classes=NUM_CLASSES if cfg["class_cond"] else None,
        use_checkpoint=bool(cfg["use_checkpoint"]),
        use_fp16=bool(cfg["use_fp16"]),
        num_heads=int(cfg["num_heads"]),
        num_head_channels=int(cfg["num_head_channels"]),
        num_heads_upsample=int(cfg["num_heads_upsample"]),
        use_scale_shift_norm=bool(cfg["use_scale_shift_norm"]),
        resblock_updown=bool(cfg["resblock_updown"]),
        use_new_attention_order=bool(cfg["use_new_attention_order"]),
    )
    model.learn_sigma = learn_sigma
    model.config = {k: _yaml_friendly(v) for k, v in cfg.items()}
    return model
