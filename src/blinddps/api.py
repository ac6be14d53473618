"""The Python entry point: ``blinddps.solve(y, preset=..., **overrides)``."""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .inputs import as_measurement
from .operators import ImageWindow
from .memory import check_memory
from .presets import (build_operator, build_variables, check_override_keys, check_prior_shapes, load_preset, merge,
                      sampling_counts, validate_preset)
from .sampling import IMAGE, combine_samples, proximal_options, sample, sample_proximal


@dataclass
class Solution:
    """A solved blind inverse problem.

    ``image`` is (B, C, H, W) in [-1, 1] — the posterior mean over samples when
    ``num_samples > 1`` — and ``image_std`` its per-pixel standard deviation.
    ``params`` holds each estimated or fixed operator parameter in physical units
    (a kernel sums to 1): for ``num_samples > 1`` the mean over the samples, like the
    image (a mean of kernels is still a kernel), or what the prior's ``combine`` rule
    makes of them (``agreement``: blinddps.sampling.combine), with every sample's value in
    ``param_samples`` (B, num_samples, ...).
    """

    image: torch.Tensor
    params: dict[str, torch.Tensor]
    residual_rms: torch.Tensor
    settings: dict[str, Any]
    timings: dict[str, float]
    image_std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    param_samples: dict[str, torch.Tensor] = field(default_factory=dict)
    trajectory: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _seed_for(seed: int, index: int, sample: int) -> int:
    return int(np.random.SeedSequence([seed, index, sample]).generate_state(1, dtype=np.uint64)[0] >> 1)


def resolve_num_samples(cfg: dict, num_samples: int | None) -> int:
    """The posterior samples per measurement: ``num_samples``, else the preset's (else
    1); a one-line ValueError unless a positive int."""
    if num_samples is None:
        _, num_samples = sampling_counts(cfg)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    return int(num_samples)


def _pad_amount(size: int, multiple: int) -> int:
    return (-size) % multiple


def prior_multiple(variables) -> int:
    """The factor the image size must be divisible by for the image prior's UNet."""
    return int(getattr(getattr(variables[IMAGE].prior, "model", None), "size_multiple", 1))


