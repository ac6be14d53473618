"""The parallel diffusion posterior sampler (BlindDPS), for any operator and any priors.

Per step, for every sampled variable v with prior p_v:

1. x̂0_v = p_v.denoise(x_t^v) with autograd on x_t^v (clipped Tweedie estimate);
2. a proposal x'_v from p_v (ancestral DDPM or DDIM), optionally from an x̂0 blended
   with the operator's own data-driven estimate of v (EM-style update);
3. loss = Σ_b ‖y_b − A(x̂0_image; θ̂)_b‖ + Σ_v reg_v, θ̂_v = transform_v(x̂0_v);
4. x_{t-1}^v = x'_v − ζ_v(t) ∇_{x_t^v} loss, the gradient taken through every network.

The sampler knows the operator only through ``forward(x, **params)``, its unknowns'
shapes and the optional ``estimate`` hook and ``residual_groups`` attribute (G > 1: a
sample's residual is G equal parts, e.g. the frames of a burst, and the norm loss is
the mean of their norms): nothing here is about kernels or frames.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..diffusion import DiffusionSchedule
from ..priors import DiffusionPrior, Prior, PriorOutput
from .combine import check_combine_rule
from .guidance import Regularizer, StepRule

IMAGE = "image"
Generators = torch.Generator | list[torch.Generator] | None


@dataclass
class Variable:
    """How one variable is sampled."""

    prior: Prior
    step: StepRule = field(default_factory=StepRule)
    regularizer: Regularizer | None = None
    init: torch.Tensor | None = None
    """Physical initial value, for a flat prior (broadcast over the batch)."""
    data_weight: float = 0.0
    """Weight w of the operator's data estimate in x̂0 for the proposal:
    x̂0 ← (1−w)·x̂0 + w·from_physical(operator.estimate(...)). 0 = pure BlindDPS."""
    data_start: float = 1.0
    """Use the data estimate only for steps with i/N < data_start (i counts down)."""
    combine: str = "mean"
    """How the posterior samples of one measurement become its estimate (``solve``):
    ``mean``, or ``agreement``, the part of the mean the samples agree on
    (:mod:`blinddps.sampling.combine`)."""

    def __post_init__(self) -> None:
        for name in ("data_weight", "data_start"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
            setattr(self, name, value)
        check_combine_rule(self.combine)


@dataclass
class SampleResult:
    """What a run returns: physical estimates per variable (image in [-1, 1])."""

    estimates: dict[str, torch.Tensor]
    states: dict[str, torch.Tensor]
    residual_rms: torch.Tensor
    seconds: float
    steps: int
    trajectory: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _noise(shape: tuple[int, ...], generator: Generators, device, dtype) -> torch.Tensor:
    """N(0, I) of ``shape``; with a list of generators, sample b draws from generator b
    so that a batch reproduces B runs of batch 1 exactly."""
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        return torch.stack(
            [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype).to(device) for g in generator]
        )
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _common_schedule(variables: dict[str, Variable], schedule: DiffusionSchedule | None) -> DiffusionSchedule:
    scheds = [v.prior.schedule for v in variables.values() if v.prior.schedule is not None]
    if schedule is None:
        if not scheds:
            raise ValueError("no variable has a diffusion prior: pass `schedule` for the step count")
        schedule = scheds[0]
    for s in scheds:
        if s.num_steps != schedule.num_steps:
            raise ValueError(
                f"all diffusion priors must be respaced to the same number of steps "
                f"({s.num_steps} != {schedule.num_steps})"
            )
    return schedule


def variable_shapes(operator: Any, y: torch.Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of the variables, as the operator declares them."""
    image_shape = tuple(operator.image_shape(tuple(y.shape[1:])))
    shapes = {IMAGE: image_shape}
    shapes.update({k: tuple(v) for k, v in operator.unknown_shapes(image_shape).items()})
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"operator {type(operator).__name__} has no unknown named {missing[0]!r}")
    return shapes


