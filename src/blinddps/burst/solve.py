"""``solve_burst``: a turbulence burst (N frames of one scene) through the parallel sampler.

The frames are one measurement of shape (N, C, H, W) per sample; the operator
(``turbulence_burst``, :class:`~blinddps.operators.burst.BurstTurbulence`) declares the
per-frame unknowns with their frame axis, and priors trained on single values (the tilt
prior, a kernel prior for per-frame kernels) are run over the frames as one batch
(:class:`~blinddps.burst.frames.FramePrior`). The sampler is the ordinary one.
"""
from __future__ import annotations

import platform
import time
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..api import Solution, _seed_for, prior_multiple, resolve_num_samples
from ..inputs import as_measurement
from ..memory import check_memory
from ..operators.burst import BurstTurbulence
from ..presets import (PresetError, build_operator, build_variables, check_override_keys, load_preset, merge,
                       validate_preset)
from ..priors import DiffusionPrior, FlatPrior
from ..sampling import IMAGE, proximal_options, sample, sample_proximal
from .frames import FramePrior, FrameTransform

__all__ = ["solve_burst", "as_burst", "DEFAULT_PRESET"]

DEFAULT_PRESET = "turbulence_burst"
_ELEMENTWISE = ("identity", "scale")


def as_burst(frames: Any, value_range: tuple[float, float] | None = None) -> torch.Tensor:
    """Frames (N, C, H, W) or a batch of bursts (B, N, C, H, W) as a float tensor in
    [-1, 1] of shape (B, N, C, H, W), or a one-line ValueError."""
    if isinstance(frames, (list, tuple)):
        try:
            frames = torch.stack([torch.as_tensor(f) for f in frames])
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"the frames must have one shape: {str(exc).splitlines()[0]}") from None
    t = as_measurement(frames, value_range).to(torch.float32)
    if t.dim() == 3:  # (N, H, W): grey frames
        t = t.unsqueeze(1)
    if t.dim() == 4:
        t = t.unsqueeze(0)
    if t.dim() != 5:
        raise ValueError(f"a burst is (N, C, H, W) frames or a batch (B, N, C, H, W), got shape {tuple(t.shape)}")
    return t


def _frame_variables(variables: dict, operator: BurstTurbulence) -> None:
    """Run the priors of per-frame unknowns frame by frame (in place)."""
    for name in operator.frame_unknowns:
        var = variables.get(name)
        if var is None:
            continue
        if isinstance(var.prior, DiffusionPrior):
            var.prior = FramePrior(var.prior)
        elif isinstance(var.prior, FlatPrior) and var.prior.transform.name not in _ELEMENTWISE:
            var.prior = FlatPrior(FrameTransform(var.prior.transform), clip=var.prior.clip)


