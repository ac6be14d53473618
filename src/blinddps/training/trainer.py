"""Training a diffusion prior (kernel, tilt map or image) from a YAML config.

``train(config, out_dir)`` builds the guided-diffusion UNet of ``config['model']``,
draws batches from the task's source (:mod:`blinddps.training.data`), and minimises
guided-diffusion's hybrid loss (:func:`blinddps.diffusion.losses.training_losses`) at
uniformly drawn timesteps with AdamW, gradient clipping and an EMA of the weights
(bf16 autocast on CUDA only). It checkpoints to ``out_dir/checkpoint.pt`` (plain
tensors and containers: ``torch.load(..., weights_only=True)`` reads it) and resumes
from there; a run stops cleanly after ``steps`` or ``max_minutes``. At the end it
exports the EMA weights with :func:`blinddps.models.save_model`
(``out_dir/NAME.safetensors`` + ``NAME.yaml`` with the training config and final
loss), a loss curve ``loss.png``, a grid of ancestral DDPM samples ``samples.png``
and a grid of training examples ``data.png``.

``pixel_unshuffle: f`` trains the network on ``pixel_unshuffle(x, f)`` (``f²×``
channels at ``1/f`` resolution): the same diffusion, a cheaper network. The exported
model is wrapped (:class:`blinddps.models.wrappers.PixelUnshuffleUNet`) so that it is
applied to full-resolution input transparently; its YAML config carries
``pixel_unshuffle: f`` beside the inner UNet's keywords.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F

from ..diffusion.losses import training_losses
from ..diffusion.schedule import DiffusionSchedule
from ..models.unet import UNetModel, create_model
from ..models.wrappers import DCPriorUNet, apply_wrapper, estimate_dc_prior
from .data import BatchSource, build_source

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainConfigError",
    "train",
    "load_config",
    "ddpm_sample",
    "to_display",
    "save_grid",
    "save_loss_curve",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"
_TASK_CHANNELS = {"kernel": 1, "tilt": 2, "image": 3}
_TRANSFORMS = {"kernel": "kernel_simplex", "tilt": {"name": "scale", "scale": 2.5}, "image": "identity"}


class TrainConfigError(ValueError):
    """A training config is invalid. The message is one line."""


@dataclass
class TrainConfig:
    """Everything a training run needs; YAML files in ``configs/train/`` hold these keys.

    ``model``: guided-diffusion ``create_model`` keywords (``in_channels`` is filled in
    from the task and ``pixel_unshuffle`` when none of ``in_channels`` / ``grayscale`` /
    ``twochan`` is given). ``data``: keyword arguments of the task's source
    (``KernelSource``, ``TiltSource``, ``ImageFolderSource``).
    """

    name: str = "prior"
    task: str = "kernel"
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    pixel_unshuffle: int = 1
    noise_schedule: str = "linear"
    num_timesteps: int = 1000
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # or "cosine" (to min_lr_ratio · lr at `steps`)
    min_lr_ratio: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    vb_scale: float | None = None  # None: num_timesteps / 1000 (RESCALED_MSE)
    dc_weight: float = 0.0  # weight of the DC-error term (see diffusion.losses)
    dc_prior: bool = False  # wrap the UNet in models.wrappers.DCPriorUNet (Gaussian prior on channel means)
    dc_samples: int = 2048  # training samples to estimate that prior from
    steps: int = 10000
    max_minutes: float | None = None
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0
    seed: int = 0
    threads: int | None = None
    sample_count: int = 16
    sample_steps: int = 100
    transform: Any = None  # stored in the exported YAML for the prior loader; default per task
    init_from: str | None = None  # start from these weights ("shipped:NAME" or a .safetensors path) instead of random
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainConfigError(f"unknown training config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls(**dict(d))
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    def validate(self) -> None:
        if self.task not in _TASK_CHANNELS:
            raise TrainConfigError(f"task must be 'kernel', 'tilt' or 'image', got {self.task!r}")
        if not isinstance(self.model, dict) or not self.model:
            raise TrainConfigError("the config needs a 'model:' section (guided-diffusion create_model keywords)")
        if "pixel_unshuffle" in self.model:
            raise TrainConfigError("put pixel_unshuffle at the top level of the training config, not under model:")
        if int(self.pixel_unshuffle) < 1:
            raise TrainConfigError(f"pixel_unshuffle must be >= 1, got {self.pixel_unshuffle}")
        for key in ("batch_size", "steps", "num_timesteps", "sample_steps", "checkpoint_every"):
            if int(getattr(self, key)) < 1:
                raise TrainConfigError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise TrainConfigError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise TrainConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        top = _top_channels(self.model)
        if top is not None and top <= 32:
            warnings.warn(
                f"GroupNorm32 on the UNet's {top} top-level channels is an instance norm: the network "
                "cannot see its input's mean (DC) level and samples drift (grey kernel backgrounds, "
                "2x2-periodic patterns with pixel_unshuffle); use num_channels * channel_mult[0] >= 64",
                stacklevel=3,
            )

    # the inner UNet's keywords
    def unet_config(self) -> dict[str, Any]:
        cfg = dict(self.model)
        f = int(self.pixel_unshuffle)
        want = _TASK_CHANNELS[self.task] * f * f
        if not any(cfg.get(k) for k in ("in_channels", "grayscale", "twochan")):
            cfg["in_channels"] = want
        got = int(cfg["in_channels"]) if cfg.get("in_channels") else (1 if cfg.get("grayscale") else 2)
        if got != want:
            raise TrainConfigError(
                f"model in_channels is {got} but task {self.task!r} with pixel_unshuffle {f} needs {want}"
            )
        return cfg


def _top_channels(model: Mapping[str, Any]) -> int | None:
    """``num_channels * channel_mult[0]`` (the channels of the UNet's first and last blocks)."""
    from ..models.unet import parse_channel_mult

    try:
        mult = parse_channel_mult(model.get("channel_mult", ""), int(model["image_size"]))
        return int(mult[0] * int(model["num_channels"]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    finished: bool  # reached `steps` (False: stopped by max_minutes; resume to go on)
    final_loss: float
    final_mse: float
    wall_minutes: float  # all runs so far
    weights: Path | None


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise TrainConfigError(f"training config {p} not found")
    with open(p, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise TrainConfigError(f"{p}: expected a mapping of training options")
    return TrainConfig.from_dict(d)


def _as_config(config: "TrainConfig | Mapping[str, Any] | str | os.PathLike") -> TrainConfig:
    if isinstance(config, TrainConfig):
        config.validate()
        return copy.deepcopy(config)
    if isinstance(config, Mapping):
        return TrainConfig.from_dict(config)
    return load_config(config)


# ---------------------------------------------------------------------------- sampling
@torch.no_grad()
def ddpm_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: DiffusionSchedule,
    shape: tuple[int, ...],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    clip: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Plain ancestral DDPM sampling (learned variance when the model returns 2C channels)."""
    from tqdm.auto import tqdm

    x = torch.randn(shape, generator=generator).to(device)
    c = shape[1]
    for i in tqdm(range(schedule.num_steps - 1, -1, -1), desc="sampling", leave=False, disable=not progress):
        idx = torch.full((shape[0],), i, dtype=torch.long, device=device)
        out = model(x, schedule.model_timesteps(idx)).float()
        eps, var = (out[:, :c], out[:, c:]) if out.shape[1] == 2 * c else (out, None)
        x0 = schedule.predict_x0(x, idx, eps)
        if clip:
            x0 = x0.clamp(-1, 1)
        mean = schedule.posterior_mean(x0, x, idx)
        if i == 0:  # no noise at the last step
            x = mean
            break
        log_var = schedule.posterior_log_variance(idx, x, var)
        x = mean + torch.exp(0.5 * log_var) * torch.randn(shape, generator=generator).to(device)
    return x.clamp(-1, 1) if clip else x


# ---------------------------------------------------------------------------- pictures
def to_display(x: torch.Tensor, task: str, tilt_gain: float = 2.5) -> torch.Tensor:
    """(B, C, H, W) diffusion-space tensor → (B, 3, H, W) in [0, 1] for a picture.

    Kernels: (x+1)/2, each scaled to its maximum, shown bright on black; tilt maps:
    horizontal shift in red, vertical in green, ``0.5 + 0.5·clip(tilt_gain·x)`` (with
    the Scale(2.5) transform and the default gain, ±1 px is full scale; grey = no
    shift); images: (x+1)/2.
    """
    x = x.detach().float().cpu()
    if task == "kernel":
        k = ((x[:, :1] + 1) / 2).clamp(0, 1)
        k = k / k.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)
        return k.expand(-1, 3, -1, -1)
    if task == "tilt":
        r, g = (0.5 + 0.5 * (tilt_gain * x[:, :2]).clamp(-1, 1)).unbind(1)
        return torch.stack([r, g, torch.full_like(r, 0.5)], 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return ((x[:, :3] + 1) / 2).clamp(0, 1)


def save_grid(images: torch.Tensor, path: str | os.PathLike, ncol: int | None = None, pad: int = 2,
              upscale: int | None = None) -> Path:
    """Save (B, 3, H, W) in [0, 1] as a PNG grid (nearest upscaling of small tiles)."""
    from PIL import Image

    b, _, h, w = images.shape
    if upscale is None:
        upscale = max(1, 96 // max(h, w))
    if upscale > 1:
        images = images.repeat_interleave(upscale, 2).repeat_interleave(upscale, 3)
        h, w = h * upscale, w * upscale
    ncol = ncol or math.ceil(math.sqrt(b))
    nrow = math.ceil(b / ncol)
    canvas = torch.ones(3, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(b):
        r, c = divmod(i, ncol)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    arr = (canvas.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype("uint8")
    path = Path(path)
    Image.fromarray(arr).save(path)
    return path


def _smooth(v: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, a in enumerate(v):
        acc += a
        if i >= window:
            acc -= v[i - window]
        out.append(acc / min(i + 1, window))
    return out


def save_loss_curve(losses: list[float], path: str | os.PathLike, title: str = "", mse: list[float] | None = None,
                    size: tuple[int, int] = (640, 360)) -> Path:
    """A log-scale training-loss curve drawn with Pillow: raw loss (grey), its moving
    average (blue) and the ε-MSE's moving average (orange) when given."""
    from PIL import Image, ImageDraw

    W, H = size
    left, right, top, bottom = 58, 14, 26, 36
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((left, 6), title, fill="black")
    n = len(losses)
    if n == 0:
        d.text((left, H // 2), "no steps yet", fill="black")
        img.save(path)
        return Path(path)
    window = max(1, min(200, n // 20))
    series = [(losses, (200, 200, 200)), (_smooth(losses, window), (31, 119, 180))]
    if mse:
        series.append((_smooth(mse, window), (255, 127, 14)))
    vals = [max(v, 1e-8) for s, _ in series for v in s]
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    pw, ph = W - left - right, H - top - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (i / max(n - 1, 1)) * pw
        y = top + (hi - math.log10(max(v, 1e-8))) / (hi - lo) * ph
        return x, y

    d.rectangle([left, top, left + pw, top + ph], outline="black")
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= math.log10(v) <= hi:
                _, y = xy(0, v)
                d.line([left - 4, y, left, y], fill="black")
                d.line([left + 1, y, left + pw - 1, y], fill=(235, 235, 235))
                d.text((4, y - 6), f"{v:.3g}", fill="black")
    for k in range(6):
        i = round(k * (n - 1) / 5)
        x, _ = xy(i, 1.0)
        d.line([x, top + ph, x, top + ph + 4], fill="black")
        d.text((x - 10, top + ph + 6), str(i + 1), fill="black")
    d.text((left + pw // 2 - 12, H - 14), "step", fill="black")
    stride = max(1, n // (2 * pw))
    for s, color in series:
        pts = [xy(i, s[i]) for i in range(0, n, stride)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=1 if color == (200, 200, 200) else 2)
    legend = [("loss", (200, 200, 200)), (f"loss, mean of {window}", (31, 119, 180))]
    if mse:
        legend.append(("eps-MSE, mean", (255, 127, 14)))
    for j, (label, color) in enumerate(legend):
        x = left + pw - 150
        y = top + 6 + 13 * j
        d.line([x, y + 6, x + 16, y + 6], fill=color, width=2)
        d.text((x + 20, y), label, fill="black")
    img.save(path)
    return Path(path)


# ---------------------------------------------------------------------------- training
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _lr_at(cfg: TrainConfig, step: int) -> float:
    lr = float(cfg.lr)
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))
    return lr


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    e = [p for p in ema.parameters()]
    m = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(e, m, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def _plain(v: Any) -> Any:
    """Plain YAML values (str subclasses, tuples, numpy/torch scalars → built-ins)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _final_stat(v: list[float], n: int = 200) -> float:
    if not v:
        return float("nan")
    tail = v[-n:]
    return float(sum(tail) / len(tail))


def _estimate_dc(source: BatchSource, n: int, factor: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian prior of the per-channel means of ``n`` training samples (pixel-unshuffled
    by ``factor``), drawn with a generator of their own so that training's data stream
    does not depend on it."""
    saved = source.generator
    source.generator = torch.Generator().manual_seed(seed)
    try:
        chunks = []
        for start in range(0, n, 256):
            x = source.sample(min(256, n - start))
            chunks.append(F.pixel_unshuffle(x, factor) if factor > 1 else x)
    finally:
        source.generator = saved
    return estimate_dc_prior(torch.cat(chunks))


def _checkpoint_compatible(saved: Mapping[str, Any], cfg: TrainConfig) -> str | None:
    for key in ("task", "model", "pixel_unshuffle", "noise_schedule", "num_timesteps", "dc_prior"):
        if saved.get(key, getattr(TrainConfig, key, None)) != getattr(cfg, key):
            return key
    return None


def _init_from(net: torch.nn.Module, ema: torch.nn.Module, spec: str) -> None:
    """Load a saved prior's UNet weights into ``net`` and ``ema`` (fine-tuning). The
    architecture must match; a saved DC-prior wrapper's buffers are dropped (the
    wrapper is rebuilt from this run's data)."""
    from safetensors.torch import load_file

    from ..presets import model_file

    path = model_file(spec, published=False)
    if path is None or not Path(path).is_file() or Path(path).suffix != ".safetensors":
        raise TrainConfigError(f"init_from: no .safetensors weights found for {spec!r}")
    weights = {k: v for k, v in load_file(str(path)).items() if not k.startswith("dc_prior.")}
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise TrainConfigError(f"init_from {spec!r}: the weights do not fit this model "
                               f"({str(exc).splitlines()[0]})") from None
    ema.load_state_dict(net.state_dict())


def train(
    config: "TrainConfig | Mapping[str, Any] | str | os.PathLike",
    out_dir: str | os.PathLike,
    resume: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    data_folder: str | os.PathLike | None = None,
    export: bool = True,
) -> TrainResult:
    """Train (or resume training) the prior described by ``config`` into ``out_dir``.

    ``config``: a :class:`TrainConfig`, a dict of its fields, or a YAML path.
    ``resume``: continue from ``out_dir/checkpoint.pt`` if present (the model config
    must match), else start afresh. ``data_folder`` overrides ``data.folder`` (image
    task). Stops after ``config.steps`` total steps or ``config.max_minutes`` of this
    run, whichever first; checkpoints, and (``export``) writes the EMA model, loss
    curve and sample grid. Returns a :class:`TrainResult`.
    """
    from tqdm.auto import tqdm

    cfg = _as_config(config)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    f = int(cfg.pixel_unshuffle)

    data_gen = torch.Generator().manual_seed(int(cfg.seed))
    train_gen = torch.Generator().manual_seed(int(cfg.seed) + 1)
    source: BatchSource = build_source(cfg.task, cfg.data, generator=data_gen, data_folder=data_folder)
    if source.height % f or source.width % f:
        raise TrainConfigError(f"data size {source.height}x{source.width} is not divisible by pixel_unshuffle {f}")

    torch.manual_seed(int(cfg.seed))  # parameter initialisation only
    net: UNetModel = create_model(**cfg.unet_config()).to(device)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
    schedule = DiffusionSchedule.create(None, noise_schedule=cfg.noise_schedule, num_timesteps=int(cfg.num_timesteps))

    step, losses, mses, elapsed_before = 0, [], [], 0.0
    ckpt_path = out / CHECKPOINT_NAME
    state = None
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        bad = _checkpoint_compatible(state.get("config", {}), cfg)
        if bad:
            raise TrainConfigError(
                f"{ckpt_path} was trained with a different {bad!r}; use --no-resume or another --out"
            )
    dc = None
    if cfg.dc_prior:
        if state is not None and "dc_prior" in state:
            dc = (state["dc_prior"]["mean"], state["dc_prior"]["cov"])
        else:
            dc = _estimate_dc(source, int(cfg.dc_samples), f, int(cfg.seed) + 3)
        module: torch.nn.Module = DCPriorUNet(net, dc[0], dc[1], torch.as_tensor(schedule.alphas_cumprod)).to(device)
    else:
        module = net
    if state is None and cfg.init_from:
        _init_from(net, ema, str(cfg.init_from))
    if state is not None:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        losses = [float(v) for v in state["losses"].tolist()]
        mses = [float(v) for v in state["mses"].tolist()]
        elapsed_before = float(state["elapsed_seconds"])
        data_gen.set_state(state["rng"]["data"])
        train_gen.set_state(state["rng"]["train"])

    def save_checkpoint() -> None:
        state = {
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in ema.state_dict().items()},
            "optimizer": opt.state_dict(),
            "step": step,
            "losses": torch.tensor(losses, dtype=torch.float64),
            "mses": torch.tensor(mses, dtype=torch.float64),
            "elapsed_seconds": elapsed_before + (time.monotonic() - t_start),
            "rng": {"data": data_gen.get_state(), "train": train_gen.get_state()},
            "config": cfg.to_dict(),
        }
        if dc is not None:
            state["dc_prior"] = {"mean": dc[0], "cov": dc[1]}
        tmp = ckpt_path.with_suffix(".pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)

    t_start = time.monotonic()
    last_ckpt = t_start
    budget = float(cfg.max_minutes) * 60.0 if cfg.max_minutes else math.inf
    net.train()
    bar = tqdm(total=int(cfg.steps), initial=step, desc=f"train {cfg.name}", disable=not progress,
               dynamic_ncols=True, smoothing=0.05)
    while step < int(cfg.steps) and time.monotonic() - t_start < budget:
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        x0 = source.sample(int(cfg.batch_size)).to(device)
        if f > 1:
            x0 = F.pixel_unshuffle(x0, f)
        idx = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=train_gen).to(device)
        noise = torch.randn(x0.shape, generator=train_gen).to(device)
        terms = training_losses(module, schedule, x0, idx, noise, vb_scale=cfg.vb_scale, autocast_dtype=autocast_dtype,
                                dc_weight=float(cfg.dc_weight))
        loss = terms["loss"].mean()
        if not torch.isfinite(loss):
            save_checkpoint()
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower lr (checkpoint saved)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), float(cfg.grad_clip))
        opt.step()
        step += 1
        _ema_update(ema, net, min(float(cfg.ema_decay), (1 + step) / (10 + step)))
        losses.append(float(loss.item()))
        mses.append(float(terms["mse"].mean().item()))
        bar.update(1)
        if step % 10 == 0 or step == 1:
            bar.set_postfix(loss=f"{_final_stat(losses, 50):.4f}", mse=f"{_final_stat(mses, 50):.4f}")
        now = time.monotonic()
        if step % int(cfg.checkpoint_every) == 0 or now - last_ckpt > 60.0 * float(cfg.checkpoint_minutes):
            save_checkpoint()
            last_ckpt = now
    bar.close()
    save_checkpoint()
    wall_minutes = (elapsed_before + time.monotonic() - t_start) / 60.0
    finished = step >= int(cfg.steps)

    weights = None
    if export:
        weights = _export(cfg, out, ema, source, schedule, step, losses, mses, wall_minutes, finished, device,
                          progress, dc)
    return TrainResult(out, step, finished, _final_stat(losses), _final_stat(mses), wall_minutes, weights)


def _export(cfg: TrainConfig, out: Path, ema: UNetModel, source: BatchSource, schedule: DiffusionSchedule,
            step: int, losses: list[float], mses: list[float], wall_minutes: float, finished: bool,
            device: torch.device, progress: bool, dc: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    from ..models.checkpoints import save_model

    wrap = {"pixel_unshuffle": int(cfg.pixel_unshuffle), "dc_prior": dc is not None}
    model = apply_wrapper(ema.eval(), wrap, *(dc or (None, None)), torch.as_tensor(schedule.alphas_cumprod)).to(device)
    n_params = sum(p.numel() for p in ema.parameters())
    metadata = {
        "name": cfg.name,
        "task": cfg.task,
        "transform": cfg.transform if cfg.transform is not None else _TRANSFORMS[cfg.task],
        "data": source.describe(),
        "resolution": [source.height, source.width],
        "channels": source.channels,
        "parameters": int(n_params),
        "dc_prior": dc is not None,
        "pixel_unshuffle": int(cfg.pixel_unshuffle),
        "steps": int(step),
        "finished": bool(finished),
        "final_loss": round(_final_stat(losses), 6),
        "final_mse": round(_final_stat(mses), 6),
        "wall_minutes": round(wall_minutes, 2),
        "machine": f"{_cpu_name()}, {torch.get_num_threads()} thread(s)" if device.type == "cpu"
        else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "date": _dt.date.today().isoformat(),
        "training": cfg.to_dict(),
    }
    weights = save_model(model, out / cfg.name, metadata=_plain(metadata))
    save_loss_curve(losses, out / "loss.png", mse=mses if any(a != b for a, b in zip(losses, mses)) else None,
                    title=f"{cfg.name}: {step} steps, {wall_minutes:.1f} min, final loss {_final_stat(losses):.4f}")
    # samples with a generator of their own, so exporting never changes training's randomness
    gen = torch.Generator().manual_seed(int(cfg.seed) + 2)
    shape = (int(cfg.sample_count), source.channels, source.height, source.width)
    sample_sched = DiffusionSchedule.create(int(cfg.sample_steps), noise_schedule=cfg.noise_schedule,
                                            num_timesteps=int(cfg.num_timesteps))
    samples = ddpm_sample(model, sample_sched, shape, gen, device=device, progress=progress)
    save_grid(to_display(samples, cfg.task), out / "samples.png")
    state = source.generator.get_state()
    try:
        real = source.sample(int(cfg.sample_count))
    finally:
        source.generator.set_state(state)
    save_grid(to_display(real, cfg.task), out / "data.png")
    return weights