def check_variables(operator: Any, variables: dict[str, Variable], fixed: dict[str, torch.Tensor]) -> None:
    """A one-line ValueError unless the image is sampled and every declared unknown
    has a prior or a fixed value."""
    if IMAGE not in variables:
        raise ValueError("variables must include 'image', the operator's input")
    declared = set(getattr(operator, "unknowns", {}))
    undecided = declared - set(variables) - set(fixed)
    if undecided:
        raise ValueError(f"unknown {sorted(undecided)[0]!r} has neither a prior nor a fixed value")


def initial_states(variables: dict[str, Variable], shapes: dict[str, tuple[int, ...]], batch: int,
                   generator: Generators, device, dtype) -> dict[str, torch.Tensor]:
    """x_T of every variable, in its prior's diffusion space (e.g. a kernel in its prior's window)."""
    states: dict[str, torch.Tensor] = {}
    for name, var in variables.items():
        shape = (batch, *var.prior.transform.diffusion_shape(shapes[name]))
        init = var.init.to(device=device, dtype=dtype) if var.init is not None else None
        states[name] = var.prior.initial_state(shape, _noise(shape, generator, device, dtype), init)
    return states


def sample(
    operator: Any,
    y: torch.Tensor,
    variables: dict[str, Variable],
    *,
    fixed: dict[str, torch.Tensor] | None = None,
    schedule: DiffusionSchedule | None = None,
    method: str = "ddpm",
    eta: float = 1.0,
    loss_reduction: str = "sample",
    loss: str = "norm",
    result: str = "x0",
    generator: Generators = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    trajectory_every: int = 0,
    progress: bool = False,
) -> SampleResult:
    """Run the parallel reverse diffusions of ``variables`` coupled through ``y``.

    ``variables`` holds the image (key ``"image"``, the operator's input) and the
    operator unknowns to estimate; unknowns in ``fixed`` (physical values) are held
    (non-blind DPS when every unknown is fixed). ``loss_reduction="batch"`` takes one
    norm over the whole batch as the original does; ``"sample"`` (default) one norm per
    sample, so a batch gives the results of separate runs. ``loss="norm"`` is the
    original's ‖r‖ (its gradient has unit size whatever the residual, so a step size
    sets a residual floor); ``loss="squared"`` uses ½‖r‖², whose gradient shrinks as
    the fit improves. ``result="x0"`` returns the last step's denoised estimates x̂0
    (each measured against y in the last step); ``result="update"`` returns them after
    the last gradient step, as the original does — with a large last step size that
    can overshoot the fit it had.
    """
    fixed = dict(fixed or {})
    check_variables(operator, variables, fixed)
    if loss_reduction not in ("sample", "batch"):
        raise ValueError("loss_reduction must be 'sample' or 'batch'")
    if loss not in ("norm", "squared"):
        raise ValueError("loss must be 'norm' or 'squared'")
    if result not in ("x0", "update"):
        raise ValueError("result must be 'x0' or 'update'")
    sched = _common_schedule(variables, schedule)
    n_steps = sched.num_steps
    B, device, dtype = y.shape[0], y.device, y.dtype
    shapes = variable_shapes(operator, y, list(variables))
    # an operator may split a sample's residual into groups (e.g. the frames of a burst):
    # the norm loss is then the mean of the groups' norms (a group that fits badly pulls
    # less), and step sizes see one group's size
    groups = max(1, int(getattr(operator, "residual_groups", 1) or 1))
    group_size = y[0].numel() // groups

    states = initial_states(variables, shapes, B, generator, device, dtype)

    trajectory: list[dict[str, torch.Tensor]] = []
    start = time.perf_counter()
    bar = tqdm(total=n_steps, desc="sampling", disable=not progress, leave=False)
    residual = torch.full((B,), float("nan"), device=device)
    for i in reversed(range(n_steps)):
        idx = torch.full((B,), i, device=device, dtype=torch.long)
        with torch.enable_grad():
            leaves = {n: s.detach().requires_grad_(True) for n, s in states.items()}
            outs: dict[str, PriorOutput] = {n: variables[n].prior.denoise(leaves[n], idx) for n in variables}
            phys = {n: variables[n].prior.transform.to_physical(o.x0) for n, o in outs.items()}
            params = {n: p for n, p in phys.items() if n != IMAGE}
            params.update(fixed)
            r = (y - operator.forward(phys[IMAGE], **params)).flatten(1)
            if loss == "squared":
                total = 0.5 * r.pow(2).sum()
            elif loss_reduction == "sample":
                total = r.norm(dim=1).sum() if groups == 1 else r.reshape(B, groups, -1).norm(dim=2).mean(1).sum()
            else:
                total = r.norm()
            for n, v in variables.items():
                if v.regularizer is not None:
                    total = total + v.regularizer(outs[n].x0, phys[n]).sum()
            grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
        residual = r.detach().pow(2).mean(dim=1).sqrt()

        for (n, v), g in zip(variables.items(), grads):
            out = outs[n]
            if v.data_weight > 0 and i < v.data_start * n_steps:
                out = _blend_data_estimate(operator, n, v, out, phys, fixed, y)
            noise = _noise(states[n].shape, generator, device, dtype) if method == "ddpm" or eta > 0 else None
            s = v.prior.schedule or sched
            proposal = v.prior.propose(out, states[n], idx, noise, method, eta)
            if g is not None:
                proposal = proposal - v.step(s, idx, proposal, group_size) * g
            states[n] = proposal.detach()

        info = {"i": i, "step": n_steps - 1 - i, "residual": residual, "x0": {n: o.x0.detach() for n, o in outs.items()}}
        if trajectory_every and ((n_steps - 1 - i) % trajectory_every == 0 or i == 0):
            trajectory.append({n: p.detach().cpu() for n, p in phys.items()})
        if callback is not None:
            callback(info)
        bar.update(1)
        bar.set_postfix(residual=f"{residual.mean().item():.4f}")
    bar.close()

    estimates = {}
    with torch.no_grad():
        for n, v in variables.items():
            final = outs[n].x0.detach() if result == "x0" else states[n].clamp(-1, 1)
            estimates[n] = v.prior.transform.to_physical(final)
        params = {n: e for n, e in estimates.items() if n != IMAGE}
        params.update(fixed)
        r = (y - operator.forward(estimates[IMAGE], **params)).flatten(1)
        residual = r.pow(2).mean(dim=1).sqrt()
    return finish(estimates, states, residual, start, n_steps, trajectory, device)