def solve_burst(
    frames: Any,
    preset: str | dict = DEFAULT_PRESET,
    *,
    steps: int | str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_samples: int | None = None,
    fixed: dict[str, torch.Tensor] | None = None,
    models: dict[str, str] | None = None,
    progress: bool = False,
    callback=None,
    value_range: tuple[float, float] | None = None,
    **overrides: Any,
) -> Solution:
    """Restore one static scene from a burst of turbulent frames.

    ``frames``: (N, C, H, W) or (B, N, C, H, W) in [-1, 1] (or ``value_range``).
    Returns a :class:`~blinddps.api.Solution` whose ``image`` is (B, C, H, W) — the
    scene in the frames' mean geometry — and whose ``params`` hold ``tilt``
    (B, N, 2, H, W) pixels and ``kernel`` (B, 1, kh, kw), or (B, N, 1, kh, kw) with
    ``operator={"per_frame_kernel": True}``. Other arguments as :func:`blinddps.solve`;
    the preset's operator must be ``turbulence_burst`` (its frame count is the data's).
    Memory and time grow linearly with N (the image network runs once per step
    whatever N is).
    """
    check_override_keys(overrides, "solve_burst()")
    y = as_burst(frames, value_range)
    t0 = time.perf_counter()
    cfg = load_preset(preset)
    over: dict[str, Any] = dict(overrides)
    if steps is not None:
        over["steps"] = steps
    for name, path in (models or {}).items():
        over.setdefault("priors", {}).setdefault(name, {})["model"] = str(path)
    cfg = merge(cfg, over)
    if (cfg.get("operator") or {}).get("name") != "turbulence_burst":
        raise PresetError(f"solve_burst() needs a turbulence_burst preset, {cfg.get('name', 'this one')!r} has "
                          f"operator {(cfg.get('operator') or {}).get('name')!r}")
    B, N, C, H, W = y.shape
    cfg = merge(cfg, {"operator": {"frames": N}})
    validate_preset(cfg, "solve_burst()")
    S = resolve_num_samples(cfg, num_samples)
    device = torch.device(device)
    y = y.to(device)

    operator = build_operator(cfg["operator"])
    variables = build_variables(cfg, device=device, operator=operator)
    _frame_variables(variables, operator)
    t_build = time.perf_counter()

    model = getattr(variables[IMAGE].prior, "model", None)
    want_c = getattr(model, "in_channels", C)
    if want_c != C:
        if C == 1 and want_c == 3:
            y = y.expand(-1, -1, 3, -1, -1)
        else:
            raise ValueError(f"the image prior takes {want_c} channels, the frames have {C}")
    mult = prior_multiple(variables)
    ph, pw = (-H) % mult, (-W) % mult
    if ph or pw:  # zero-padded model: reflect the frames to a size the UNet takes (as solve does)
        mode = "reflect" if (ph < H and pw < W) else "replicate"
        y = F.pad(y.flatten(0, 1), (0, pw, 0, ph), mode=mode).view(B, N, y.shape[2], H + ph, W + pw)
    Hp, Wp = H + ph, W + pw
    networks = {n: (v.prior.model, Hp * Wp * (N if n in operator.frame_unknowns else 1))
                for n, v in variables.items() if getattr(v.prior, "model", None) is not None and n not in (fixed or {})}
    check_memory(networks, B, S, (H, W), device)

    y_rep = y.repeat_interleave(S, dim=0)
    generators = [torch.Generator().manual_seed(_seed_for(int(seed), b, j)) for b in range(B) for j in range(S)]
    fixed_rep = {k: torch.as_tensor(v, device=device, dtype=torch.float32) for k, v in (fixed or {}).items()}
    fixed_rep = {k: (v.repeat_interleave(S, 0) if v.shape[0] == B and B > 1 else v) for k, v in fixed_rep.items()}
    for k in fixed_rep:
        variables.pop(k, None)
    solver = cfg.get("solver", "dps")
    if solver == "proximal":  # the fast solver (docs/algorithm.md): no gradient through the image network
        result = sample_proximal(operator, y_rep, variables, fixed=fixed_rep,
                                 **proximal_options(cfg.get("proximal")), generator=generators, callback=callback,
                                 progress=progress)
    elif solver == "dps":
        result = sample(operator, y_rep, variables, fixed=fixed_rep, method=cfg.get("method", "ddpm"),
                        eta=float(cfg.get("eta", 1.0)), loss_reduction=cfg.get("loss_reduction", "sample"),
                        loss=cfg.get("loss", "norm"), result=cfg.get("result", "x0"), generator=generators,
                        callback=callback, progress=progress)
    else:
        raise ValueError(f"unknown solver {solver!r}; choose 'dps' or 'proximal'")

    img = result.estimates[IMAGE][..., :H, :W]
    if img.shape[1] != C:
        img = img.mean(dim=1, keepdim=True)
    img = img.reshape(B, S, C, H, W)
    per_sample = {k: v.reshape(B, S, *v.shape[1:]) for k, v in result.estimates.items() if k != IMAGE}
    if "tilt" in per_sample:
        per_sample["tilt"] = per_sample["tilt"][..., :H, :W]
    params = {k: v.mean(1) for k, v in per_sample.items()}
    params.update(fixed_rep)
    if operator.final_register and "tilt" not in fixed_rep:  # the tilt output: each frame registered to the result
        k_final = params["kernel"] if params["kernel"].shape[0] == B else params["kernel"].expand(B, *params["kernel"].shape[1:])
        est = result.estimates[IMAGE][..., :H, :W]
        est = est.reshape(B, S, *est.shape[1:]).mean(1)  # the prior's channels, as the frames it saw
        params["tilt"] = operator.register_frames(y[..., :H, :W], est, k_final, params.get("tilt"),
                                                  gn_steps=operator.final_register, cg_iters=12)
    t_end = time.perf_counter()
    settings = {"preset": cfg.get("name"), "config": cfg, "seed": seed, "num_samples": S, "frames": N,
                "device": str(device), "padded_to": [Hp, Wp],
                "versions": {"blinddps": __version__, "torch": torch.__version__,
                             "python": platform.python_version()}}
    return Solution(
        image=img.mean(1), params=params,
        residual_rms=result.residual_rms.reshape(B, S).mean(1).cpu(), settings=settings,
        timings={"build_s": t_build - t0, "sample_s": result.seconds, "total_s": t_end - t0,
                 "steps": result.steps, "per_frame_s": (t_end - t0) / N},
        image_std=img.std(1, unbiased=False) if S > 1 else None,
        samples=img if S > 1 else None, param_samples=per_sample if S > 1 else {},
        trajectory=result.trajectory)