def solve(
    y: torch.Tensor | np.ndarray,
    preset: str | dict = "motion_deblur",
    *,
    steps: int | str | None = None,
    seed: int | list[int] = 0,
    device: str | torch.device = "cpu",
    num_samples: int | None = None,
    fixed: dict[str, torch.Tensor] | None = None,
    models: dict[str, str] | None = None,
    return_trajectory: int = 0,
    amp: bool = False,
    reference: bool = False,
    progress: bool = False,
    callback=None,
    value_range: tuple[float, float] | None = None,
    **overrides: Any,
) -> Solution:
    """Solve ``y`` (B, C, H, W) or (C, H, W) in [-1, 1] with the preset's operator and priors.

    ``steps`` respaces every prior; ``num_samples`` posterior samples per measurement
    are drawn in one batch and averaged (default: the preset's ``num_samples``, else
    1); ``models`` replaces priors' networks by name (``{"image": "path.safetensors"}``);
    ``fixed`` holds unknowns at given physical values (non-blind); ``overrides``
    deep-merge into the preset
    (e.g. ``operator={"kernel_size": 15}``, ``priors={"kernel": {"step": {"scale": 3}}}``).
    ``return_trajectory=N`` keeps the x̂0 estimates every N steps. ``seed`` is one int
    (measurement b of the batch draws stream b of it) or one seed per measurement (each
    measurement then draws exactly the random numbers a batch-1 run with its seed draws,
    however the inputs are batched; the batched networks' float rounding differs, which
    the sampler can amplify in places: docs/reliability.md).
    ``reference=True`` runs the original implementation's choices for comparison: the
    spatial ``conv2d`` blur, one residual norm over the batch, the ζ_t = √ᾱ_t rule,
    fp32, and one measurement at a time (batch 1).

    Checked before any work (one-line ValueErrors, ``blinddps.inputs``): ``y``
    must be finite floats in [-1, 1] — give ``value_range=(lo, hi)`` for data on another
    scale (``(0, 255)`` for uint8, ``(0, 1)``); every keyword override must be a preset
    key, and the merged preset must pass the schema (``steps`` ≥ 1, ...); the memory
    the solve needs must fit in the free memory (``blinddps.memory``).
    """
    check_override_keys(overrides, "solve()")
    y = as_measurement(y, value_range)
    if reference:
        y = y.unsqueeze(0) if y.dim() == 3 else y
        ref = dict(operator={"backend": "direct"}, loss_reduction="batch", loss="norm", result="update")
        parts = [
            solve(y[b : b + 1], preset, steps=steps, seed=[seed[b]] if isinstance(seed, (list, tuple)) else seed,
                  device=device, num_samples=1,
                  fixed={k: v[b : b + 1] if torch.as_tensor(v).shape[0] > 1 else v for k, v in (fixed or {}).items()},
                  models=models, return_trajectory=return_trajectory, amp=False, progress=progress,
                  callback=callback, value_range=(-1, 1), **merge(overrides, ref))
            for b in range(y.shape[0])
        ]
        first = parts[0]
        first.image = torch.cat([p.image for p in parts])
        first.params = {k: torch.cat([p.params[k] for p in parts]) for k in first.params}
        first.residual_rms = torch.cat([p.residual_rms for p in parts])
        first.timings = {k: sum(p.timings[k] for p in parts) if k != "steps" else v for k, v in first.timings.items()}
        first.settings["reference"] = True
        return first
    t0 = time.perf_counter()
    cfg = load_preset(preset)
    over: dict[str, Any] = dict(overrides)
    if steps is not None:
        over["steps"] = steps
    if models:
        over.setdefault("priors", {})
        for name, path in models.items():
            over["priors"].setdefault(name, {})["model"] = str(path)
    cfg = merge(cfg, over)
    validate_preset(cfg, "solve()")
    num_samples = resolve_num_samples(cfg, num_samples)

    if y.dim() == 3:
        y = y.unsqueeze(0)
    if y.dim() != 4:
        raise ValueError(f"measurement must be (B, C, H, W) or (C, H, W), got shape {tuple(y.shape)}")
    device = torch.device(device)
    y = y.to(device=device, dtype=torch.float32)
    B, C, H, W = y.shape

    operator = build_operator(cfg["operator"])
    autocast = torch.bfloat16 if (amp and device.type == "cuda") else None
    variables = build_variables(cfg, device=device, autocast_dtype=autocast, operator=operator)
    if IMAGE not in variables:
        raise ValueError("the preset has no prior for 'image'")
    t_build = time.perf_counter()

    # channel count the image prior expects
    model = getattr(variables[IMAGE].prior, "model", None)
    want_c = getattr(model, "in_channels", C)
    y_in = y
    if want_c != C:
        if C == 1 and want_c == 3:
            y_in = y.expand(-1, 3, -1, -1)
        else:
            raise ValueError(f"the image prior takes {want_c} channels, the measurement has {C}")

    # pad so the image the prior sees has a size its UNet accepts
    mult = prior_multiple(variables)
    img_c, img_h, img_w = operator.image_shape(tuple(y_in.shape[1:]))
    ph, pw = _pad_amount(img_h, mult), _pad_amount(img_w, mult)
    if (ph or pw) and ImageWindow.applies(operator):
        # a 'valid' model: the extra rows/columns are unseen scene, no measurement is invented
        operator = ImageWindow(operator, (img_h, img_w), (img_h + ph, img_w + pw))
    elif ph or pw:
        mode = "reflect" if (ph < H and pw < W) else "replicate"
        y_in = F.pad(y_in, (0, pw, 0, ph), mode=mode)

    # every other prior must accept its variable's shape (e.g. the kernel size)
    check_prior_shapes(variables, operator, (img_c, img_h + ph, img_w + pw))

    # the memory it needs must be there (before the expensive part)
    padded_px = (img_h + ph) * (img_w + pw)
    image_sized = operator.unknown_shapes((img_c, img_h + ph, img_w + pw))
    networks = {n: (v.prior.model, padded_px if n == IMAGE else int(np.prod(image_sized.get(n, (1,))[-2:])))
                for n, v in variables.items() if getattr(v.prior, "model", None) is not None and n not in (fixed or {})}
    check_memory(networks, B, num_samples, (H, W), device)

    # one batch entry per (measurement, posterior sample)
    y_rep = y_in.repeat_interleave(num_samples, dim=0)
    if isinstance(seed, (list, tuple)):
        if len(seed) != B:
            raise ValueError(f"got {len(seed)} seeds for {B} measurements")
        streams = [(int(s), 0) for s in seed]
    else:
        streams = [(int(seed), b) for b in range(B)]
    generators = [
        torch.Generator().manual_seed(_seed_for(s, b, j)) for s, b in streams for j in range(num_samples)
    ]
    fixed_rep = {k: torch.as_tensor(v, device=device, dtype=torch.float32) for k, v in (fixed or {}).items()}
    fixed_rep = {k: (v.repeat_interleave(num_samples, 0) if v.shape[0] == B and B > 1 else v) for k, v in fixed_rep.items()}
    for k in fixed_rep:
        variables.pop(k, None)

    run = dict(generator=generators, callback=callback, trajectory_every=return_trajectory, progress=progress)
    solver = cfg.get("solver", "dps")
    if solver == "proximal":  # the fast solver: no gradient through the networks (docs/algorithm.md)
        result = sample_proximal(operator, y_rep, variables, fixed=fixed_rep, **proximal_options(cfg.get("proximal")),
                                 **run)
    elif solver == "dps":
        result = sample(
            operator,
            y_rep,
            variables,
            fixed=fixed_rep,
            method=cfg.get("method", "ddpm"),
            eta=float(cfg.get("eta", 1.0)),
            loss_reduction=cfg.get("loss_reduction", "sample"),
            loss=cfg.get("loss", "norm"),
            result=cfg.get("result", "x0"),
            **run,
        )
    else:
        raise ValueError(f"unknown solver {solver!r}; choose 'dps' or 'proximal'")

    # crop back to the measurement's frame
    offset = getattr(operator, "image_offset", lambda: (0, 0))()
    img = result.estimates[IMAGE][..., offset[0] : offset[0] + H, offset[1] : offset[1] + W]
    if img.shape[1] != C:
        img = img.mean(dim=1, keepdim=True)
    img = img.reshape(B, num_samples, C, H, W)
    per_sample = {k: v.reshape(B, num_samples, *v.shape[1:]) for k, v in result.estimates.items() if k != IMAGE}
    padded_hw = tuple(result.estimates[IMAGE].shape[-2:])
    for k, v in per_sample.items():  # image-sized unknowns (e.g. a tilt map): the measurement's frame too
        if v.dim() >= 4 and tuple(v.shape[-2:]) == padded_hw:
            per_sample[k] = v[..., offset[0] : offset[0] + H, offset[1] : offset[1] + W]
    # each unknown's samples combined by its prior's rule (the plain mean unless the preset says)
    params = {k: combine_samples(v, variables[k].combine if k in variables else "mean")
              for k, v in per_sample.items()}
    for k, v in fixed_rep.items():
        params[k] = v
    t_end = time.perf_counter()
    settings = {
        "preset": cfg.get("name"),
        "config": cfg,
        "seed": seed,
        "num_samples": num_samples,
        "device": str(device),
        "amp": bool(autocast),
        "padded_to": [img_h + ph, img_w + pw],
        "versions": {"blinddps": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    return Solution(
        image=img.mean(1),
        params=params,
        residual_rms=result.residual_rms.reshape(B, num_samples).mean(1).cpu(),
        settings=settings,
        timings={"build_s": t_build - t0, "sample_s": result.seconds, "total_s": t_end - t0,
                 "steps": result.steps},
        image_std=img.std(1, unbiased=False) if num_samples > 1 else None,
        samples=img if num_samples > 1 else None,
        param_samples=per_sample if num_samples > 1 else {},
        trajectory=result.trajectory,
    )