def finish(estimates: dict[str, torch.Tensor], states: dict[str, torch.Tensor], residual: torch.Tensor,
           start: float, n_steps: int, trajectory: list, device: torch.device) -> SampleResult:
    """A sampler's :class:`SampleResult`, timed from ``start`` (after the device is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return SampleResult(estimates=estimates, states=states, residual_rms=residual,
                        seconds=time.perf_counter() - start, steps=n_steps, trajectory=trajectory)


def _blend_data_estimate(operator, name, var, out, phys, fixed, y) -> PriorOutput:
    """EM-style: replace part of x̂0 by the operator's estimate of ``name`` given the
    current estimates of everything else (e.g. least-squares kernel from the image)."""
    estimate = getattr(operator, "estimate", None)
    if estimate is None:
        raise ValueError(f"operator {type(operator).__name__} offers no data estimate for {name!r}")
    with torch.no_grad():
        current = {n: p.detach() for n, p in phys.items() if n != IMAGE}
        current.update(fixed)
        est = estimate(name, phys[IMAGE].detach(), y, current)
        est_x0 = var.prior.transform.from_physical(est).clamp(-1, 1)
        blended = (1 - var.data_weight) * out.x0.detach() + var.data_weight * est_x0
    return PriorOutput(blended, out.var_values)
